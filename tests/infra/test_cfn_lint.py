"""cfn-lint over every synthesized template, in the configured region."""

from __future__ import annotations

import pytest
from cfnlint.api import ManualArgs, lint

from tests.infra.synth import Synthesized

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]

# W3005: CDK adds a DependsOn on a function's role next to the GetAtt of its ARN; redundant, harmless.
# W3010: the AZs are explicit on purpose (config `availability_zones`), so synth needs no account lookup.
ACCEPTED_WARNINGS = {"W3005", "W3010"}


def test_templates_have_no_cfn_lint_errors(every_app: Synthesized) -> None:
    matches = lint(every_app.template_path.read_text(), config=ManualArgs(regions=[every_app.config.region]))
    errors = [f"{m.rule.id} {m.message} at {m.path}" for m in matches if m.rule.severity == "error"]
    assert errors == []
    unexpected = [
        f"{m.rule.id} {m.message}"
        for m in matches
        if m.rule.severity == "warning" and m.rule.id not in ACCEPTED_WARNINGS
    ]
    assert unexpected == []
