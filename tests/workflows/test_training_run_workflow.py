"""ec2ops-training-run on ec2ops.local with the instance side running for real: the rendered user data runs as a
local process (bootstrap.sh, preflight, the wrapper, the tiny example job) against the embedded AWS on loopback.

The app is synthesized with a short heartbeat (1 s, timeout 20 s: a loaded 2-core machine runs the instance, the
emulator and the other tests at once) so a dead instance is noticed within a test.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ec2ops.local import ExecutionResult, LocalCloud
from ec2ops.local.cloud import REPO_ROOT, quiet_moto_logs
from tests.workflows.iam import granted_actions, iam_action, is_granted

pytestmark = pytest.mark.slow

TRAINING_CONTEXT = {"training_heartbeat_seconds": 1, "training_heartbeat_timeout_seconds": 20}
EXAMPLE = REPO_ROOT / "examples" / "train_tiny.py"
RUN_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def training_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app import build_app

    outdir = tmp_path_factory.mktemp("training-app") / "cdk.out"
    return Path(build_app({"ec2ops": TRAINING_CONTEXT}, outdir=str(outdir)).synth().directory)


@pytest.fixture
def make_cloud(training_assembly: Path) -> Iterator[Callable[..., LocalCloud]]:
    clouds: list[LocalCloud] = []

    def make(**instance_env: str) -> LocalCloud:
        quiet_moto_logs()
        env = {"EC2OPS_MIN_FREE_GB": "0", "EC2OPS_SPOT_POLL_SECONDS": "1", **instance_env}
        cloud = LocalCloud(
            training_assembly, lambda_source=REPO_ROOT / "lambdas", run_user_data=True, instance_env=env
        ).__enter__()
        clouds.append(cloud)
        cloud.s3.put_object(Bucket=bucket(cloud), Key="cached-datasets/scripts/train.py", Body=EXAMPLE.read_bytes())
        return cloud

    yield make
    for cloud in clouds:
        cloud.__exit__(None, None, None)


@pytest.fixture
def cloud(make_cloud: Callable[..., LocalCloud]) -> LocalCloud:
    return make_cloud()


def bucket(cloud: LocalCloud) -> str:
    env = cloud.app.function_environment(c_name("launch"))
    return str(env["TRAINING_BUCKET"])


def c_name(short: str) -> str:
    return f"ec2ops-training-run-{short}"


def run_input(env: str = "dev", **fields: Any) -> dict[str, Any]:
    return {
        "env": env,
        "instance_type": "g4dn.2xlarge",
        "market": "on-demand",
        "max_runtime_hours": 1,
        "command": ["python3", "train.py", "--epochs", "2", "--steps-per-epoch", "5"],
        "training_config": {"prediction_length": 64, "context_length": 512},
    } | fields


def state_file(cloud: LocalCloud, env: str = "dev") -> dict[str, Any] | None:
    try:
        body = cloud.s3.get_object(Bucket=bucket(cloud), Key=f"{env}/system-state.json")["Body"].read()
    except cloud.s3.exceptions.NoSuchKey:
        return None
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def wait_status(cloud: LocalCloud, status: str, env: str = "dev") -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        state = state_file(cloud, env)
        return state if state and state["status"] == status else None

    found: dict[str, Any] = wait_for(reached, f"the run in {env} to reach {status}")
    return found


def objects(cloud: LocalCloud, prefix: str) -> set[str]:
    listed = cloud.s3.list_objects_v2(Bucket=bucket(cloud), Prefix=prefix).get("Contents", [])
    return {str(item["Key"]).removeprefix(prefix) for item in listed}


def text(cloud: LocalCloud, key: str) -> str:
    return str(cloud.s3.get_object(Bucket=bucket(cloud), Key=key)["Body"].read().decode())


def closed(cloud: LocalCloud, run_id: str) -> dict[str, Any]:
    (item,) = [i for i in cloud.ledger_items(f"run#{run_id}") if i["kind"] == "run-closed"]
    return item


def run_instances(cloud: LocalCloud, run_id: str) -> list[dict[str, Any]]:
    answer = cloud.ec2.describe_instances(Filters=[{"Name": "tag:ec2ops:run-id", "Values": [run_id]}])
    return [i for r in answer["Reservations"] for i in r["Instances"]]


def finish(cloud: LocalCloud, arn: str) -> ExecutionResult:
    return cloud.wait(arn, timeout=RUN_TIMEOUT)


# --- the whole run ---------------------------------------------------------------------------------------------


def test_a_whole_run_trains_uploads_terminates_itself_and_records_its_cost(
    cloud: LocalCloud, record_property: Any
) -> None:
    started = time.monotonic()
    arn = cloud.start("training-run", run_input())
    launched = wait_for(lambda: (state_file(cloud) or {}).get("instance_id"), "the instance to launch")
    cloud.clock.advance(minutes=30)  # the emulator's clock moves as the instance works: 30 billed minutes

    result = finish(cloud, arn)

    assert result.status == "SUCCEEDED", result.cause
    run_id = result.output["run_id"]
    assert result.output["history"] == ["initialization", "data_sync", "training", "results_sync", "cleanup"]
    prefix = f"dev/{run_id}/"
    stored = objects(cloud, prefix)
    assert {"training.json", "models/model.json", "logs/training.log", "state-final.json"} <= stored
    training = json.loads(text(cloud, prefix + "training.json"))
    assert (training["status"], training["exit_code"]) == ("succeeded", 0)
    assert training["metrics"]["loss"]["count"] > 0
    assert state_file(cloud) is None, "the lock is released: system-state.json is gone"
    final = json.loads(text(cloud, prefix + "state-final.json"))
    assert [entry["status"] for entry in final["history"]][-1] == "cleanup"
    # the instance terminated itself (shutdown with terminate behaviour), nothing is left running
    (instance,) = run_instances(cloud, run_id)
    assert instance["InstanceId"] == launched
    assert instance["State"]["Name"] in ("shutting-down", "terminated")
    assert "shutdown" in cloud.console_output(launched).lower()
    # the cost: instance-hours x price, and nothing after the run
    record = closed(cloud, run_id)
    cost = record["detail"]["cost"]
    assert float(cost["instance_hours"]) >= 0.5
    assert float(cost["usd"]) == pytest.approx(float(cost["instance_hours"]) * 0.752, rel=1e-3)
    assert record["detail"]["history"][-1]["status"] == "cleanup"
    assert any(n["subject"] == "ec2ops training run" for n in cloud.notifications())
    record_property("figure", f"training run, whole local run: {time.monotonic() - started:.1f} s real time")


def test_a_second_run_in_the_same_env_is_refused_naming_the_first_and_another_env_is_allowed(
    cloud: LocalCloud,
) -> None:
    first = cloud.start("training-run", run_input(command=["python3", "train.py", "--epochs", "40", "--sleep", "0.05"]))
    running = wait_status(cloud, "training")

    refused = cloud.run("training-run", run_input())
    other = cloud.start("training-run", run_input(env="staging"))

    assert (refused.status, refused.error) == ("FAILED", "RunActive")
    assert running["run_id"] in (refused.cause or "")
    assert state_file(cloud)["run_id"] == running["run_id"], "the first run's state is untouched"
    assert finish(cloud, other).status == "SUCCEEDED"
    cloud.sfn.stop_execution(executionArn=first)
    wait_for(lambda: state_file(cloud) is None, "the stopped run to be cleaned up")


# --- failures: always failed -> cleanup, instance terminated ------------------------------------------------------


@pytest.mark.parametrize(
    ("instance_env", "check"),
    [({"EC2OPS_MIN_FREE_GB": "100000000"}, "disk"), ({"EC2OPS_SKIP_GPU_CHECKS": "0"}, "nvidia_driver")],
    ids=["not-enough-disk", "no-gpu-without-the-flag"],
)
def test_a_preflight_failure_fails_the_run_naming_the_check(
    make_cloud: Callable[..., LocalCloud], instance_env: dict[str, str], check: str
) -> None:
    cloud = make_cloud(**instance_env)

    result = finish(cloud, cloud.start("training-run", run_input()))

    assert (result.status, result.error) == ("FAILED", "PreflightFailed")
    assert check in (result.cause or "")
    run_id = run_id_of(cloud, result)
    history = [e["status"] for e in closed(cloud, run_id)["detail"]["history"]]
    assert history == ["initialization", "failed", "cleanup"], "no data sync, no training"
    assert all(i["State"]["Name"] in ("shutting-down", "terminated") for i in run_instances(cloud, run_id))
    assert state_file(cloud) is None


def test_a_training_command_that_exits_non_zero_fails_with_its_exit_code(cloud: LocalCloud) -> None:
    result = finish(cloud, cloud.start("training-run", run_input(command=["python3", "train.py", "--fail-with", "3"])))

    assert (result.status, result.error) == ("FAILED", "TrainingFailed")
    assert "exited with code 3" in (result.cause or "")
    run_id = run_id_of(cloud, result)
    assert [e["status"] for e in closed(cloud, run_id)["detail"]["history"]][-2:] == ["failed", "cleanup"]
    assert all(i["State"]["Name"] in ("shutting-down", "terminated") for i in run_instances(cloud, run_id))
    assert state_file(cloud) is None


def test_an_instance_that_dies_silently_is_noticed_by_its_missed_heartbeat(cloud: LocalCloud) -> None:
    arn = cloud.start("training-run", run_input(command=["python3", "train.py", "--epochs", "200", "--sleep", "0.05"]))
    running = wait_status(cloud, "training")
    cloud.kill_instance_process(running["instance_id"])

    result = finish(cloud, arn)

    assert (result.status, result.error) == ("FAILED", "HeartbeatMissed")
    assert cloud.instance(running["instance_id"])["State"]["Name"] in ("shutting-down", "terminated")
    assert [e["status"] for e in closed(cloud, running["run_id"])["detail"]["history"]][-2:] == ["failed", "cleanup"]


def test_an_execution_stopped_from_the_console_kills_and_cleans_the_run(cloud: LocalCloud) -> None:
    arn = cloud.start("training-run", run_input(command=["python3", "train.py", "--epochs", "200", "--sleep", "0.05"]))
    running = wait_status(cloud, "training")

    cloud.sfn.stop_execution(executionArn=arn, error="Stopped", cause="stopped from the console")

    wait_for(lambda: state_file(cloud) is None, "the reaper to clean up the stopped run")
    final = json.loads(text(cloud, f"dev/{running['run_id']}/state-final.json"))
    assert [e["status"] for e in final["history"]][-2:] == ["killed", "cleanup"]
    wait_for(
        lambda: cloud.instance(running["instance_id"])["State"]["Name"] in ("shutting-down", "terminated"),
        "the instance to be terminated",
    )


# --- spot interruption ---------------------------------------------------------------------------------------------


def test_a_spot_interruption_resumes_from_the_checkpoint_on_a_new_instance(cloud: LocalCloud) -> None:
    arn = cloud.start(
        "training-run",
        run_input(
            market="spot",
            command=["python3", "train.py", "--epochs", "40", "--steps-per-epoch", "10", "--sleep", "0.1"],
        ),
    )
    first = wait_status(cloud, "training")
    wait_for(lambda: objects(cloud, f"dev/{first['run_id']}/checkpoints/"), "a first checkpoint in S3", timeout=60)

    cloud.interrupt(first["instance_id"])
    # The watcher acts within seconds (it polls every second here); AWS reclaims the instance two minutes after the
    # notice, so the emulator's two minutes pass only once the run has reacted.
    wait_for(
        lambda: (state := state_file(cloud)) and (state["status"] == "interrupted" or state["attempt"] > 1),
        "the watcher to mark the run interrupted",
        timeout=90,
    )
    cloud.clock.advance(minutes=2)

    result = finish(cloud, arn)
    assert result.status == "SUCCEEDED", result.cause
    history = result.output["history"]
    assert history.count("interrupted") == 1
    assert history[history.index("interrupted") + 1] == "data_sync"
    instances = run_instances(cloud, first["run_id"])
    assert len(instances) == 2
    assert "resumed from epoch" in text(cloud, f"dev/{first['run_id']}/logs/training.log")


def test_a_spot_interruption_with_no_resume_left_fails_and_cleans_up(cloud: LocalCloud) -> None:
    arn = cloud.start(
        "training-run",
        run_input(market="spot", max_resumes=0, command=["python3", "train.py", "--epochs", "200", "--sleep", "0.05"]),
    )
    first = wait_status(cloud, "training")
    cloud.interrupt(first["instance_id"])

    result = finish(cloud, arn)

    assert (result.status, result.error) == ("FAILED", "ResumesExhausted")
    assert [e["status"] for e in closed(cloud, first["run_id"])["detail"]["history"]][-3:] == [
        "interrupted",
        "failed",
        "cleanup",
    ]
    assert state_file(cloud) is None


# --- inputs and the instance's environment -------------------------------------------------------------------------


def test_adversarial_config_values_reach_the_job_verbatim_and_are_never_executed(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    config = {
        "quote": 'it\'s "quoted"',
        "subshell": f"$(touch {marker})",
        "backticks": f"`touch {marker}`",
        "newline": "line1\nline2; touch " + str(marker),
    }

    result = finish(cloud, cloud.start("training-run", run_input(training_config=config)))

    assert result.status == "SUCCEEDED", result.cause
    log = text(cloud, f"dev/{result.output['run_id']}/logs/training.log")
    (line,) = [line for line in log.splitlines() if line.startswith("config: ")]
    assert json.loads(line.removeprefix("config: ")) == config
    assert not marker.exists()


def test_the_documented_console_input_runs(cloud: LocalCloud) -> None:
    import re

    page = (REPO_ROOT / "docs" / "training-runs.md").read_text()
    (block,) = [b for b in re.findall(r"```json\n(.*?)```", page, flags=re.DOTALL) if '"instance_type"' in b]
    result = finish(cloud, cloud.start("training-run", json.loads(block)))
    assert result.status == "SUCCEEDED", result.cause
    assert result.output["history"][-1] == "cleanup"


@pytest.mark.parametrize(
    ("fields", "error", "says"),
    [
        ({"instance_type": "g9zz.huge"}, "UnknownInstanceType", "g9zz.huge"),
        ({"max_runtime_hours": 0}, "InvalidInput", "max_runtime_hours"),
        ({"command": []}, "InvalidInput", "command"),
        ({"env": "Dev Team"}, "InvalidInput", "env"),
        ({"training_config": {"blob": "x" * 2000}}, "InvalidInput", "training_config"),
    ],
    ids=["unknown-type", "bad-hours", "empty-command", "bad-env", "config-too-large"],
)
def test_bad_input_is_refused_before_anything_is_touched(
    cloud: LocalCloud, fields: dict[str, Any], error: str, says: str
) -> None:
    result = cloud.run("training-run", run_input(**fields))

    assert (result.status, result.error) == ("FAILED", error)
    assert says in (result.cause or "")
    assert cloud.ec2.describe_instances()["Reservations"] == []
    assert state_file(cloud) is None and state_file(cloud, "Dev Team") is None


# --- the sweeper ---------------------------------------------------------------------------------------------------


def test_the_sweeper_terminates_expired_instances_and_breaks_stale_locks(cloud: LocalCloud) -> None:
    from ec2ops_run_state import RunState, RunStateStore

    expired = cloud.launch_instance(
        "t3.large", managed=False, tags={"ec2ops:run-id": "old-run", "ec2ops:expires-at": "2020-01-01T00:00:00Z"}
    )
    fresh = cloud.launch_instance(
        "t3.large", managed=False, tags={"ec2ops:run-id": "new-run", "ec2ops:expires-at": "2099-01-01T00:00:00Z"}
    )
    gone = cloud.launch_instance("t3.large", managed=False, tags={"ec2ops:run-id": "stale-run"})
    cloud.ec2.terminate_instances(InstanceIds=[gone])
    store = RunStateStore(cloud.s3, bucket(cloud), "dev", clock=cloud.clock.now)
    store.create(RunState(run_id="stale-run", environment="dev", instance_type="t3.large"))
    store.update("stale-run", changes={"instance_id": gone})
    cloud.clock.advance(hours=1)

    swept = cloud.invoke(c_name("sweep"), {})

    assert swept["terminated_expired"] == [expired]
    assert swept["closed_stale_runs"] == ["stale-run"]
    assert cloud.instance(expired)["State"]["Name"] in ("shutting-down", "terminated")
    assert cloud.instance(fresh)["State"]["Name"] == "running"
    assert state_file(cloud) is None
    final = json.loads(text(cloud, "dev/stale-run/state-final.json"))
    assert [e["status"] for e in final["history"]] == ["initialization", "failed", "cleanup"]


# --- least privilege, proven by what really ran --------------------------------------------------------------------


def test_every_call_each_training_lambda_made_is_granted_to_its_own_role(cloud: LocalCloud) -> None:
    finish(cloud, cloud.start("training-run", run_input()))
    arn = cloud.start("training-run", run_input(command=["python3", "train.py", "--epochs", "200", "--sleep", "0.05"]))
    wait_status(cloud, "training")
    cloud.sfn.stop_execution(executionArn=arn)
    wait_for(lambda: state_file(cloud) is None, "the reaper")
    cloud.invoke(c_name("sweep"), {})
    called = {f: calls for f, calls in cloud.counter.by_function.items() if f.startswith("ec2ops-training-run")}
    assert {c_name(short) for short in ("plan", "acquire", "launch", "finish", "reap", "sweep")} <= set(called)
    for function, calls in called.items():
        granted = granted_actions(cloud.app.template, cloud.app.function_roles[function])
        missing = [iam_action(call) for call in calls if not is_granted(iam_action(call), granted)]
        assert missing == [], f"{function} called {missing} without a grant"


def run_id_of(cloud: LocalCloud, result: ExecutionResult) -> str:
    """The run id of a finished execution, from the ledger's run-closed item of its execution."""
    items = [i for i in cloud.ledger_items() if i["kind"] == "run-closed" and i["execution_id"] == result.arn]
    assert items, f"no run-closed item for {result.arn}"
    return str(items[0]["detail"]["final_state"]).split("/")[1]
