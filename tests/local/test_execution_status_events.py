"""Executions that end send AWS's "Step Functions Execution Status Change" event; rules on it reach their targets,
Lambda functions (asynchronously, failures kept) as well as state machines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ec2ops.local import LocalCloud
from ec2ops.local.cloud import quiet_moto_logs
from tests.local.probe_app import FUNCTIONS
from tests.local.status_probe_app import STATUS_CHANGE, build


@pytest.fixture(scope="session")
def status_probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("status-probe") / "cdk.out")


@pytest.fixture
def cloud(status_probe: Path) -> Iterator[LocalCloud]:
    quiet_moto_logs()
    with LocalCloud(status_probe, lambda_source=FUNCTIONS) as local:
        yield local


def delivered(cloud: LocalCloud, function: str) -> list[dict[str, Any]]:
    """The events a Lambda target received from rules (not its invocations as a task)."""
    cloud.router.join()
    events: list[dict[str, Any]] = [
        json.loads(d.input) for d in cloud.router.function_deliveries if d.function_arn.endswith(f":{function}")
    ]
    return events


def test_a_succeeded_execution_sends_the_event_in_aws_shape(cloud: LocalCloud) -> None:
    result = cloud.run("probe-succeed", {"run": 1}, name="ok-1")
    assert result.status == "SUCCEEDED"
    [event] = delivered(cloud, "probe-record")
    assert event["source"] == "aws.states"
    assert event["detail-type"] == STATUS_CHANGE
    assert event["account"] == cloud.account_id
    assert event["region"] == cloud.region
    assert event["resources"] == [result.arn]
    assert event["time"] == cloud.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    detail = event["detail"]
    described = cloud.sfn.describe_execution(executionArn=result.arn)
    assert detail == {
        "executionArn": result.arn,
        "stateMachineArn": cloud.state_machine_arn("probe-succeed"),
        "name": "ok-1",
        "status": "SUCCEEDED",
        "startDate": int(described["startDate"].timestamp() * 1000),
        "stopDate": int(described["stopDate"].timestamp() * 1000),
        "input": '{"run": 1}',
        "output": described["output"],
        "inputDetails": {"included": True},
        "outputDetails": {"included": True},
        "error": None,
        "cause": None,
    }
    assert json.loads(detail["output"]) == {"run": 1, "done": True}
    assert cloud.router.deliveries == []  # a success starts no cleanup
    assert cloud.counter.for_execution(result.arn).api_calls.get("events:PutEvents", 0) == 0


def test_a_failed_execution_starts_the_cleanup_and_a_failing_target_is_recorded(cloud: LocalCloud) -> None:
    result = cloud.run("probe-fail", {})
    assert result.status == "FAILED"
    [event] = delivered(cloud, "probe-record")
    assert event["detail"]["status"] == "FAILED"
    assert (event["detail"]["error"], event["detail"]["cause"]) == ("Boom", "it broke")
    assert event["detail"]["output"] is None

    results = cloud.wait_all()  # the cleanup started by the rule is among them
    cleanup = [r for r in results if r.state_machine == "ec2ops-probe-cleanup"]
    assert [r.output for r in cleanup] == [{"execution": result.arn, "status": "FAILED"}]

    [error] = cloud.router.target_errors
    assert error.target_arn.endswith(":probe-refuse")
    assert error.error == "Unhandled"
    assert "EventRefused" in error.message


def test_a_stopped_execution_sends_aborted(cloud: LocalCloud) -> None:
    arn = cloud.start("probe-hold", {})
    cloud.sfn.stop_execution(executionArn=arn, error="Stopped", cause="from the console")
    assert cloud.wait(arn).status == "ABORTED"
    [event] = delivered(cloud, "probe-record")
    assert event["detail"]["status"] == "ABORTED"
    assert event["detail"]["executionArn"] == arn
    assert (event["detail"]["error"], event["detail"]["cause"]) == ("Stopped", "from the console")
    described = cloud.sfn.describe_execution(executionArn=arn)
    assert (described["error"], described["cause"]) == ("Stopped", "from the console")
    results = cloud.wait_all()
    assert [r.output["status"] for r in results if r.state_machine == "ec2ops-probe-cleanup"] == ["ABORTED"]


def test_a_timed_out_execution_sends_timed_out(cloud: LocalCloud) -> None:
    result = cloud.run("probe-timeout", {}, timeout=20)
    assert result.status == "TIMED_OUT"
    [event] = delivered(cloud, "probe-record")
    assert event["detail"]["status"] == "TIMED_OUT"


def test_executions_of_other_machines_match_no_rule(cloud: LocalCloud) -> None:
    assert cloud.run("probe-cleanup", {}).succeeded
    assert delivered(cloud, "probe-record") == []
    assert cloud.router.target_errors == []
