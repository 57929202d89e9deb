"""The training run's state file: the transition table, the conditional writes on S3 (moto), archive, and the CLI."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import product
from pathlib import Path
from typing import Any

import boto3
import ec2ops_run_state as rs
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from ec2ops_run_state import (
    ConcurrentUpdate,
    CorruptState,
    IllegalTransition,
    RunAlreadyActive,
    RunState,
    RunStateStore,
    StateMissing,
)
from moto import mock_aws
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
BUCKET = "ec2ops-training-test"
ENV = "dev"
SCRIPT = Path(rs.__file__).resolve()
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

EXPECTED_TABLE = {
    "initialization": {"data_sync", "failed", "killed"},
    "data_sync": {"training", "failed", "killed"},
    "training": {"results_sync", "failed", "killed", "interrupted"},
    "interrupted": {"data_sync", "failed", "killed"},
    "results_sync": {"cleanup", "failed", "killed"},
    "failed": {"cleanup"},
    "killed": {"cleanup"},
    "cleanup": set(),
}
ALLOWED = sorted((a, b) for a, targets in EXPECTED_TABLE.items() for b in targets)
ILLEGAL = sorted(set(product(rs.STATUSES, repeat=2)) - set(ALLOWED))


class Clock:
    """A clock the test moves: every write stamps a time the assertions can name."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: int = 60) -> str:
        self.now += timedelta(seconds=seconds)
        return rs.iso(self.now)


def new_run(run_id: str = "run-1", env: str = ENV, **fields: Any) -> RunState:
    return RunState(
        run_id=run_id,
        environment=env,
        instance_type="g4dn.2xlarge",
        market="spot",
        training_config={"epochs": 3},
        **fields,
    )


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(s3: Any, clock: Clock) -> RunStateStore:
    return RunStateStore(s3, BUCKET, ENV, clock=clock)


def raw(s3: Any, key: str = f"{ENV}/system-state.json") -> tuple[bytes, str]:
    response = s3.get_object(Bucket=BUCKET, Key=key)
    return response["Body"].read(), response["ETag"]


def exists(s3: Any, key: str) -> bool:
    try:
        s3.head_object(Bucket=BUCKET, Key=key)
    except ClientError:
        return False
    return True


def walk(store: RunStateStore, run_id: str, *statuses: str) -> RunState:
    state = store.read()[0]
    for status in statuses:
        state = store.transition(run_id, status)
    return state


# --- the table ------------------------------------------------------------------------------------------------


def test_table_is_exactly_the_documented_one() -> None:
    assert {status: frozenset(targets) for status, targets in EXPECTED_TABLE.items()} == rs.TRANSITIONS
    assert set(rs.STATUSES) == set(rs.TRANSITIONS)
    assert rs.TERMINAL == "cleanup"
    assert frozenset(rs.STATUSES) - {"cleanup"} == rs.ACTIVE


@pytest.mark.parametrize(("current", "new"), ALLOWED)
def test_every_allowed_edge_is_accepted(current: str, new: str) -> None:
    rs.check_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("training", "data_sync"),
        ("failed", "training"),
        ("initialization", "training"),
        ("cleanup", "initialization"),
        ("cleanup", "failed"),
        ("killed", "failed"),
        ("results_sync", "interrupted"),
        ("interrupted", "training"),
    ],
)
def test_illegal_edges_are_refused_naming_both_statuses(current: str, new: str) -> None:
    with pytest.raises(IllegalTransition) as error:
        rs.check_transition(current, new)
    assert repr(current) in str(error.value)
    assert repr(new) in str(error.value)


def test_every_edge_outside_the_table_is_refused() -> None:
    for current, new in ILLEGAL:
        with pytest.raises(IllegalTransition):
            rs.check_transition(current, new)


def test_the_refusal_lists_what_may_follow() -> None:
    with pytest.raises(IllegalTransition, match="only failed, interrupted, killed, results_sync may follow"):
        rs.check_transition("training", "data_sync")
    with pytest.raises(IllegalTransition, match="terminal"):
        rs.check_transition("cleanup", "failed")
    with pytest.raises(IllegalTransition, match="already in 'training'"):
        rs.check_transition("training", "training")
    with pytest.raises(IllegalTransition, match="unknown status 'done'"):
        rs.check_transition("training", "done")


def test_keys() -> None:
    assert rs.state_key("dev") == "dev/system-state.json"
    assert rs.final_key("dev", "run-7") == "dev/run-7/state-final.json"


