"""The resize handlers as the state machine calls them: JSON in, JSON out, on moto."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ec2ops_lambda.errors import InstanceLocked
from ec2ops_lambda.handlers import resize as handlers

from tests.unit.resize_drive.fake_ec2 import make_plan
from tests.unit.world import FakeLambdaContext

Launch = Callable[..., str]
FIRST = "arn:aws:states:us-east-1:123456789012:execution:ec2ops-resize:first"
SECOND = "arn:aws:states:us-east-1:123456789012:execution:ec2ops-resize:second"
LAMBDAS = Path(__file__).resolve().parents[3] / "lambdas"


def _lock(action: str, instance_id: str, execution_id: str) -> dict[str, Any]:
    return {"action": action, "instance_id": instance_id, "execution_id": execution_id, "workflow": "resize"}


def test_lock_handler_acquires_refuses_and_releases(ledger_table: str, context: FakeLambdaContext) -> None:
    instance_id = "i-0123456789abcdef0"
    assert handlers.lock(_lock("acquire", instance_id, FIRST), context) == {"held": True, "holder": FIRST}
    with pytest.raises(InstanceLocked, match="first"):
        handlers.lock(_lock("acquire", instance_id, SECOND), context)
    assert handlers.lock(_lock("release", instance_id, SECOND), context) == {"held": False, "holder": FIRST}
    assert handlers.lock(_lock("release", instance_id, FIRST), context) == {"held": True, "holder": FIRST}
    assert handlers.lock(_lock("acquire", instance_id, SECOND), context)["held"] is True


def test_drive_handler_resizes_a_moto_instance(
    ec2: Any, launch: Launch, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a running t3.large on moto (which stops and starts at once) and the plan to make it m5.large
    instance_id = launch()
    zone = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["Placement"]
    plan = make_plan(instance_id=instance_id, availability_zone=zone["AvailabilityZone"]).model_dump(mode="json")
    monkeypatch.setenv("RESIZE_STOP_TIMEOUT_SECONDS", "300")
    # When the state machine calls drive until done
    progress: dict[str, Any] | None = None
    phases = []
    for _ in range(20):
        progress = handlers.drive({"plan": plan, "progress": progress, "fault": None}, context)
        phases.append(progress["phase"])
        if progress["done"]:
            break
    # Then the instance runs on m5.large, verified
    assert progress is not None and progress["outcome"] == "resized"
    assert phases == ["wait_stopped", "modify", "start", "wait_running", "verify", "done"]
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert (instance["State"]["Name"], instance["InstanceType"]) == ("running", "m5.large")


def test_drive_handler_with_a_fault_on_the_first_call_aborts(
    ec2: Any, launch: Launch, context: FakeLambdaContext
) -> None:
    instance_id = launch()
    plan = make_plan(instance_id=instance_id).model_dump(mode="json")
    fault = {"Error": "Lambda.ServiceException", "Cause": "boom"}
    progress = handlers.drive({"plan": plan, "progress": None, "fault": fault}, context)
    assert progress["outcome"] == "aborted"
    assert progress["first_failure"] == {"error": "Lambda.ServiceException", "cause": "boom"}


def test_importing_the_resize_handlers_makes_no_aws_client() -> None:
    """Clients are made per call: an import (a cold start, a test collection) must not need AWS or a region."""
    probe = (
        "import boto3, botocore.session\n"
        "def refuse(*a, **k): raise SystemExit('AWS client created at import')\n"
        "boto3.client = boto3.resource = refuse\n"
        "botocore.session.Session.create_client = refuse\n"
        "import ec2ops_lambda.handlers.resize\n"
    )
    env = {"PATH": "", "PYTHONPATH": str(LAMBDAS)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
