"""EC2 takes time: instances stay `stopping` / `pending`, snapshots stay `pending`, until the clock passes.

moto flips an instance to `stopped` or `running` at once and creates snapshots `completed`; real EC2 takes tens
of seconds (../shared/data/ec2-launch-latency.csv: launch ~26 s, start from stopped ~21 s, stop 30-60 s) and
rejects actions from the wrong state. `Ec2Timing` keeps the in-flight transitions with the clock time they are
due, and `settle()` (run before every EC2 API call and after every clock move) completes the due ones.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from moto.ec2.exceptions import EC2ClientError

from ec2ops.local.clock import EmulatorClock

STATE_CODES = {
    "pending": 0,
    "running": 16,
    "shutting-down": 32,
    "terminated": 48,
    "stopping": 64,
    "stopped": 80,
}


@dataclass(frozen=True)
class Durations:
    """Seconds of emulator time per transition: (low, high), drawn by a seeded generator."""

    launch: tuple[float, float] = (22.0, 30.0)
    start: tuple[float, float] = (18.0, 24.0)
    stop: tuple[float, float] = (30.0, 60.0)
    terminate: tuple[float, float] = (20.0, 40.0)
    snapshot: tuple[float, float] = (40.0, 90.0)
    status_checks: tuple[float, float] = (40.0, 80.0)  # `initializing` after reaching `running`


@dataclass
class _Transition:
    target: str
    due: datetime
    reason_code: str = ""
    reason_message: str = ""


@dataclass
class StartFallback:
    """A start that 'succeeds' and then falls back to `stopped` (EC2's silent capacity failure)."""

    remaining: int
    reason_code: str
    instance_id: str | None = None


@dataclass
class SnapshotFailure:
    remaining: int
    message: str


@dataclass
class _History:
    entries: list[tuple[datetime, str]] = field(default_factory=list)


class IncorrectInstanceState(EC2ClientError):
    def __init__(self, message: str) -> None:
        super().__init__("IncorrectInstanceState", message)


class Ec2Timing:
    """In-flight EC2 transitions on the emulator clock, and the state history of every instance."""

    def __init__(self, clock: EmulatorClock, durations: Durations | None = None, seed: int = 7) -> None:
        self.clock = clock
        self.durations = durations or Durations()
        self._random = random.Random(seed)
        self._lock = threading.RLock()
        self._instances: dict[str, tuple[Any, _Transition]] = {}
        self._snapshots: dict[str, tuple[Any, _Transition]] = {}
        self._history: dict[str, _History] = {}
        self._start_fallbacks: list[StartFallback] = []
        self._snapshot_failures: list[SnapshotFailure] = []
        self._checks_pass_at: dict[str, datetime] = {}
        self._impaired: set[str] = set()
        self._impair_next: list[StartFallback] = []

    # --- faults that are not API errors -------------------------------------------------------------------
    def fall_back_on_next_start(
        self,
        *,
        times: int = 1,
        reason_code: str = "Server.InsufficientInstanceCapacity",
        instance_id: str | None = None,
    ) -> None:
        """The next `times` starts report success, then the instance returns to `stopped` with this reason."""
        self._start_fallbacks.append(StartFallback(times, reason_code, instance_id))

    def impair_next_start(self, *, times: int = 1, instance_id: str | None = None) -> None:
        """The next `times` instances to reach `running` fail their status checks (`impaired`) until stopped."""
        self._impair_next.append(StartFallback(times, "impaired", instance_id))

    def status(self, instance: Any) -> str:
        """EC2 status checks: not-applicable unless running; `initializing` for a while, then ok or impaired."""
        if instance._state.name != "running":
            return "not-applicable"
        if instance.id in self._impaired:
            return "impaired"
        passes_at = self._checks_pass_at.get(instance.id)
        return "initializing" if passes_at is not None and self.clock.now() < passes_at else "ok"

    def fail_next_snapshots(self, *, times: int = 1, message: str = "Snapshot failed: internal error") -> None:
        """The next `times` snapshots end in state `error` with this StateMessage."""
        self._snapshot_failures.append(SnapshotFailure(times, message))

    # --- transitions ---------------------------------------------------------------------------------------
    def _due(self, kind: str) -> datetime:
        low, high = getattr(self.durations, kind)
        return self.clock.now() + timedelta(seconds=self._random.uniform(low, high))

    def _set_state(self, instance: Any, name: str, *, checks_done: bool = False) -> None:
        instance._state.name = name
        instance._state.code = STATE_CODES[name]
        if name == "running":
            self._checks_pass_at[instance.id] = self.clock.now() if checks_done else self._due("status_checks")
            for impair in self._impair_next:
                if impair.remaining > 0 and impair.instance_id in (None, instance.id):
                    impair.remaining -= 1
                    self._impaired.add(instance.id)
                    break
        elif name in ("stopping", "stopped", "shutting-down", "terminated"):
            self._impaired.discard(instance.id)
        self._history.setdefault(instance.id, _History()).entries.append((self.clock.now(), name))

    def history(self, instance_id: str) -> list[tuple[datetime, str]]:
        return list(self._history.get(instance_id, _History()).entries)

    def launched(self, instance: Any, *, settled: bool = False) -> None:
        """A new instance: `pending` until launch time has passed (or at once `running` when settled)."""
        with self._lock:
            if settled:
                self._set_state(instance, "running", checks_done=True)
                return
            self._set_state(instance, "pending")
            self._instances[instance.id] = (instance, _Transition("running", self._due("launch")))

    def complete(self, instance_id: str) -> None:
        """Finish an instance's transition now (a fixture that was running before the story began)."""
        with self._lock:
            entry = self._instances.pop(instance_id, None)
            if entry is not None:
                instance, transition = entry
                self._set_state(instance, transition.target, checks_done=True)

    def stop(self, instance: Any) -> Any:
        with self._lock:
            previous = _copy_state(instance)
            state = instance._state.name
            if state in ("stopped", "stopping"):
                return previous
            if state != "running":
                raise IncorrectInstanceState(
                    f"This instance '{instance.id}' is not in a state from which it can be stopped (it is '{state}')."
                )
            for nic in instance.nics.values():
                nic.stop()
            self._set_state(instance, "stopping")
            instance._reason = f"User initiated ({self.clock.now():%Y-%m-%d %H:%M:%S} GMT)"
            self._instances[instance.id] = (
                instance,
                _Transition(
                    "stopped",
                    self._due("stop"),
                    "Client.UserInitiatedShutdown",
                    "Client.UserInitiatedShutdown: User initiated shutdown",
                ),
            )
            return previous

    def start(self, instance: Any) -> Any:
        with self._lock:
            previous = _copy_state(instance)
            state = instance._state.name
            if state in ("running", "pending"):
                return previous
            if state != "stopped":
                raise IncorrectInstanceState(
                    f"The instance '{instance.id}' is not in a state from which it can be started (it is '{state}')."
                )
            for nic in instance.nics.values():
                nic.start()
            self._set_state(instance, "pending")
            transition = _Transition("running", self._due("start"))
            fallback = self._take_start_fallback(instance.id)
            if fallback is not None:
                transition = _Transition("stopped", transition.due, fallback, f"{fallback}: Insufficient capacity.")
            self._instances[instance.id] = (instance, transition)
            return previous

    def terminate(self, instance: Any, original_terminate: Any) -> Any:
        with self._lock:
            previous = _copy_state(instance)
            if instance._state.name in ("terminated", "shutting-down"):
                return previous
            original_terminate(instance)  # moto's own teardown (NICs, fleets, profile associations)
            self._set_state(instance, "shutting-down")
            self._instances[instance.id] = (
                instance,
                _Transition(
                    "terminated",
                    self._due("terminate"),
                    "Client.UserInitiatedShutdown",
                    "Client.UserInitiatedShutdown: User initiated shutdown",
                ),
            )
            return previous

    def set_reason(self, instance_id: str, code: str, message: str) -> None:
        """The state reason of the instance's in-flight transition, shown at once and kept when it completes: an
        instance-initiated shutdown or a spot interruption instead of the default user-initiated one."""
        with self._lock:
            entry = self._instances.get(instance_id)
            if entry is not None:
                entry[1].reason_code, entry[1].reason_message = code, message
                _set_state_reason(entry[0], code, message)

    def require_stopped_for_type_change(self, instance: Any) -> None:
        """EC2 changes the type only of a stopped instance."""
        if instance._state.name != "stopped":
            raise IncorrectInstanceState(f"The instance '{instance.id}' is not in the 'stopped' state.")

    def snapshot_created(self, snapshot: Any) -> None:
        with self._lock:
            snapshot.status = "pending"
            snapshot._ec2ops_progress = "0%"
            failure = self._take_snapshot_failure()
            target = "error" if failure is not None else "completed"
            self._snapshots[snapshot.id] = (
                snapshot,
                _Transition(target, self._due("snapshot"), "", failure or ""),
            )

    def settle(self, now: datetime | None = None) -> None:
        """Complete every transition that is due by `now` (the clock's time by default)."""
        now = now or self.clock.now()
        with self._lock:
            for instance_id, (instance, transition) in list(self._instances.items()):
                if transition.due > now:
                    continue
                del self._instances[instance_id]
                self._set_state(instance, transition.target)
                if transition.reason_code:
                    _set_state_reason(instance, transition.reason_code, transition.reason_message)
                elif transition.target == "running":
                    _set_state_reason(instance, "", "")
                    instance._reason = ""
            for snapshot_id, (snapshot, transition) in list(self._snapshots.items()):
                if transition.due > now:
                    started = snapshot_start(snapshot)
                    total = (transition.due - started).total_seconds() or 1.0
                    done = max(0.0, min(0.99, (now - started).total_seconds() / total))
                    snapshot._ec2ops_progress = f"{int(done * 100)}%"
                    continue
                del self._snapshots[snapshot_id]
                snapshot.status = transition.target
                if transition.target == "error":
                    snapshot.state_message = transition.reason_message
                else:
                    snapshot._ec2ops_progress = "100%"

    def _take_start_fallback(self, instance_id: str) -> str | None:
        for fallback in self._start_fallbacks:
            if fallback.remaining > 0 and fallback.instance_id in (None, instance_id):
                fallback.remaining -= 1
                return fallback.reason_code
        return None

    def _take_snapshot_failure(self) -> str | None:
        for failure in self._snapshot_failures:
            if failure.remaining > 0:
                failure.remaining -= 1
                return failure.message
        return None


def _copy_state(instance: Any) -> Any:
    import copy

    return copy.copy(instance._state)


def _set_state_reason(instance: Any, code: str, message: str) -> None:
    from moto.ec2.models.instances import StateReason

    instance.state_reason = StateReason(message, code) if code else StateReason()


def snapshot_start(snapshot: Any) -> datetime:
    start: datetime = snapshot.start_time
    if start.tzinfo is None:
        from datetime import UTC

        start = start.replace(tzinfo=UTC)
    return start
