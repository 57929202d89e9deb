"""ec2ops_task.py: the instance's answers to the workflow's task token, against a real waiting execution (moto)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import ec2ops_task
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from ec2ops_run_state import RunState, RunStateStore
from moto import mock_aws

REGION = "us-east-1"
BUCKET = "ec2ops-task-test"
ENV = "dev"
RUN_ID = "run-1"
SCRIPT = Path(ec2ops_task.__file__)
NOTICE = '{"action": "terminate", "time": "2026-11-23T12:00:00Z"}'


class RecordingSfn:
    """Keeps each call; raises `error` (a ClientError code or an exception) instead when set."""

    def __init__(self, error: str | Exception | None = None) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.error = error

    def _call(self, name: str, kwargs: dict[str, str]) -> dict[str, Any]:
        self.calls.append((name, kwargs))
        if isinstance(self.error, Exception):
            raise self.error
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "no"}}, name)
        return {}

    def send_task_success(self, **kwargs: str) -> dict[str, Any]:
        return self._call("success", kwargs)

    def send_task_failure(self, **kwargs: str) -> dict[str, Any]:
        return self._call("failure", kwargs)

    def send_task_heartbeat(self, **kwargs: str) -> dict[str, Any]:
        return self._call("heartbeat", kwargs)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield


@pytest.fixture
def waiting(aws: None) -> tuple[str, str]:
    """An execution waiting on a task token, as the training-run workflow waits for its instance: (arn, token)."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="tokens")["QueueUrl"]
    wait = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"QueueUrl": queue_url, "MessageBody": {"token.$": "$$.Task.Token"}},
        "HeartbeatSeconds": 600,  # moto takes heartbeats only for a task with a heartbeat timeout
        "End": True,
    }
    machine = sfn.create_state_machine(
        name="training",
        definition=json.dumps({"StartAt": "Wait", "States": {"Wait": wait}}),
        roleArn="arn:aws:iam::123456789012:role/training",
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name="run-1", input="{}")["executionArn"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue_url).get("Messages", []):
            token: str = json.loads(message["Body"])["token"]
            return arn, until_waiting(sfn, token, deadline)
        time.sleep(0.05)
    raise AssertionError("no task token")


def until_waiting(sfn: Any, token: str, deadline: float) -> str:
    """moto sends the token a moment before the execution listens for it: until then it is an InvalidToken."""
    while True:
        try:
            sfn.send_task_heartbeat(taskToken=token)
            return token
        except ClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def finished(arn: str) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    deadline = time.monotonic() + 10
    while True:
        described: dict[str, Any] = dict(sfn.describe_execution(executionArn=arn))
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return described
        time.sleep(0.05)


def env(token: str = "token-1", **extra: str) -> dict[str, str]:
    return {"EC2OPS_TASK_TOKEN": token, "AWS_REGION": REGION, **extra}


def test_success_sends_the_output_file_and_ends_the_wait(waiting: tuple[str, str], tmp_path: Path) -> None:
    arn, token = waiting
    output = tmp_path / "output.json"
    output.write_text(json.dumps({"run_id": RUN_ID, "exit_code": 0}))

    assert ec2ops_task.main(["heartbeat"], env(token)) == 0
    assert ec2ops_task.main(["success", "--output-file", str(output)], env(token)) == 0

    execution = finished(arn)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"]) == {"run_id": RUN_ID, "exit_code": 0}


def test_failure_fails_the_execution_with_the_error_name(waiting: tuple[str, str]) -> None:
    arn, token = waiting

    assert ec2ops_task.main(["failure", "--error", "TrainingFailed", "--cause", "exit 3"], env(token)) == 0

    execution = finished(arn)
    assert (execution["status"], execution["error"]) == ("FAILED", "TrainingFailed")


