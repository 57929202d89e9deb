"""cdk-nag AwsSolutions over the whole app: nothing unsuppressed, and every suppression says why."""

from __future__ import annotations

import csv
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match

from tests.infra.synth import Synthesized

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]

AWS_SOLUTIONS = Match.string_like_regexp(r"AwsSolutions-")


def test_no_unsuppressed_aws_solutions_errors_or_warnings(every_app: Synthesized) -> None:
    # Given the synthesized app (cdk-nag runs as an aspect during synth)
    annotations = Annotations.from_stack(every_app.stack)
    # Then no AwsSolutions finding is left as an error or a warning
    errors = annotations.find_error("*", AWS_SOLUTIONS)
    warnings = annotations.find_warning("*", AWS_SOLUTIONS)
    assert [f"{e.id}: {e.entry.data}" for e in errors] == []
    assert [f"{w.id}: {w.entry.data}" for w in warnings] == []


def test_cdk_nag_really_checked_the_stack(every_app: Synthesized) -> None:
    # The report proves the aspect ran over the resources: a silent no-op would also show zero findings.
    (report,) = every_app.template_path.parent.glob(f"AwsSolutions-*{every_app.stack.artifact_id}-NagReport.csv")
    rows = list(csv.DictReader(report.open()))
    checked = {row["Resource ID"].split("/")[1] for row in rows}
    assert {"Storage", "Network", "Orchestration", "Snapshot", "Resize"} <= checked
    assert [row for row in rows if row["Compliance"] == "Non-Compliant"] == []


def _suppressions(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (logical, rule)
        for logical, resource in template["Resources"].items()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]


def test_every_suppression_carries_a_reason(every_app: Synthesized) -> None:
    suppressions = _suppressions(every_app.template)
    assert suppressions, "the app has suppressions; finding none means the metadata moved"
    for logical, rule in suppressions:
        assert rule["id"].startswith("AwsSolutions-"), (logical, rule)
        assert len(str(rule.get("reason", "")).strip()) >= 20, f"{logical}: {rule['id']} has no real reason"


def test_wildcard_suppressions_name_what_they_allow(default_app: Synthesized) -> None:
    # A blanket IAM5 (without applies_to) would hide any future wildcard: each must list what it covers.
    for logical, rule in _suppressions(default_app.template):
        if rule["id"] == "AwsSolutions-IAM5":
            assert rule.get("applies_to"), f"{logical}: IAM5 suppressed without applies_to"
