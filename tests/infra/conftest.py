"""The app synthesized in-process, twice per session: as configured in cdk.json, and with every opt-in switched on."""

from __future__ import annotations

import pytest

from tests.infra.synth import Synthesized, synthesize

OPT_INS = {"enable_alarms": True, "enable_kms_key": True}


@pytest.fixture(scope="session")
def default_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app exactly as cdk.json configures it (what `make synth` deploys)."""
    return synthesize(tmp_path_factory.mktemp("default") / "cdk.out")


@pytest.fixture(scope="session")
def opt_in_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Alarms and the customer KMS key switched on: the things that bill monthly when asked for."""
    return synthesize(tmp_path_factory.mktemp("opt-in") / "cdk.out", {"ec2ops": OPT_INS})


@pytest.fixture(scope="session", params=["default", "opt-in"])
def every_app(request: pytest.FixtureRequest) -> Synthesized:
    """Both synthesized variants, for checks that must hold whatever the config."""
    fixture = "default_app" if request.param == "default" else "opt_in_app"
    app: Synthesized = request.getfixturevalue(fixture)
    return app