def test_an_execution_that_no_longer_waits_is_exit_3_with_one_line(
    waiting: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    arn, token = waiting
    assert ec2ops_task.main(["success", "--output", "{}"], env(token)) == 0
    assert finished(arn)["status"] == "SUCCEEDED"
    capsys.readouterr()

    assert ec2ops_task.main(["heartbeat"], env(token)) == 3
    assert ec2ops_task.main(["failure", "--error", "X", "--cause", "y"], env("not-a-token")) == 3

    err = capsys.readouterr().err
    assert err.count("\n") == 2
    assert "the execution no longer waits: InvalidToken" in err


@pytest.mark.parametrize("code", ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"])
def test_every_gone_answer_is_exit_3(code: str) -> None:
    assert ec2ops_task.main(["heartbeat"], env(), sfn_client=RecordingSfn(code)) == 3


@pytest.mark.parametrize(
    "error",
    [
        ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "SendTaskHeartbeat"),
        EndpointConnectionError(endpoint_url="https://states.us-east-1.amazonaws.com"),
    ],
)
def test_other_errors_are_exit_1(error: Exception, capsys: pytest.CaptureFixture[str]) -> None:
    assert ec2ops_task.main(["heartbeat"], env(), sfn_client=RecordingSfn(error)) == 1
    assert "heartbeat failed" in capsys.readouterr().err


def test_error_and_cause_are_truncated_to_what_step_functions_takes() -> None:
    sfn = RecordingSfn()

    assert ec2ops_task.main(["failure", "--error", "E" * 300, "--cause", "c" * 40000], env(), sfn_client=sfn) == 0

    (name, sent), *_ = sfn.calls
    assert name == "failure"
    assert sent["taskToken"] == "token-1"
    assert len(sent["error"]) == 256
    assert len(sent["cause"]) == 32768
    assert sent["cause"].endswith("...[truncated]")


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["heartbeat"], {}, "set EC2OPS_TASK_TOKEN"),
        (["success", "--output", "{not json"], env(), "not valid JSON"),
        (["success", "--output-file", "/nonexistent/output.json"], env(), "cannot read --output-file"),
        (["interrupted"], env(), "set EC2OPS_BUCKET, EC2OPS_ENV, EC2OPS_RUN_ID"),
    ],
)
def test_usage_errors_are_exit_64_and_send_nothing(
    argv: list[str], environ: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sfn = RecordingSfn()

    assert ec2ops_task.main(argv, environ, sfn_client=sfn) == 64

    assert message in capsys.readouterr().err
    assert sfn.calls == []


def test_bad_arguments_are_exit_64() -> None:
    with pytest.raises(SystemExit) as exited:
        ec2ops_task.main(["failure", "--cause", "no error name"], env())
    assert exited.value.code == 64


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


def run_in(s3: Any, status: str) -> RunStateStore:
    store = RunStateStore(s3, BUCKET, ENV)
    store.create(RunState(run_id=RUN_ID, environment=ENV, market="spot"))
    for step in ("data_sync", "training", "interrupted"):
        store.transition(RUN_ID, step)
        if step == status:
            return store
    raise ValueError(status)


def spot_env(tmp_path: Path) -> dict[str, str]:
    return env(
        EC2OPS_BUCKET=BUCKET,
        EC2OPS_ENV=ENV,
        EC2OPS_RUN_ID=RUN_ID,
        EC2OPS_SPOT_NOTICE=NOTICE,
        EC2OPS_INTERRUPTED_MARKER=str(tmp_path / "interrupted"),
    )


def test_interrupted_marks_the_run_then_fails_the_task_with_the_notice(s3: Any, tmp_path: Path) -> None:
    store = run_in(s3, "training")
    sfn = RecordingSfn()

    assert ec2ops_task.main(["interrupted"], spot_env(tmp_path), sfn_client=sfn, s3_client=s3) == 0

    state = store.read()[0]
    assert (state.status, state.current_step) == ("interrupted", "spot interruption notice")
    assert sfn.calls == [("failure", {"taskToken": "token-1", "error": "SpotInterrupted", "cause": NOTICE})]
    assert (tmp_path / "interrupted").read_text() == NOTICE + "\n"


def test_interrupted_retries_when_a_heartbeat_wrote_in_between(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = run_in(s3, "training")
    monkeypatch.setattr(ec2ops_task, "STATE_RETRY_SECONDS", 0.01)

    class RacingS3:
        """The first conditional write loses to a heartbeat that lands just before it."""

        raced = False

        def __getattr__(self, name: str) -> Any:
            return getattr(s3, name)

        def put_object(self, **kwargs: Any) -> Any:
            if not self.raced and "IfMatch" in kwargs:
                self.raced = True
                store.update(RUN_ID, heartbeat=True)
            return s3.put_object(**kwargs)

    racing = RacingS3()

    assert ec2ops_task.main(["interrupted"], spot_env(tmp_path), sfn_client=RecordingSfn(), s3_client=racing) == 0

    assert racing.raced
    state = store.read()[0]
    assert state.status == "interrupted"
    assert "heartbeat" in state.timestamps


def test_interrupted_still_tells_the_workflow_when_the_state_cannot_move(s3: Any, tmp_path: Path) -> None:
    store = run_in(s3, "data_sync")
    sfn = RecordingSfn()

    assert ec2ops_task.main(["interrupted"], spot_env(tmp_path), sfn_client=sfn, s3_client=s3) == 1

    assert store.read()[0].status == "data_sync"
    assert [name for name, _ in sfn.calls] == ["failure"]
    assert (tmp_path / "interrupted").exists()


def test_interrupted_twice_is_harmless(s3: Any, tmp_path: Path) -> None:
    store = run_in(s3, "interrupted")

    assert ec2ops_task.main(["interrupted"], spot_env(tmp_path), sfn_client=RecordingSfn(), s3_client=s3) == 0
    assert store.read()[0].status == "interrupted"


def test_the_script_runs_standalone_without_a_token() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "heartbeat"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )

    assert done.returncode == 64
    assert done.stderr == "ec2ops_task: usage: set EC2OPS_TASK_TOKEN in the environment\n"
