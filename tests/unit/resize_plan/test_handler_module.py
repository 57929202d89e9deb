"""The Plan handler module: importable without AWS (a cold start, a test collection), a plan dict out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LAMBDAS = Path(__file__).resolve().parents[3] / "lambdas"


def test_importing_the_plan_handler_makes_no_aws_client() -> None:
    probe = (
        "import boto3, botocore.session\n"
        "def refuse(*a, **k): raise SystemExit('AWS client created at import')\n"
        "boto3.client = boto3.resource = refuse\n"
        "botocore.session.Session.create_client = refuse\n"
        "import ec2ops_lambda.handlers.resize_plan\n"
        "import ec2ops_lambda.pricing\n"
    )
    env = {"PATH": "", "PYTHONPATH": str(LAMBDAS)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
