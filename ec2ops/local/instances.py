"""Launched instances' user data run for real, as local processes against the embedded AWS.

With `LocalCloud(run_user_data=True)`, every instance that RunInstances launches with user data boots at once
(`running`) and its user data runs as `bash <sandbox>/user-data`: a temp directory is the instance's disk
(`HOME`, the working directory, `EC2OPS_ROOT=<sandbox>/opt-ec2ops`), its own metadata service answers on
loopback (`EC2OPS_IMDS_ENDPOINT`), the embedded AWS answers on loopback (`AWS_ENDPOINT_URL`, fake credentials),
and stdout and stderr go to `<sandbox>/console.log` as they go to EC2's console output. Nothing else of the
test process's environment reaches the instance; `instance_env` adds or overrides variables.

As on EC2: `shutdown`, `poweroff` and `halt` (fakes in `<sandbox>/bin`) apply the instance's
InstanceInitiatedShutdownBehavior (`stop` by default, or `terminate`); a script that just exits leaves the
instance running; a stop or terminate by anyone (an API call from a test, a Lambda or the instance itself, a spot
interruption) ends the process group, SIGTERM then SIGKILL after `KILL_GRACE_S`, and stops its metadata service.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ec2ops.local.clock import EmulatorClock
from ec2ops.local.ec2_timing import Ec2Timing
from ec2ops.local.imds import InstanceMetadata, MetadataServer

KILL_GRACE_S = 2.0  # SIGTERM, then SIGKILL this many real seconds later (an OS shutdown gives about as long)
SHUTDOWN_MARKER = ".shutdown"
_POLL_S = 0.02
_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
_SHUTDOWN_COMMANDS = ("shutdown", "poweroff", "halt")
INSTANCE_INITIATED = (
    "Client.InstanceInitiatedShutdown",
    "Client.InstanceInitiatedShutdown: Instance initiated shutdown",
)
_LEFT_RUNNING = ("stopping", "stopped", "shutting-down", "terminated")


def _fake_shutdown(marker: Path) -> str:
    return (
        "#!/bin/sh\n"
        "# ec2ops.local: the OS shuts down; the emulator applies the instance's InstanceInitiatedShutdownBehavior.\n"
        'case " $* " in *" -c "*) exit 0 ;; esac  # shutdown -c cancels a pending shutdown\n'
        f": > '{marker}'\n"
        "exit 0\n"
    )


@dataclass(eq=False)
class LocalInstance:
    """One instance whose user data runs locally."""

    instance: Any  # moto's Instance
    root: Path
    metadata: InstanceMetadata
    server: MetadataServer
    process: subprocess.Popen[bytes] | None = None
    start_error: str | None = None
    started: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)  # exited, and its shutdown applied
    ending: bool = False  # the instance left `running`: the process group is being ended
    killed: bool = False  # `kill_process`: died silently, the instance stays as it is

    @property
    def instance_id(self) -> str:
        return str(self.instance.id)

    @property
    def marker(self) -> Path:
        return self.root / SHUTDOWN_MARKER


class InstanceRunner:
    """Runs launched instances' user data as local processes; see the module docstring."""

    def __init__(
        self,
        *,
        clock: EmulatorClock,
        timing: Ec2Timing,
        region: str,
        account_id: str,
        endpoint_url: Callable[[], str],
        instance_env: Mapping[str, str] | None = None,
    ) -> None:
        self.clock = clock
        self.timing = timing
        self.region = region
        self.account_id = account_id
        self._endpoint_url = endpoint_url
        self.instance_env = dict(instance_env or {})
        self._lock = threading.RLock()
        self._instances: dict[str, LocalInstance] = {}
        self._threads: list[threading.Thread] = []
        self._tmp: Path | None = None
        self._closed = False

    # --- hooks (from moto_gaps.user_data_never_runs, on the thread of the API call) ------------------------
    def launched(self, instance: Any, profile: str | None) -> None:
        """A new instance: boot it at once and start its user data in the background (never blocks the call)."""
        user_data = _user_data(instance)
        if not user_data:
            return
        with self._lock:
            if self._closed or instance.id in self._instances:
                return  # a RunInstances repeated with its ClientToken returns the same instance
            self.timing.complete(instance.id)
            root = self._sandbox(instance.id)
            metadata = InstanceMetadata(
                instance_id=instance.id,
                instance_type=instance.instance_type,
                availability_zone=instance.placement.zone,
                region=self.region,
                ami_id=instance.image_id,
                user_data=user_data,
                iam_role_name=_role_name(self.account_id, profile),
                market="spot" if instance.lifecycle == "spot" else "on-demand",
                launch_time=_aware(instance.launch_time),
            )
            server = MetadataServer(metadata, clock=self.clock.now).start()
            record = LocalInstance(instance, root, metadata, server)
            self._instances[instance.id] = record
            self._spawn(self._run, record, name=f"instance-{instance.id}")

    def left_running(self, instance: Any) -> None:
        """The instance is stopping, stopped, shutting down or terminated: end its process and metadata service."""
        if instance._state.name not in _LEFT_RUNNING:
            return
        with self._lock:
            record = self._instances.get(instance.id)
        if record is not None:
            self._end(record)

    # --- accessors -------------------------------------------------------------------------------------------
    def record(self, instance_id: str) -> LocalInstance:
        with self._lock:
            record = self._instances.get(instance_id)
        if record is None:
            raise LookupError(f"{instance_id} runs no user data locally (none given, or run_user_data is off)")
        return record

    def metadata(self, instance_id: str) -> InstanceMetadata | None:
        with self._lock:
            record = self._instances.get(instance_id)
        return record.metadata if record is not None else None

    def process(self, instance_id: str, *, timeout: float = 10.0) -> subprocess.Popen[bytes] | None:
        with self._lock:
            record = self._instances.get(instance_id)
        if record is None:
            return None
        record.started.wait(timeout)
        return record.process

    def console_output(self, instance_id: str) -> str:
        path = self.record(instance_id).root / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill_process(self, instance_id: str) -> None:
        """SIGKILL the process group and leave the instance as it is (an instance that dies silently)."""
        record = self.record(instance_id)
        record.started.wait(10)
        record.killed = True
        _signal_group(record.process, signal.SIGKILL)

    def wait(self, instance_id: str, timeout: float) -> int | None:
        """Wait (real seconds) until the process has exited and its shutdown, if it asked for one, is applied."""
        record = self.record(instance_id)
        if not record.finished.wait(timeout):
            raise TimeoutError(f"the user data of {instance_id} still runs after {timeout}s")
        return record.process.returncode if record.process is not None else None

    # --- life of one process ----------------------------------------------------------------------------------
    def _sandbox(self, instance_id: str) -> Path:
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="ec2ops-instances-"))
        root = self._tmp / instance_id
        (root / "bin").mkdir(parents=True)
        (root / "opt-ec2ops").mkdir()
        for command in _SHUTDOWN_COMMANDS:
            script = root / "bin" / command
            script.write_text(_fake_shutdown(root / SHUTDOWN_MARKER))
            script.chmod(0o755)
        python_dir = Path(sys.executable).parent
        if not (python_dir / "python3").exists():
            (root / "bin" / "python3").symlink_to(sys.executable)
        return root

    def environment(self, record: LocalInstance) -> dict[str, str]:
        """The instance process's whole environment."""
        root = record.root
        return {
            "PATH": f"{root / 'bin'}:{Path(sys.executable).parent}:{_SYSTEM_PATH}",
            "HOME": str(root),
            "EC2OPS_ROOT": str(root / "opt-ec2ops"),
            "AWS_ENDPOINT_URL": self._endpoint_url(),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "EC2OPS_IMDS_ENDPOINT": record.server.url,
            "EC2OPS_SKIP_GPU_CHECKS": "1",
            **self.instance_env,
        }

    def _run(self, record: LocalInstance) -> None:
        root = record.root
        try:
            (root / "user-data").write_bytes(record.metadata.user_data)
            with (root / "console.log").open("ab") as console:
                record.process = subprocess.Popen(  # the instance's own user data, by design
                    ["bash", str(root / "user-data")],
                    cwd=root,
                    env=self.environment(record),
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as error:
            record.start_error = f"{type(error).__name__}: {error}"
            (root / "console.log").write_text(f"ec2ops.local could not start the user data: {record.start_error}\n")
        finally:
            record.started.set()
        try:
            if record.process is not None:
                self._watch(record)
        finally:
            record.finished.set()

    def _watch(self, record: LocalInstance) -> None:
        process = record.process
        assert process is not None
        while True:
            exited = process.poll() is not None
            if self._closed:
                return
            if record.marker.exists() and not record.killed and not record.ending:
                self._instance_initiated_shutdown(record)
                process.wait()
                return
            if exited:
                return  # exited without a shutdown: the instance keeps running, as on EC2
            time.sleep(_POLL_S)

    def _instance_initiated_shutdown(self, record: LocalInstance) -> None:
        instance = record.instance
        behavior = (getattr(instance, "instance_initiated_shutdown_behavior", None) or "stop").lower()
        with contextlib.suppress(Exception):  # IncorrectInstanceState: it is already going
            if behavior == "terminate":
                instance.terminate()
            else:
                instance.stop()
            self.timing.set_reason(instance.id, *INSTANCE_INITIATED)
        self._end(record)

    def _end(self, record: LocalInstance) -> None:
        with self._lock:
            if record.ending:
                return
            record.ending = True
        self._spawn(self._terminate_group, record, name=f"end-{record.instance_id}")

    def _terminate_group(self, record: LocalInstance) -> None:
        record.started.wait(10)
        process = record.process
        if process is not None:
            _signal_group(process, signal.SIGTERM)
            deadline = time.monotonic() + KILL_GRACE_S
            while time.monotonic() < deadline and process_group_alive(process.pid):
                process.poll()  # reap the leader, so that it does not count
                time.sleep(_POLL_S)
            _signal_group(process, signal.SIGKILL)
        record.server.stop()

    def _spawn(self, target: Callable[[LocalInstance], None], record: LocalInstance, *, name: str) -> None:
        thread = threading.Thread(target=target, args=(record,), name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    # --- the end of the emulator ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Kill every process group, stop every metadata service, remove every sandbox."""
        with self._lock:
            self._closed = True
            records = list(self._instances.values())
        for record in records:
            record.started.wait(10)
            _signal_group(record.process, signal.SIGKILL)
        for record in records:
            if record.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    record.process.wait(timeout=5)
            record.server.stop()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=KILL_GRACE_S + 3)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def _user_data(instance: Any) -> bytes:
    encoded = getattr(instance, "user_data", None)
    if not encoded:
        return b""
    if isinstance(encoded, list):  # older moto kept a list of strings
        encoded = encoded[0] if encoded else ""
    text = str(encoded)
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return text.encode()


def _role_name(account_id: str, profile: str | None) -> str | None:
    """The role of an instance profile, given by name or ARN (what IMDS names under iam/security-credentials)."""
    if not profile:
        return None
    from moto.ec2.utils import filter_iam_instance_profiles

    by_arn = profile.startswith("arn:")
    try:
        found = filter_iam_instance_profiles(
            account_id, "aws", profile if by_arn else None, None if by_arn else profile
        )
    except Exception:  # an unknown profile: RunInstances itself refuses it
        return None
    roles = getattr(found, "roles", None) or []
    return str(roles[0].name) if roles else None


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _signal_group(process: subprocess.Popen[bytes] | None, signum: signal.Signals) -> None:
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
    if signum == signal.SIGKILL:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def process_group_alive(pgid: int) -> bool:
    """Whether a process of the group still lives. Zombies don't count: once their parent is gone, only init reaps
    them, and in a container that can take seconds."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False