def test_module_needs_only_the_stdlib_and_boto() -> None:
    """It runs on the instance with a plain Python and boto3, and never imports the Lambda package."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(SCRIPT.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    assert roots - set(sys.stdlib_module_names) <= {"boto3", "botocore", "mypy_boto3_s3"}


# --- the document ---------------------------------------------------------------------------------------------


def test_document_round_trips_sorted_and_indented() -> None:
    state = new_run(timestamps={"start": "a", "last_update": "b"})
    text = state.to_json()
    assert RunState.from_json(text) == state
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
    assert state.s3_prefix == "dev/run-1/"


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda doc: "{not json", "not valid JSON"),
        (lambda doc: "[1, 2]", "expected a JSON object"),
        (lambda doc: {k: v for k, v in doc.items() if k != "status"}, "missing field 'status'"),
        (lambda doc: {**doc, "colour": "red"}, "unexpected field 'colour'"),
        (lambda doc: {**doc, "status": "done"}, "unknown status 'done'"),
        (lambda doc: {**doc, "pid": "123"}, "pid must be a positive integer"),
        (lambda doc: {**doc, "attempt": 0}, "attempt must be an integer >= 1"),
        (lambda doc: {**doc, "market": "reserved"}, "market must be one of spot, on-demand"),
        (lambda doc: {**doc, "timestamps": {"start": "x"}}, "timestamps.last_update is missing"),
        (lambda doc: {**doc, "history": [{"status": "training"}]}, "history must be a list"),
    ],
)
def test_invalid_documents_are_corrupt_naming_the_problem(mutate: Any, problem: str) -> None:
    doc = json.loads(new_run(timestamps={"start": "a", "last_update": "b"}).to_json())
    changed = mutate(doc)
    text = changed if isinstance(changed, str) else json.dumps(changed)
    with pytest.raises(CorruptState, match=problem):
        RunState.from_json(text)


# --- moto does what the store relies on -----------------------------------------------------------------------


def test_moto_honours_conditional_puts_and_deletes(s3: Any) -> None:
    """The store's guarantees are only tested if moto really refuses these writes, so check it does."""
    first = s3.put_object(Bucket=BUCKET, Key="k", Body=b"1", IfNoneMatch="*")["ETag"]
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=BUCKET, Key="k", Body=b"2", IfNoneMatch="*")
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    second = s3.put_object(Bucket=BUCKET, Key="k", Body=b"2", IfMatch=first)["ETag"]
    with pytest.raises(ClientError) as stale:
        s3.put_object(Bucket=BUCKET, Key="k", Body=b"3", IfMatch=first)
    assert stale.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with pytest.raises(ClientError):
        s3.delete_object(Bucket=BUCKET, Key="k", IfMatch=first)
    assert raw(s3, "k")[0] == b"2"
    s3.delete_object(Bucket=BUCKET, Key="k", IfMatch=second)
    assert not exists(s3, "k")


# --- create ---------------------------------------------------------------------------------------------------


def test_create_writes_the_initial_state(store: RunStateStore, s3: Any) -> None:
    state = new_run()
    etag = store.create(state)
    body, current_etag = raw(s3)
    assert etag == current_etag
    assert body.decode() == state.to_json()
    written = RunState.from_json(body)
    assert written.status == "initialization"
    assert written.timestamps == {"start": rs.iso(T0), "last_update": rs.iso(T0)}
    assert written.history == [{"status": "initialization", "at": rs.iso(T0), "step": "initialization"}]
    assert store.read() == (written, etag)


def test_a_second_run_in_the_same_env_is_refused_naming_the_first(store: RunStateStore, s3: Any) -> None:
    store.create(new_run("run-1", instance_id="i-0123456789abcdef0"))
    store.transition("run-1", "data_sync")
    before = raw(s3)
    with pytest.raises(RunAlreadyActive) as refused:
        store.create(new_run("run-2"))
    message = str(refused.value)
    assert "run run-1" in message
    assert "data_sync" in message
    assert "i-0123456789abcdef0" in message
    assert "run-2 was not started" in message
    assert refused.value.running is not None
    assert refused.value.running.run_id == "run-1"
    assert raw(s3) == before


def test_a_run_in_another_env_is_allowed(store: RunStateStore, s3: Any, clock: Clock) -> None:
    store.create(new_run("run-1"))
    RunStateStore(s3, BUCKET, "prod", clock=clock).create(new_run("run-2", env="prod"))
    assert RunState.from_json(raw(s3, "prod/system-state.json")[0]).run_id == "run-2"
    assert store.read()[0].run_id == "run-1"


