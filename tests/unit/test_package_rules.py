"""Rules the emulator and the Lambda runtime rely on: time only through clock, nothing done at import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "lambdas" / "ec2ops_lambda"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_time_is_read_only_through_the_clock_module(path: Path) -> None:
    """ec2ops.local replaces ec2ops_lambda.clock.utcnow; a direct read would escape the emulated clock."""
    if path.name == "clock.py":
        return
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "ec2ops_lambda.clock":
            pytest.fail(f"{path.name}:{node.lineno} imports from the clock module; use `clock.utcnow()`")
        if isinstance(node, ast.Attribute) and node.attr in ("now", "utcnow", "today", "time", "monotonic"):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("datetime", "date", "time"):
                pytest.fail(f"{path.name}:{node.lineno} reads the time directly ({owner.id}.{node.attr})")


def test_importing_the_handlers_makes_no_aws_client() -> None:
    """Clients are made per call: an import (a cold start, a test collection) must not need AWS or a region."""
    probe = (
        "import boto3, botocore.session\n"
        "def refuse(*a, **k): raise SystemExit('AWS client created at import')\n"
        "boto3.client = boto3.resource = refuse\n"
        "botocore.session.Session.create_client = refuse\n"
        "import ec2ops_lambda.handlers.snapshot\n"
    )
    env = {"PATH": "", "PYTHONPATH": str(PACKAGE.parent)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
