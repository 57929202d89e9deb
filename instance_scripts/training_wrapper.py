"""Run the training command on the instance: stream its log, collect metrics, keep S3 and the workflow up to date.

Usage: training_wrapper.py [flags] -- python train.py --epochs 3
       training_wrapper.py --settings settings.json [flags]    (the command is the settings' `command`)

The child runs in its own process group with cwd = --workdir; its stdout and stderr go, merged, to
<log-dir>/training.log and to this process's stdout. Every --upload-interval seconds and at the end the log goes to
s3://$EC2OPS_BUCKET/<prefix>/logs/training.log and changed checkpoint files to <prefix>/checkpoints/. Heartbeats
(Step Functions task token, optional command) never stop training when they fail. SIGTERM or SIGINT stops the child
(SIGTERM to its group, SIGKILL after --grace-seconds). A checkpoint request file (written by spot_watcher.py) makes
the child checkpoint (SIGUSR1), the wrapper sync the checkpoints, then remove the file.

With --settings (the run's settings.json, written by bootstrap.sh), the child also gets the run's training_config:
EC2OPS_TRAINING_CONFIG (its JSON) and EC2OPS_CONFIG_<KEY> per top-level key that is a valid name (a string
verbatim, anything else as JSON). Values only ever travel in argv lists and the environment, never through a shell.
With `"resume": true` the checkpoints already in the checkpoint dir (restored from S3) are not uploaded again.

Exit code: the child's (0 on success, 128+N when signal N ended it, 127 when it could not start), 143 when stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol, TextIO

UTC = timezone.utc  # noqa: UP017 - the instance may run Python 3.10, which has no datetime.UTC
LOG = logging.getLogger("training_wrapper")

SERIES_CAP = 1000
KILLED_EXIT_CODE = 143
NOT_STARTED_EXIT_CODE = 127
TICK_SECONDS = 0.2
HANDLER_WAIT_SECONDS = 5.0
OUTPUT_DRAIN_SECONDS = 5.0
HEARTBEAT_COMMAND_TIMEOUT_SECONDS = 60.0
SIGNAL_NUMBERS = frozenset(int(member) for member in signal.Signals)
METRIC_LINE = re.compile(r"(?:^|\s)METRIC\s+(?P<pairs>\S+=\S+(?:\s+\S+=\S+)*)\s*$")
METRIC_PAIR = re.compile(r"^(?P<name>[A-Za-z_][\w./-]*)=(?P<value>\S+)$")
CONFIG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Uploader(Protocol):
    """Where the wrapper puts files: S3 on the instance, anything with the same method in tests."""

    def upload_file(self, path: Path, key: str) -> None: ...


class Heartbeat(Protocol):
    """One way to say 'still alive'; `beat` may raise, the wrapper logs it and carries on."""

    name: str

    def beat(self) -> None: ...


class S3Uploader:
    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self._client = client

    def upload_file(self, path: Path, key: str) -> None:
        if self._client is None:
            self._client = _s3_client()
        self._client.upload_file(str(path), self.bucket, key)


class StepFunctionsHeartbeat:
    name = "step functions"

    def __init__(self, task_token: str, client: Any = None) -> None:
        self.task_token = task_token
        self._client = client

    def beat(self) -> None:
        if self._client is None:
            self._client = _sfn_client()
        self._client.send_task_heartbeat(taskToken=self.task_token)


class CommandHeartbeat:
    """A command run on each beat (e.g. `python3 ec2ops_run_state.py heartbeat`), without a shell."""

    def __init__(self, argv: Sequence[str], timeout: float = HEARTBEAT_COMMAND_TIMEOUT_SECONDS) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        self.name = f"command {shlex.join(self.argv)}"

    def beat(self) -> None:
        done = subprocess.run(self.argv, capture_output=True, text=True, timeout=self.timeout, check=False)
        if done.returncode != 0:
            reason = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"exited with code {done.returncode}: {reason[0]}")


def _region() -> str | None:
    return os.environ.get("AWS_REGION") or None


def _s3_client() -> Any:
    """Lazy: the instance's system python may not have boto3 until the venv is in place."""
    import boto3

    return boto3.client("s3", region_name=_region())


def _sfn_client() -> Any:
    import boto3

    return boto3.client("stepfunctions", region_name=_region())


@dataclass
class MetricSeries:
    last: float | None = None
    count: int = 0
    series: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=SERIES_CAP))

    def add(self, value: float, step: int | None) -> None:
        self.last = value
        self.count += 1
        self.series.append({"step": step, "value": value})

    def to_json(self) -> dict[str, Any]:
        return {
            "last": _finite(self.last),
            "count": self.count,
            "series": [{"step": point["step"], "value": _finite(point["value"])} for point in self.series],
        }


def _finite(value: float | None) -> float | None:
    """NaN and infinities have no JSON form: they are written as null (the count still shows they happened)."""
    return value if value is not None and math.isfinite(value) else None


def parse_metrics(line: str) -> list[tuple[str, float, int | None]]:
    """`METRIC loss=0.3 acc=0.9` (after any log prefix) or `{"metric": "loss", "value": 0.3, "step": 10}`."""
    text = line.strip()
    if text.startswith("{"):
        return _parse_json_metric(text)
    match = METRIC_LINE.search(text)
    if not match:
        return []
    found: list[tuple[str, float, int | None]] = []
    for pair in match.group("pairs").split():
        parsed = METRIC_PAIR.match(pair)
        if parsed:
            try:
                found.append((parsed.group("name"), float(parsed.group("value")), None))
            except ValueError:
                continue
    return found


def _parse_json_metric(text: str) -> list[tuple[str, float, int | None]]:
    try:
        data = json.loads(text)
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    name, value, step = data.get("metric"), data.get("value"), data.get("step")
    if not isinstance(name, str) or not name or isinstance(value, bool) or not isinstance(value, int | float):
        return []
    if isinstance(step, bool) or not isinstance(step, int):
        step = None
    return [(name, float(value), step)]


class Metrics:
    """Last value, count and the latest SERIES_CAP points per metric; fed by the output thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[str, MetricSeries] = {}

    def feed(self, line: str) -> None:
        points = parse_metrics(line)
        if not points:
            return
        with self._lock:
            for name, value, step in points:
                self._series.setdefault(name, MetricSeries()).add(value, step)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {name: series.to_json() for name, series in self._series.items()}


@dataclass(frozen=True)
class WrapperConfig:
    command: list[str]
    workdir: Path
    log_dir: Path
    checkpoint_dir: Path
    models_dir: Path
    checkpoint_request: Path
    output: Path
    s3_prefix: str = ""
    upload_interval: float = 30.0
    heartbeat_interval: float = 60.0
    grace_seconds: float = 60.0
    checkpoint_settle: float = 30.0
    checkpoint_quiet: float = 0.3
    """A checkpoint is written in one burst: this long without a change after it means it is complete. Shorter
    than a training step, or a job that checkpoints every epoch would never look quiet."""

    def key(self, *parts: str) -> str:
        return "/".join(part.strip("/") for part in (self.s3_prefix, *parts) if part.strip("/"))

    @property
    def log_path(self) -> Path:
        return self.log_dir / "training.log"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def catches_signal(pid: int, signum: int) -> bool | None:
    """Whether process `pid` has a handler for `signum` (Linux: SigCgt in /proc/<pid>/status); None if unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _exit_code(returncode: int) -> int:
    """Popen reports a signal as -N; shells and bootstrap speak 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def _files(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    state: dict[str, tuple[int, int]] = {}
    for path in _files(root):
        try:
            stat = path.stat()
        except OSError:
            continue
        state[path.relative_to(root).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return state


class Wrapper:
    def __init__(
        self,
        config: WrapperConfig,
        uploader: Uploader | None = None,
        heartbeats: Sequence[Heartbeat] = (),
        echo: TextIO | None = None,
        now: Callable[[], datetime] = _utc_now,
        env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.uploader = uploader
        self.heartbeats = list(heartbeats)
        self.echo = echo if echo is not None else sys.stdout
        self.now = now
        self.env = env
        self.metrics = Metrics()
        self.artifacts: list[str] = []
        self._synced: dict[str, tuple[int, int]] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._kill_timer: threading.Timer | None = None

    @property
    def killed(self) -> bool:
        return self._stopping.is_set()

    def terminate(self) -> None:
        """What SIGTERM/SIGINT do: SIGTERM to the child's group now, SIGKILL after the grace period. Never blocks."""
        with self._lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
            process = self._process
        if process is not None:
            self._stop_group(process)

    def _stop_group(self, process: subprocess.Popen[bytes]) -> None:
        LOG.warning(
            "stopping training: SIGTERM to process group %s, SIGKILL in %gs", process.pid, self.config.grace_seconds
        )
        self._signal_group(process, signal.SIGTERM)
        timer = threading.Timer(self.config.grace_seconds, self._kill_group, args=(process,))
        timer.daemon = True
        self._kill_timer = timer
        timer.start()

    def _kill_group(self, process: subprocess.Popen[bytes]) -> None:
        if process.returncode is None and not self._done.is_set():
            LOG.warning("training still running after %gs: SIGKILL to its process group", self.config.grace_seconds)
            self._signal_group(process, signal.SIGKILL)

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)

    def run(self) -> int:
        config = self.config
        started = self.now()
        started_clock = time.monotonic()
        config.log_dir.mkdir(parents=True, exist_ok=True)
        returncode: int | None = None
        start_error: str | None = None
        heartbeat_thread = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        with config.log_path.open("ab") as log:
            try:
                process = subprocess.Popen(
                    config.command,
                    cwd=config.workdir,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env=self._child_env(),
                )
            except OSError as not_started:
                start_error = f"training command could not start: {not_started}"
                log.write((start_error + "\n").encode())
                LOG.error(start_error)
            else:
                with self._lock:
                    self._process = process
                    stop_now = self._stopping.is_set()
                if stop_now:
                    self._stop_group(process)
                assert process.stdout is not None
                reader = threading.Thread(target=self._pump, args=(process.stdout, log), name="output", daemon=True)
                reader.start()
                heartbeat_thread.start()
                returncode = self._supervise(process)
                reader.join(OUTPUT_DRAIN_SECONDS)
        self._done.set()
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        self._final_sync()
        status, exit_code, error = self._outcome(returncode, start_error)
        finished = self.now()
        record = {
            "status": status,
            "exit_code": exit_code,
            "command": config.command,
            "started_at": _iso(started),
            "finished_at": _iso(finished),
            "duration_seconds": round(time.monotonic() - started_clock, 3),
            "metrics": self.metrics.to_json(),
            "artifacts": list(self.artifacts),
            "error": error,
        }
        self._write_record(record)
        LOG.info("training %s (exit code %s)", status, exit_code)
        return KILLED_EXIT_CODE if status == "killed" else exit_code

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env["EC2OPS_CHECKPOINT_DIR"] = str(self.config.checkpoint_dir)
        env["EC2OPS_MODELS_DIR"] = str(self.config.models_dir)
        return env

    def _outcome(self, returncode: int | None, start_error: str | None) -> tuple[str, int, str | None]:
        if returncode is None:
            return "failed", NOT_STARTED_EXIT_CODE, start_error
        code = _exit_code(returncode)
        if self.killed:
            return "killed", code, f"training stopped by a signal to the wrapper (command exit code {code})"
        if code == 0:
            return "succeeded", 0, None
        suffix = f" ({signal.Signals(-returncode).name})" if returncode < 0 and -returncode in SIGNAL_NUMBERS else ""
        return "failed", code, f"training command exited with code {code}{suffix}"

    def _supervise(self, process: subprocess.Popen[bytes]) -> int:
        """Main thread: periodic uploads and checkpoint requests until the child exits."""
        next_upload = time.monotonic() + self.config.upload_interval
        while True:
            returncode = process.poll()
            if returncode is not None:
                return returncode
            if self.config.checkpoint_request.exists() and not self.killed:
                self._checkpoint_now(process)
            if time.monotonic() >= next_upload:
                self._upload_log()
                self.sync_checkpoints()
                next_upload = time.monotonic() + self.config.upload_interval
            try:
                process.wait(TICK_SECONDS)
            except subprocess.TimeoutExpired:
                continue

    def _pump(self, stream: IO[bytes], log: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            try:
                log.write(raw)
                log.flush()
            except ValueError:
                return  # the log was closed: the run ended while a grandchild still held the pipe
            line = raw.decode("utf-8", errors="replace")
            try:
                self.echo.write(line)
                self.echo.flush()
            except (OSError, ValueError):
                pass
            self.metrics.feed(line)

    def _heartbeat_loop(self) -> None:
        while not self._done.is_set():
            self.beat()
            if self._done.wait(self.config.heartbeat_interval):
                return

    def beat(self) -> None:
        for heartbeat in self.heartbeats:
            try:
                heartbeat.beat()
            except Exception as error:
                LOG.warning("heartbeat (%s) failed: %s", heartbeat.name, error)

    def _checkpoint_now(self, process: subprocess.Popen[bytes]) -> None:
        """SIGUSR1 to the child (not its group: workers may not handle it), then sync once its writes settle.

        SIGUSR1's default action ends a process: a child without a handler (not installed yet, or none at all) is
        not signalled, the checkpoints already there are synced instead.
        """
        LOG.warning("checkpoint requested (%s): SIGUSR1 to the training command", self.config.checkpoint_request)
        before = _snapshot(self.config.checkpoint_dir)
        if self._handler_installed(process):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGUSR1)
            self._wait_for_checkpoint(before, process)
        else:
            LOG.warning("the training command handles no SIGUSR1: not signalled, syncing the checkpoints there are")
        self.sync_checkpoints()
        self._upload_log()
        self._remove_request()

    def _handler_installed(self, process: subprocess.Popen[bytes]) -> bool:
        """Wait up to HANDLER_WAIT_SECONDS for the child to catch SIGUSR1 (a job installs it while starting)."""
        deadline = time.monotonic() + min(HANDLER_WAIT_SECONDS, self.config.checkpoint_settle)
        while True:
            caught = catches_signal(process.pid, signal.SIGUSR1)
            if caught is None:
                return True  # no /proc to ask: signal, as documented
            if caught or process.poll() is not None or time.monotonic() >= deadline:
                return caught
            time.sleep(TICK_SECONDS / 4)

    def _wait_for_checkpoint(self, before: dict[str, tuple[int, int]], process: subprocess.Popen[bytes]) -> None:
        """Up to --checkpoint-settle seconds for the checkpoint dir to change, then stay still for checkpoint_quiet."""
        deadline = time.monotonic() + self.config.checkpoint_settle
        last = before
        quiet_since: float | None = None
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(min(TICK_SECONDS, self.config.checkpoint_quiet / 4))
            current = _snapshot(self.config.checkpoint_dir)
            if current != last:
                last, quiet_since = current, time.monotonic()
            elif quiet_since is not None and time.monotonic() - quiet_since >= self.config.checkpoint_quiet:
                return
        if last == before:
            LOG.warning("no checkpoint change seen after SIGUSR1; syncing what is there")

    def _remove_request(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.config.checkpoint_request.unlink()

    def _upload(self, path: Path, key: str) -> bool:
        if self.uploader is None:
            return False
        try:
            self.uploader.upload_file(path, key)
        except Exception as error:
            LOG.warning("upload of %s to %s failed: %s", path, key, error)
            return False
        if key not in self.artifacts:
            self.artifacts.append(key)
        return True

    def _upload_log(self) -> None:
        if self.config.log_path.exists():
            self._upload(self.config.log_path, self.config.key("logs", "training.log"))

    def mark_checkpoints_synced(self) -> None:
        """The checkpoint dir as it is now is already in S3 (restored from there for a resume): not uploaded again."""
        self._synced.update(_snapshot(self.config.checkpoint_dir))

    def sync_checkpoints(self) -> list[str]:
        """Upload checkpoint files whose size or mtime changed since their last successful upload."""
        uploaded: list[str] = []
        root = self.config.checkpoint_dir
        for relative, signature in _snapshot(root).items():
            if self._synced.get(relative) == signature:
                continue
            key = self.config.key("checkpoints", relative)
            if self._upload(root / relative, key):
                self._synced[relative] = signature
                uploaded.append(key)
        return uploaded

    def _upload_tree(self, root: Path, prefix: str) -> None:
        for path in _files(root):
            self._upload(path, self.config.key(prefix, path.relative_to(root).as_posix()))

    def _final_sync(self) -> None:
        self.sync_checkpoints()
        self._upload_tree(self.config.models_dir, "models")
        self._upload_log()
        self._remove_request()

    def _write_record(self, record: dict[str, Any]) -> None:
        output = self.config.output
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
        if self.uploader is not None:
            try:
                self.uploader.upload_file(output, self.config.key("training.json"))
            except Exception as error:
                LOG.error("upload of training.json failed: %s", error)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


class SettingsError(ValueError):
    """settings.json is unreadable or lacks what the wrapper needs from it."""


def load_settings(path: Path) -> dict[str, Any]:
    """The run's settings.json: a JSON object whose `command` (if any) is a list of strings and whose
    `training_config` (if any) is an object."""
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SettingsError(f"cannot read settings {path}: {error}") from None
    if not isinstance(settings, dict):
        raise SettingsError(f"settings {path} is not a JSON object")
    command = settings.get("command")
    if command is not None and (
        not isinstance(command, list) or not command or not all(isinstance(arg, str) for arg in command)
    ):
        raise SettingsError(f"settings {path}: command must be a non-empty list of strings, got {command!r}")
    config = settings.get("training_config")
    if config is not None and not isinstance(config, dict):
        raise SettingsError(f"settings {path}: training_config must be an object, got {type(config).__name__}")
    return settings


def training_env(training_config: dict[str, Any]) -> dict[str, str]:
    """The training_config as environment variables: EC2OPS_TRAINING_CONFIG and one EC2OPS_CONFIG_<KEY> per key.

    Keys that are not valid variable names are only in EC2OPS_TRAINING_CONFIG; so are values an environment cannot
    hold (a NUL character). Strings pass verbatim, quotes, `$(...)` and newlines included.
    """
    env = {"EC2OPS_TRAINING_CONFIG": json.dumps(training_config)}
    for key, value in training_config.items():
        if not CONFIG_KEY.match(key):
            LOG.warning("training_config key %r is not a variable name: only in EC2OPS_TRAINING_CONFIG", key)
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        if "\0" in text:
            LOG.warning("training_config[%r] holds a NUL character: only in EC2OPS_TRAINING_CONFIG", key)
            continue
        env[f"EC2OPS_CONFIG_{key.upper()}"] = text
    return env


def _split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" not in argv:
        return argv, []
    index = argv.index("--")
    return argv[:index], argv[index + 1 :]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        usage="%(prog)s [flags] [--settings PATH] [-- COMMAND [ARG ...]]",
        description="Run the training command with log streaming, metrics, checkpoint sync and heartbeats.",
    )
    env = os.environ.get
    parser.add_argument("--workdir", default=os.getcwd(), help="the command's cwd (default: here)")
    parser.add_argument(
        "--settings",
        default=None,
        help="the run's settings.json: its command (when none follows --) and its training_config for the child",
    )
    parser.add_argument("--log-dir", default=env("EC2OPS_LOG_DIR"), help="default <workdir>/logs")
    parser.add_argument("--checkpoint-dir", default=env("EC2OPS_CHECKPOINT_DIR"), help="default <workdir>/checkpoints")
    parser.add_argument("--models-dir", default=env("EC2OPS_MODELS_DIR"), help="default <workdir>/models")
    parser.add_argument(
        "--checkpoint-request",
        default=env("EC2OPS_CHECKPOINT_REQUEST"),
        help="file whose appearance asks for a checkpoint (default <workdir>/.ec2ops/checkpoint-now)",
    )
    parser.add_argument("--output", default=None, help="training.json path (default <workdir>/training.json)")
    parser.add_argument("--bucket", default=env("EC2OPS_BUCKET", ""), help="S3 bucket; empty: no uploads")
    parser.add_argument("--s3-prefix", default=env("EC2OPS_S3_PREFIX", ""), help="e.g. dev/<run_id>")
    parser.add_argument("--upload-interval", type=float, default=_env_float("EC2OPS_LOG_UPLOAD_SECONDS", 30.0))
    parser.add_argument("--heartbeat-interval", type=float, default=_env_float("EC2OPS_HEARTBEAT_SECONDS", 60.0))
    parser.add_argument("--heartbeat-command", default=None, help='e.g. "python3 ec2ops_run_state.py heartbeat"')
    parser.add_argument("--task-token", default=env("EC2OPS_TASK_TOKEN", ""), help="Step Functions task token")
    parser.add_argument("--grace-seconds", type=float, default=60.0)
    parser.add_argument(
        "--checkpoint-settle",
        type=float,
        default=_env_float("EC2OPS_CHECKPOINT_SETTLE_SECONDS", 30.0),
        help="after SIGUSR1, how long to wait for checkpoint writes to settle before syncing",
    )
    return parser