def test_create_refuses_a_state_for_another_env_or_past_initialization(store: RunStateStore, s3: Any) -> None:
    with pytest.raises(ValueError, match="env 'prod'"):
        store.create(new_run(env="prod"))
    with pytest.raises(ValueError, match="starts in 'initialization'"):
        store.create(new_run(status="training"))
    assert not exists(s3, rs.state_key(ENV))


# --- transitions ----------------------------------------------------------------------------------------------


def test_a_run_walks_the_happy_path_recording_history(store: RunStateStore, clock: Clock) -> None:
    store.create(new_run())
    at = [clock.tick() for _ in range(3)]
    clock.now = T0
    clock.tick()
    store.transition("run-1", "data_sync", step="downloading cached-datasets")
    clock.tick()
    store.transition("run-1", "training", changes={"pid": 4242})
    clock.tick()
    state = store.transition("run-1", "results_sync")
    assert state == store.read()[0]
    assert [(h["status"], h["at"], h["step"]) for h in state.history] == [
        ("initialization", rs.iso(T0), "initialization"),
        ("data_sync", at[0], "downloading cached-datasets"),
        ("training", at[1], "training"),
        ("results_sync", at[2], "results_sync"),
    ]
    assert state.pid == 4242
    assert state.current_step == "results_sync"
    assert state.timestamps == {"start": rs.iso(T0), "last_update": at[2]}


def test_a_stale_write_loses_the_race_and_leaves_the_winner_intact(store: RunStateStore, s3: Any) -> None:
    """Another writer moves the file between this store's read and its write: the write is refused."""
    store.create(new_run())
    store.transition("run-1", "data_sync")
    store.transition("run-1", "training")
    other = RunStateStore(s3, BUCKET, ENV)

    class RacingClient:
        def __getattr__(self, name: str) -> Any:
            return getattr(s3, name)

        def get_object(self, **kwargs: Any) -> Any:
            response = s3.get_object(**kwargs)
            other.transition("run-1", "interrupted", step="spot warning")
            return response

    racer = RunStateStore(RacingClient(), BUCKET, ENV)  # type: ignore[arg-type]
    with pytest.raises(ConcurrentUpdate, match="another writer was first"):
        racer.transition("run-1", "results_sync")
    state = RunState.from_json(raw(s3)[0])
    assert state.status == "interrupted"
    assert state.current_step == "spot warning"
    assert [h["status"] for h in state.history][-1] == "interrupted"


def test_a_stale_etag_cannot_overwrite(store: RunStateStore, s3: Any) -> None:
    store.create(new_run())
    state, stale = store.read()
    store.transition("run-1", "data_sync")
    state.status = "failed"
    with pytest.raises(ConcurrentUpdate):
        store._swap(state, stale)
    assert store.read()[0].status == "data_sync"


def test_an_illegal_transition_leaves_the_file_byte_identical(store: RunStateStore, s3: Any) -> None:
    store.create(new_run())
    walk(store, "run-1", "data_sync", "training")
    before = raw(s3)
    with pytest.raises(IllegalTransition, match="run run-1: cannot go from 'training' to 'data_sync'"):
        store.transition("run-1", "data_sync")
    assert raw(s3) == before


def test_entering_the_same_status_is_refused_unless_idempotent(store: RunStateStore, s3: Any) -> None:
    store.create(new_run())
    store.transition("run-1", "data_sync")
    before = raw(s3)
    with pytest.raises(IllegalTransition, match="already in 'data_sync'"):
        store.transition("run-1", "data_sync")
    again = store.transition("run-1", "data_sync", idempotent=True, step="ignored")
    assert again.status == "data_sync"
    assert again.current_step == "data_sync"
    assert raw(s3) == before
    assert store.transition("run-1", "training", idempotent=True).status == "training"


def test_a_finished_run_cannot_write_over_the_next_run(store: RunStateStore, s3: Any) -> None:
    store.create(new_run("run-2"))
    before = raw(s3)
    with pytest.raises(ConcurrentUpdate, match="belongs to run run-2"):
        store.transition("run-1", "failed")
    with pytest.raises(ConcurrentUpdate, match="belongs to run run-2"):
        store.update("run-1", heartbeat=True)
    assert raw(s3) == before


def test_resume_after_interruption_starts_the_next_attempt(store: RunStateStore) -> None:
    store.create(new_run())
    walk(store, "run-1", "data_sync", "training", "interrupted")
    resumed = store.transition("run-1", "data_sync", changes={"instance_id": "i-0aaaaaaaaaaaaaaaa", "pid": None})
    assert resumed.attempt == 2
    assert resumed.instance_id == "i-0aaaaaaaaaaaaaaaa"
    walk(store, "run-1", "training", "interrupted")
    assert store.transition("run-1", "data_sync", changes={"attempt": 7}).attempt == 7


def test_failure_records_the_error_message(store: RunStateStore) -> None:
    store.create(new_run())
    failed = store.transition("run-1", "failed", error_message="nvidia-smi found no GPU", step="preflight")
    assert (failed.status, failed.error_message, failed.current_step) == (
        "failed",
        "nvidia-smi found no GPU",
        "preflight",
    )


@pytest.mark.parametrize("field", ["status", "run_id", "history", "environment", "timestamps", "colour"])
def test_changes_cannot_touch_what_transitions_own(store: RunStateStore, s3: Any, field: str) -> None:
    store.create(new_run())
    before = raw(s3)
    with pytest.raises(ValueError, match=f"cannot change {field}"):
        store.transition("run-1", "data_sync", changes={field: "x"})
    with pytest.raises(ValueError, match=f"cannot change {field}"):
        store.update("run-1", changes={field: "x"})
    assert raw(s3) == before


def test_changes_that_make_the_state_invalid_are_refused(store: RunStateStore, s3: Any) -> None:
    store.create(new_run())
    before = raw(s3)
    with pytest.raises(ValueError, match="pid must be a positive integer"):
        store.update("run-1", changes={"pid": -1})
    assert raw(s3) == before


# --- update ---------------------------------------------------------------------------------------------------


def test_update_sets_step_pid_and_heartbeat_without_a_history_entry(store: RunStateStore, clock: Clock) -> None:
    store.create(new_run())
    store.transition("run-1", "data_sync")
    beat = clock.tick()
    state = store.update("run-1", step="epoch 1/3", changes={"pid": 99}, heartbeat=True)
    assert (state.status, state.current_step, state.pid) == ("data_sync", "epoch 1/3", 99)
    assert state.timestamps["heartbeat"] == beat
    assert state.timestamps["last_update"] == beat
    assert len(state.history) == 2
    assert store.read()[0] == state


def test_update_is_refused_after_cleanup(store: RunStateStore, s3: Any) -> None:
    store.create(new_run())
    walk(store, "run-1", "failed", "cleanup")
    before = raw(s3)
    with pytest.raises(IllegalTransition, match="can only be archived"):
        store.update("run-1", heartbeat=True)
    assert raw(s3) == before


# --- reading --------------------------------------------------------------------------------------------------


def test_no_state_file_is_state_missing(store: RunStateStore) -> None:
    with pytest.raises(StateMissing, match="env dev has no active training run"):
        store.read()
    with pytest.raises(StateMissing):
        store.transition("run-1", "failed")


def test_a_corrupt_file_is_reported_and_never_overwritten(store: RunStateStore, s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=rs.state_key(ENV), Body=b'{"run_id": "run-1", "status": ')
    before = raw(s3)
    with pytest.raises(CorruptState, match=r"s3://ec2ops-training-test/dev/system-state.json is not a valid state"):
        store.read()
    with pytest.raises(CorruptState):
        store.transition("run-1", "failed")
    with pytest.raises(RunAlreadyActive, match="cannot be read") as refused:
        store.create(new_run("run-2"))
    assert refused.value.running is None
    assert raw(s3) == before


def test_a_state_copied_from_another_env_is_corrupt(store: RunStateStore, s3: Any) -> None:
    copied = new_run(env="prod", timestamps={"start": "a", "last_update": "b"})
    s3.put_object(Bucket=BUCKET, Key=rs.state_key(ENV), Body=copied.to_json().encode())
    with pytest.raises(CorruptState, match="says environment 'prod'"):
        store.read()


# --- archive --------------------------------------------------------------------------------------------------


def test_archive_moves_the_final_state_next_to_the_run(store: RunStateStore, s3: Any) -> None:
    store.create(new_run())
    walk(store, "run-1", "data_sync", "training", "results_sync", "cleanup")
    body, _ = raw(s3)
    assert store.archive("run-1") == "dev/run-1/state-final.json"
    assert raw(s3, "dev/run-1/state-final.json")[0] == body
    assert not exists(s3, rs.state_key(ENV))
    assert store.archive("run-1") == "dev/run-1/state-final.json"
    store.create(new_run("run-2"))
    assert store.archive("run-1") == "dev/run-1/state-final.json"
    assert store.read()[0].run_id == "run-2"


def test_archive_is_refused_before_cleanup(store: RunStateStore, s3: Any) -> None:
    store.create(new_run())
    store.transition("run-1", "failed")
    before = raw(s3)
    with pytest.raises(IllegalTransition, match="run run-1 is in 'failed'"):
        store.archive("run-1")
    assert raw(s3) == before
    assert not exists(s3, "dev/run-1/state-final.json")


def test_archive_of_another_runs_file_is_refused(store: RunStateStore, s3: Any) -> None:
    store.create(new_run("run-2"))
    with pytest.raises(ConcurrentUpdate, match="belongs to run run-2"):
        store.archive("run-1")
    with pytest.raises(StateMissing):
        RunStateStore(s3, BUCKET, "prod").archive("run-1")


def test_archive_checks_the_etag_itself_when_delete_cannot_be_conditional(store: RunStateStore, s3: Any) -> None:
    """An older botocore has no IfMatch on DeleteObject: the store re-reads the ETag and deletes plainly."""

    class OldClient:
        def __getattr__(self, name: str) -> Any:
            return getattr(s3, name)

        def delete_object(self, **kwargs: Any) -> Any:
            if "IfMatch" in kwargs:
                raise ParamValidationError(report="Unknown parameter in input: IfMatch")
            return s3.delete_object(**kwargs)

    store.create(new_run())
    walk(store, "run-1", "killed", "cleanup")
    old = RunStateStore(OldClient(), BUCKET, ENV)  # type: ignore[arg-type]
    assert old.archive("run-1") == "dev/run-1/state-final.json"
    assert not exists(s3, rs.state_key(ENV))


# --- the command line -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def served(moto_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> dict[str, str]:
    """A bucket on the moto server and the environment the instance's scripts run with."""
    bucket = f"cli-{abs(hash(request.node.name)) % 10**8}"
    boto3.client("s3", region_name=REGION, endpoint_url=moto_server).create_bucket(Bucket=bucket)
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_REGION": REGION,
        "EC2OPS_BUCKET": bucket,
        "EC2OPS_ENV": ENV,
        "EC2OPS_RUN_ID": "run-1",
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_moves_the_run_and_shows_it(served: dict[str, str]) -> None:
    client = boto3.client("s3", region_name=REGION, endpoint_url=served["AWS_ENDPOINT_URL"])
    RunStateStore(client, served["EC2OPS_BUCKET"], ENV).create(new_run())
    for args in (
        ("transition", "data_sync", "--step", "syncing data"),
        ("transition", "training"),
        ("step", "epoch 2/3"),
        ("set-pid", "4242"),
        ("heartbeat",),
        ("transition", "training", "--idempotent"),
    ):
        done = cli(served, *args)
        assert (done.returncode, done.stderr) == (0, ""), args
    shown = cli(served, "show")
    assert shown.returncode == 0
    state = RunState.from_json(shown.stdout)
    assert (state.status, state.current_step, state.pid) == ("training", "epoch 2/3", 4242)
    assert "heartbeat" in state.timestamps
    assert [h["step"] for h in state.history] == ["initialization", "syncing data", "training"]


def test_cli_reports_a_state_error_in_one_line_with_exit_2(served: dict[str, str]) -> None:
    missing = cli(served, "heartbeat")
    assert missing.returncode == 2
    assert missing.stderr.startswith("ec2ops_run_state: StateMissing: no state file at s3://")
    client = boto3.client("s3", region_name=REGION, endpoint_url=served["AWS_ENDPOINT_URL"])
    RunStateStore(client, served["EC2OPS_BUCKET"], ENV).create(new_run())
    illegal = cli(served, "transition", "results_sync", "--error", "x")
    assert illegal.returncode == 2
    assert illegal.stderr.count("\n") == 1
    assert illegal.stderr.startswith(
        "ec2ops_run_state: IllegalTransition: run run-1: cannot go from 'initialization' to 'results_sync'"
    )


def test_cli_usage_errors_exit_64(served: dict[str, str]) -> None:
    assert cli(served, "transition", "done").returncode == 64
    assert cli(served, "set-pid", "abc").returncode == 64
    assert cli(served).returncode == 64
    unset = cli({k: v for k, v in served.items() if k != "EC2OPS_RUN_ID"}, "heartbeat")
    assert unset.returncode == 64
    assert "EC2OPS_RUN_ID" in unset.stderr
