"""Synthesizing the app in-process for the infrastructure tests, and what a test reads off the result."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Template

from app import build_app
from stacks.config import Ec2OpsConfig
from stacks.ec2ops_stack import Ec2OpsStack


@dataclass(frozen=True)
class Synthesized:
    """One synthesized app: the stack object (for Template/Annotations) and its template as plain JSON."""

    app: cdk.App
    stack: Ec2OpsStack
    config: Ec2OpsConfig
    template_path: Path
    template: dict[str, Any]

    @property
    def assertions(self) -> Template:
        return Template.from_json(self.template)

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.template["Resources"].items() if r["Type"] == resource_type}


def synthesize(outdir: Path, context: dict[str, Any] | None = None) -> Synthesized:
    """Synthesize like `cdk synth`; a failed validation (an unsuppressed cdk-nag error) fails with its findings."""
    app = build_app(context, outdir=str(outdir))
    stacks = [child for child in app.node.children if isinstance(child, Ec2OpsStack)]
    assert len(stacks) == 1, "the app has exactly one ec2ops stack"
    try:
        assembly = app.synth()
    except RuntimeError as error:
        raise AssertionError(f"synth failed: {error}\n{_validation_findings(outdir)}") from error
    stack = stacks[0]
    template_path = Path(assembly.directory) / stack.template_file
    return Synthesized(app, stack, stack.config, template_path, json.loads(template_path.read_text()))


def _validation_findings(outdir: Path) -> str:
    report = outdir / "validation-report.json"
    if not report.exists():
        return ""
    lines = []
    for plugin in json.loads(report.read_text()).get("pluginReports", []):
        for violation in plugin.get("violations", []):
            paths = [c.get("constructPath") for c in violation.get("violatingConstructs", [])]
            lines.append(f"{violation.get('description', '').strip()} at {paths}")
    return "\n".join(lines)