def config_from_args(args: argparse.Namespace, command: list[str]) -> WrapperConfig:
    workdir = Path(args.workdir).resolve()

    def path(value: str | None, default: Path) -> Path:
        return Path(value) if value else default

    return WrapperConfig(
        command=command,
        workdir=workdir,
        log_dir=path(args.log_dir, workdir / "logs"),
        checkpoint_dir=path(args.checkpoint_dir, workdir / "checkpoints"),
        models_dir=path(args.models_dir, workdir / "models"),
        checkpoint_request=path(args.checkpoint_request, workdir / ".ec2ops" / "checkpoint-now"),
        output=path(args.output, workdir / "training.json"),
        s3_prefix=args.s3_prefix,
        upload_interval=args.upload_interval,
        heartbeat_interval=args.heartbeat_interval,
        grace_seconds=args.grace_seconds,
        checkpoint_settle=args.checkpoint_settle,
    )


def heartbeats_from_args(args: argparse.Namespace) -> list[Heartbeat]:
    heartbeats: list[Heartbeat] = []
    if args.task_token:
        heartbeats.append(StepFunctionsHeartbeat(args.task_token))
    if args.heartbeat_command:
        heartbeats.append(CommandHeartbeat(shlex.split(args.heartbeat_command)))
    return heartbeats


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s training_wrapper %(levelname)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials ..." on every client
    flags, command = _split_command(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser()
    args = parser.parse_args(flags)
    env: dict[str, str] | None = None
    settings: dict[str, Any] = {}
    if args.settings:
        try:
            settings = load_settings(Path(args.settings))
        except SettingsError as error:
            parser.error(str(error))
        command = command or list(settings.get("command") or [])
        env = {**os.environ, **training_env(settings.get("training_config") or {})}
    if not command:
        parser.error("no training command: give it after -- (or in --settings)")
    config = config_from_args(args, command)
    uploader = S3Uploader(args.bucket) if args.bucket else None
    if uploader is None:
        LOG.warning("no bucket (--bucket / EC2OPS_BUCKET): logs, checkpoints and training.json stay local")
    wrapper = Wrapper(config, uploader=uploader, heartbeats=heartbeats_from_args(args), env=env)
    if settings.get("resume") is True:
        wrapper.mark_checkpoints_synced()
    _install_signal_handlers(wrapper.terminate)
    return wrapper.run()


def _install_signal_handlers(
    terminate: Callable[[], None], signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)
) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        LOG.warning("received %s", signal.Signals(signum).name)
        terminate()

    for signum in signals:
        signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
