# ec2ops: every target installs what it needs first, so a fresh clone needs only `make demo` and `make test`.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CDK := node_modules/.bin/cdk
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export CDK_DISABLE_VERSION_CHECK := 1
export AWS_EC2_METADATA_DISABLED := true

.PHONY: install synth demo test test-fast lint bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed node_modules/.installed ## virtualenv + pinned Python packages + pinned CDK CLI

synth: install ## cdk synth (with cdk-nag) into cdk.out
	$(CDK) synth --quiet --no-notices > /dev/null
	echo "synthesized: $$(ls cdk.out/*.template.json)"

demo: synth ## run the synthesized app on ec2ops.local and tell what happened
	$(PY) -m ec2ops.demo

test: synth ## the whole suite
	$(PY) -m pytest -n 2 --dist loadgroup -q

test-fast: install ## skip nothing, but reuse cdk.out as it is
	$(PY) -m pytest -n 2 --dist loadgroup -q

lint: install ## ruff + mypy + shellcheck
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy instance_scripts  # what runs on the instance: plain scripts, not a package
	$(VENV)/bin/shellcheck instance_scripts/bootstrap.sh

bench: install ## benchmarks (figures, not tests)
	$(PY) -m bench

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache
