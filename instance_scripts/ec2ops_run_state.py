"""The training run's state file `s3://<bucket>/<env>/system-state.json`: its statuses, the one transition table,
and the only code that writes it.

The Lambdas import this module and the instance runs it as a script (`python3 ec2ops_run_state.py ...`), so both
sides check the same table. It must stay importable with a plain Python >= 3.10 and boto3: stdlib and
boto3/botocore only, nothing from ec2ops_lambda.

Every write is one whole JSON document in one conditional PutObject: the first with `If-None-Match: *` (one run per
env), every later one with `If-Match: <etag>` (compare-and-swap), so two writers never interleave and a reader never
sees half a file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# --- the table ------------------------------------------------------------------------------------------------

STATUSES = ("initialization", "data_sync", "training", "results_sync", "interrupted", "failed", "killed", "cleanup")

TRANSITIONS: dict[str, frozenset[str]] = {
    "initialization": frozenset({"data_sync", "failed", "killed"}),
    "data_sync": frozenset({"training", "failed", "killed"}),
    "training": frozenset({"results_sync", "failed", "killed", "interrupted"}),
    # A spot interruption: the run resumes from its last checkpoint on new capacity (a new attempt).
    "interrupted": frozenset({"data_sync", "failed", "killed"}),
    "results_sync": frozenset({"cleanup", "failed", "killed"}),
    "failed": frozenset({"cleanup"}),
    "killed": frozenset({"cleanup"}),
    # Terminal: the file is archived to <env>/<run_id>/state-final.json and deleted.
    "cleanup": frozenset(),
}
"""status -> the statuses that may follow it. No self loops: a status is entered once per attempt."""

TERMINAL = "cleanup"
ACTIVE: frozenset[str] = frozenset(STATUSES) - {TERMINAL}
"""A state file in one of these statuses means a run still owns the env."""

MARKETS = ("spot", "on-demand")
STATE_FILE = "system-state.json"
FINAL_FILE = "state-final.json"


class RunStateError(Exception):
    """Base of the state file's errors; the message says what is wrong and what to do."""


class IllegalTransition(RunStateError):
    """The table does not allow this status change (or the run is past the point where it can change)."""


class ConcurrentUpdate(RunStateError):
    """Another writer changed the file since it was read, or the file now belongs to another run: read it again."""


class RunAlreadyActive(RunStateError):
    """The env already has a state file: one run per env. `running` is that run, when it could be read back."""

    def __init__(self, message: str, running: RunState | None) -> None:
        super().__init__(message)
        self.running = running


class StateMissing(RunStateError):
    """The env has no state file: no run is active there (or it was archived)."""


class CorruptState(RunStateError):
    """The object is not a valid state document: bad JSON, a missing or mistyped field, an unknown status."""


def check_transition(current: str, new: str) -> None:
    """Raise IllegalTransition unless the table allows `current` -> `new`; the message lists what is allowed."""
    if new not in TRANSITIONS:
        raise IllegalTransition(f"unknown status {new!r}: the statuses are {', '.join(STATUSES)}")
    if current not in TRANSITIONS:
        raise IllegalTransition(f"unknown current status {current!r}: the statuses are {', '.join(STATUSES)}")
    allowed = TRANSITIONS[current]
    if new in allowed:
        return
    if not allowed:
        raise IllegalTransition(f"cannot go from {current!r} to {new!r}: {current!r} is terminal, nothing follows it")
    already = f" (the run is already in {current!r})" if new == current else ""
    raise IllegalTransition(
        f"cannot go from {current!r} to {new!r}{already}: from {current!r} only {', '.join(sorted(allowed))} may follow"
    )


def state_key(env: str) -> str:
    """Where the env's active run keeps its state."""
    return f"{env}/{STATE_FILE}"


def final_key(env: str, run_id: str) -> str:
    """Where a finished run's last state is archived, next to its logs and results."""
    return f"{env}/{run_id}/{FINAL_FILE}"


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)  # noqa: UP017 - datetime.UTC is 3.11+, the instance may run 3.10


def iso(moment: datetime) -> str:
    """UTC, to the second, with an explicit offset: `datetime.fromisoformat` reads it back on 3.10 too."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)  # noqa: UP017 - see _utc_now
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")  # noqa: UP017 - see _utc_now


# --- the document ---------------------------------------------------------------------------------------------


@dataclass
class RunState:
    """One run's state file, field for field. Defaults make a fresh run; `RunStateStore.create` stamps the times."""

    run_id: str
    environment: str
    status: str = "initialization"
    current_step: str = "initialization"
    """Free text for people (`downloading data`, `epoch 3/10`); set to the status name when a status is entered."""
    instance_id: str | None = None
    instance_type: str = ""
    s3_prefix: str = ""
    """Where the run's files go; empty means `<env>/<run_id>/`."""
    timestamps: dict[str, str] = field(default_factory=dict)
    """`start` and `last_update` always, `heartbeat` once the instance has sent one (ISO 8601, UTC)."""
    training_config: dict[str, Any] = field(default_factory=dict)
    error_message: str | None = None
    pid: int | None = None
    market: str = "on-demand"
    attempt: int = 1
    """1-based; a resume after a spot interruption (interrupted -> data_sync) starts the next attempt."""
    history: list[dict[str, str]] = field(default_factory=list)
    """`{"status", "at", "step"}` for every status entered, initialization first."""
    execution_id: str | None = None
    """The Step Functions execution that owns the run (set at creation): cleanup acts only for its own run."""

    def __post_init__(self) -> None:
        if not self.s3_prefix and isinstance(self.environment, str) and isinstance(self.run_id, str):
            self.s3_prefix = f"{self.environment}/{self.run_id}/"

    def to_json(self) -> str:
        """Sorted and indented: people read this file in the S3 console."""
        return json.dumps(asdict(self), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> RunState:
        """Parse and check a state document; CorruptState names every problem."""
        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise CorruptState(f"not valid JSON: {error}") from None
        if not isinstance(raw, dict):
            raise CorruptState(f"expected a JSON object, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        problems = [f"missing field {name!r}" for name in sorted(known - OPTIONAL_FIELDS - raw.keys())]
        problems += [f"unexpected field {name!r}" for name in sorted(raw.keys() - known)]
        if problems:
            raise CorruptState("; ".join(problems))
        state = cls(**raw)
        problems = state.problems()
        if problems:
            raise CorruptState("; ".join(problems))
        return state

    def problems(self) -> list[str]:
        """What makes this state invalid, in words; empty when it is valid."""
        found: list[str] = []
        for name in ("run_id", "environment"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or "/" in value or value != value.strip():
                found.append(f"{name} must be a non-empty string without '/' or surrounding spaces (got {value!r})")
        if self.status not in STATUSES:
            found.append(f"unknown status {self.status!r} (the statuses are {', '.join(STATUSES)})")
        for name in ("current_step", "instance_type", "s3_prefix"):
            if not isinstance(getattr(self, name), str):
                found.append(f"{name} must be a string (got {getattr(self, name)!r})")
        for name in ("instance_id", "error_message", "execution_id"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                found.append(f"{name} must be a string or null (got {getattr(self, name)!r})")
        if not _is_str_dict(self.timestamps):
            found.append(f"timestamps must map names to ISO 8601 strings (got {self.timestamps!r})")
        else:
            found += [
                f"timestamps.{name} is missing" for name in ("start", "last_update") if name not in self.timestamps
            ]
        if not isinstance(self.training_config, dict):
            found.append(f"training_config must be an object (got {self.training_config!r})")
        if self.pid is not None and (not _is_int(self.pid) or self.pid <= 0):
            found.append(f"pid must be a positive integer or null (got {self.pid!r})")
        if self.market not in MARKETS:
            found.append(f"market must be one of {', '.join(MARKETS)} (got {self.market!r})")
        if not _is_int(self.attempt) or self.attempt < 1:
            found.append(f"attempt must be an integer >= 1 (got {self.attempt!r})")
        if not isinstance(self.history, list) or not all(
            _is_str_dict(entry) and {"status", "at", "step"} <= entry.keys() for entry in self.history
        ):
            found.append('history must be a list of {"status", "at", "step"} string objects')
        return found


OPTIONAL_FIELDS = frozenset({"execution_id"})
"""Fields a state file written before they existed may lack."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


CHANGEABLE = frozenset(
    {
        "current_step",
        "instance_id",
        "instance_type",
        "s3_prefix",
        "training_config",
        "error_message",
        "pid",
        "market",
        "attempt",
    }
)
"""Fields `changes` may set. status, run_id and history only move through transitions; environment never moves."""


# --- the store ------------------------------------------------------------------------------------------------


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _lost_race(error: ClientError) -> bool:
    """412: the ETag moved (or the key appeared). 409: S3 saw a conflicting conditional write in flight."""
    return _code(error) in ("PreconditionFailed", "ConditionalRequestConflict") or _status(error) in (409, 412)


def _missing(error: ClientError) -> bool:
    return _code(error) in ("NoSuchKey", "404", "NotFound") or _status(error) == 404


class RunStateStore:
    """Reads and writes one env's state file; every write checks the table and is conditional."""

    def __init__(self, s3_client: S3Client, bucket: str, env: str, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.s3 = s3_client
        self.bucket = bucket
        self.env = env
        self.clock = clock
        self.key = state_key(env)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def create(self, state: RunState) -> str:
        """Write a new run's state, refused when the env has one; returns the ETag.

        Stamps `timestamps.start`/`last_update` (when missing) and the first history entry on `state` itself, so
        the caller holds exactly what was written.
        """
        if state.environment != self.env:
            raise ValueError(f"run {state.run_id} is for env {state.environment!r}, this store writes {self.env!r}")
        if state.status != "initialization":
            raise ValueError(f"a run starts in 'initialization', not {state.status!r}")
        now = iso(self.clock())
        state.timestamps.setdefault("start", now)
        state.timestamps.setdefault("last_update", now)
        if not state.history:
            state.history.append({"status": state.status, "at": state.timestamps["start"], "step": state.current_step})
        _require_valid(state, "the new run's state")
        try:
            return self._put(state, IfNoneMatch="*")
        except ClientError as error:
            if not _lost_race(error):
                raise
        try:
            active = self.read()[0]
        except RunStateError as unreadable:
            running: RunState | None = None
            what = f"a run whose state cannot be read ({unreadable})"
        else:
            running = active
            what = (
                f"run {active.run_id} (status {active.status}, step {active.current_step!r}, "
                f"instance {active.instance_id or 'not launched yet'}, started {active.timestamps.get('start')})"
            )
        raise RunAlreadyActive(
            f"env {self.env} already has an active training run: {what}; {self.url} says so. "
            f"Run {state.run_id} was not started: wait for that run to finish, or stop it and let its cleanup "
            "archive the state file.",
            running,
        ) from None

    def read(self) -> tuple[RunState, str]:
        """The current state and its ETag (for a compare-and-swap write)."""
        _, state, etag = self._read_raw()
        return state, etag

    def transition(
        self,
        run_id: str,
        new_status: str,
        *,
        step: str | None = None,
        error_message: str | None = None,
        changes: Mapping[str, Any] | None = None,
        idempotent: bool = False,
    ) -> RunState:
        """Move run `run_id` to `new_status` if the table allows it, in one compare-and-swap write.

        `step` defaults to the status name. `idempotent=True` makes "already in new_status" a success without a
        write, for Lambda steps that the state machine retries. interrupted -> data_sync starts the next attempt
        unless `changes` sets `attempt` itself.
        """
        state, etag = self._read_own(run_id)
        if idempotent and state.status == new_status:
            return state
        try:
            check_transition(state.status, new_status)
        except IllegalTransition as error:
            raise IllegalTransition(f"run {run_id}: {error}") from None
        updated = self._apply(state, changes)
        if state.status == "interrupted" and new_status == "data_sync" and "attempt" not in (changes or {}):
            updated.attempt += 1
        updated.status = new_status
        updated.current_step = step if step is not None else new_status
        if error_message is not None:
            updated.error_message = error_message
        now = iso(self.clock())
        updated.timestamps["last_update"] = now
        updated.history.append({"status": new_status, "at": now, "step": updated.current_step})
        self._swap(updated, etag)
        return updated

    def update(
        self,
        run_id: str,
        *,
        step: str | None = None,
        changes: Mapping[str, Any] | None = None,
        heartbeat: bool = False,
    ) -> RunState:
        """Change fields without changing status (current step, pid, instance id, heartbeat), compare-and-swap."""
        state, etag = self._read_own(run_id)
        if state.status == TERMINAL:
            raise IllegalTransition(
                f"run {run_id} is in {TERMINAL!r}: its state is final and can only be archived, not updated"
            )
        updated = self._apply(state, changes)
        if step is not None:
            updated.current_step = step
        now = iso(self.clock())
        updated.timestamps["last_update"] = now
        if heartbeat:
            updated.timestamps["heartbeat"] = now
        self._swap(updated, etag)
        return updated

    def archive(self, run_id: str) -> str:
        """Copy the finished run's state to its final key, then delete the state file; returns the final key.

        Only in cleanup. Idempotent: when the state file is already gone (or belongs to a newer run) and the final
        key holds this run, that key is returned.
        """
        target = final_key(self.env, run_id)
        try:
            text, state, etag = self._read_raw()
        except StateMissing:
            if self._archived(run_id):
                return target
            raise
        if state.run_id != run_id:
            if self._archived(run_id):
                return target
            raise ConcurrentUpdate(
                f"{self.url} belongs to run {state.run_id} (status {state.status}), not {run_id}, and run "
                f"{run_id} has no {target}: nothing was archived. Check which run you meant."
            )
        if state.status != TERMINAL:
            raise IllegalTransition(
                f"run {run_id} is in {state.status!r}: only a run in {TERMINAL!r} is archived "
                f"(transition it to cleanup first)"
            )
        self.s3.put_object(Bucket=self.bucket, Key=target, Body=text.encode("utf-8"), ContentType="application/json")
        self._delete_if_unchanged(etag)
        return target

    # --- internals -------------------------------------------------------------------------------------------

    def _read_raw(self) -> tuple[str, RunState, str]:
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as error:
            if _missing(error):
                raise StateMissing(f"no state file at {self.url}: env {self.env} has no active training run") from None
            raise
        body = response["Body"].read()
        try:
            text = body.decode("utf-8")
            state = RunState.from_json(text)
        except (UnicodeDecodeError, CorruptState) as error:
            raise CorruptState(
                f"{self.url} is not a valid state document: {error}. Look at it in the S3 console; if no run is "
                "active, move it aside so a new run can start."
            ) from None
        if state.environment != self.env:
            raise CorruptState(
                f"{self.url} says environment {state.environment!r}, expected {self.env!r}: it was copied from "
                "another env. Move it aside."
            )
        return text, state, str(response["ETag"])

    def _read_own(self, run_id: str) -> tuple[RunState, str]:
        state, etag = self.read()
        if state.run_id != run_id:
            raise ConcurrentUpdate(
                f"{self.url} belongs to run {state.run_id} (status {state.status}), not {run_id}: run {run_id} is "
                "over (archived or broken) and must not write any more."
            )
        return state, etag

    def _apply(self, state: RunState, changes: Mapping[str, Any] | None) -> RunState:
        """A copy of `state` with `changes`; refuses unknown fields and values that make the state invalid."""
        updated = replace(state, timestamps=dict(state.timestamps), history=[dict(entry) for entry in state.history])
        unknown = sorted(set(changes or {}) - CHANGEABLE)
        if unknown:
            raise ValueError(
                f"cannot change {', '.join(unknown)} of run {state.run_id}: changes may only set "
                f"{', '.join(sorted(CHANGEABLE))} (status moves through transition())"
            )
        for name, value in (changes or {}).items():
            setattr(updated, name, value)
        if changes:
            problems = updated.problems()
            if problems:
                raise ValueError(f"invalid changes to run {state.run_id}: {'; '.join(problems)}")
        return updated

    def _put(self, state: RunState, **condition: str) -> str:
        try:
            response = self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=state.to_json().encode("utf-8"),
                ContentType="application/json",
                **condition,  # type: ignore[arg-type]
            )
        except ParamValidationError as error:
            raise RunStateError(
                f"this boto3/botocore cannot send a conditional PutObject ({error}); the state file is only ever "
                "written conditionally. Install a boto3 released after November 2024."
            ) from None
        return str(response["ETag"])

    def _swap(self, state: RunState, etag: str) -> str:
        """Write `state` only if the file still has `etag`; otherwise nothing is written."""
        try:
            return self._put(state, IfMatch=etag)
        except ClientError as error:
            if _lost_race(error):
                raise ConcurrentUpdate(
                    f"{self.url} changed while run {state.run_id} was being moved to {state.status!r} "
                    "(another writer was first): nothing was written. Read it again and retry."
                ) from None
            if _missing(error):
                raise ConcurrentUpdate(
                    f"{self.url} was deleted (archived?) while run {state.run_id} was being written: nothing was "
                    "written."
                ) from None
            raise

    def _delete_if_unchanged(self, etag: str) -> None:
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=etag)
            return
        except ParamValidationError:
            pass  # botocore before conditional deletes: fall through to check-then-delete
        except ClientError as error:
            if _missing(error):
                return  # another archive() of the same run deleted it first
            if _lost_race(error):
                raise ConcurrentUpdate(
                    f"{self.url} changed after it was archived; it was not deleted. Look at it before retrying."
                ) from None
            if _code(error) != "NotImplemented":
                raise
        # Fallback when the client or the endpoint has no conditional DeleteObject: re-read and compare the ETag,
        # then delete unconditionally. A write in the short window between the two calls would be lost; cleanup is
        # terminal (nothing writes after it) so only a foreign writer could hit it.
        try:
            current = self.s3.head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as error:
            if _missing(error):
                return
            raise
        if current["ETag"] != etag:
            raise ConcurrentUpdate(f"{self.url} changed after it was archived; it was not deleted.")
        self.s3.delete_object(Bucket=self.bucket, Key=self.key)

    def _archived(self, run_id: str) -> bool:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=final_key(self.env, run_id))["Body"].read()
        except ClientError as error:
            if _missing(error):
                return False
            raise
        try:
            return RunState.from_json(body).run_id == run_id
        except CorruptState:
            return False


def _require_valid(state: RunState, what: str) -> None:
    problems = state.problems()
    if problems:
        raise ValueError(f"{what} is not valid: {'; '.join(problems)}")


# --- the command line, for the instance's bash scripts ---------------------------------------------------------

EXIT_OK = 0
EXIT_STATE = 2
EXIT_AWS = 1
EXIT_USAGE = 64
PROG = "ec2ops_run_state"


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage; 2 is taken by state errors, so usage is 64 (EX_USAGE)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{PROG}: usage: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Read and move this run's state file. Settings: EC2OPS_BUCKET, EC2OPS_ENV, EC2OPS_RUN_ID.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    move = commands.add_parser("transition", help="move the run to a status (checked against the table)")
    move.add_argument("status", choices=STATUSES)
    move.add_argument("--step", help="current step text (default: the status name)")
    move.add_argument("--error", help="error message to record")
    move.add_argument("--idempotent", action="store_true", help="already in the status is a success")
    step = commands.add_parser("step", help="set the current step text")
    step.add_argument("text")
    commands.add_parser("heartbeat", help="stamp timestamps.heartbeat")
    pid = commands.add_parser("set-pid", help="record the training process id")
    pid.add_argument("pid", type=int)
    commands.add_parser("show", help="print the state file")
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None, s3_client: Any = None) -> int:
    """Run one command; 0 ok, 2 state error (one line on stderr), 1 AWS error, 64 usage."""
    args = _parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    needed = ["EC2OPS_BUCKET", "EC2OPS_ENV"] + ([] if args.command == "show" else ["EC2OPS_RUN_ID"])
    missing = [name for name in needed if not environ.get(name)]
    if missing:
        print(f"{PROG}: usage: set {', '.join(missing)} in the environment", file=sys.stderr)
        return EXIT_USAGE
    run_id = environ.get("EC2OPS_RUN_ID", "")
    try:
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        store = RunStateStore(s3_client, environ["EC2OPS_BUCKET"], environ["EC2OPS_ENV"])
        if args.command == "transition":
            store.transition(run_id, args.status, step=args.step, error_message=args.error, idempotent=args.idempotent)
        elif args.command == "step":
            store.update(run_id, step=args.text)
        elif args.command == "heartbeat":
            store.update(run_id, heartbeat=True)
        elif args.command == "set-pid":
            store.update(run_id, changes={"pid": args.pid})
        else:
            sys.stdout.write(store.read()[0].to_json())
    except RunStateError as error:
        print(f"{PROG}: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_STATE
    except ValueError as error:
        print(f"{PROG}: usage: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ClientError, BotoCoreError) as error:
        print(f"{PROG}: AWS error: {error}", file=sys.stderr)
        return EXIT_AWS
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
