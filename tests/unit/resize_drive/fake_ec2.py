"""An in-memory EC2 for the phase machine: one instance whose transitions, capacity and status checks a test scripts.

moto stops and starts at once, never runs out of capacity, always passes status checks and has no capacity
reservations, so the drive loop's interesting paths are told here. It answers like EC2 where it matters:
a type change or a start from the wrong state is refused with IncorrectInstanceState. Reservations are open, as
ec2ops makes them: a start that does not target a reservation uses a free active one of its type (`used_by`), and
an instance that targets one launches only into it while it is active and of its type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from ec2ops_lambda.aws.instances import InstanceView, StatusChecks
from ec2ops_lambda.models.resize_progress import DriveEvent, DrivePlan, Fault, Progress
from ec2ops_lambda.resize.drive import DriveSettings, drive

INSTANCE_ID = "i-0123456789abcdef0"
ZONE = "us-east-1a"
T0 = datetime(2025, 6, 2, 8, 0, 0, tzinfo=UTC)
MUTATIONS = ("stop", "start", "set_type", "set_reservation", "reserve")


def client_error(code: str, message: str = "", operation: str = "Call") -> ClientError:
    """A ClientError as botocore raises it."""
    return ClientError({"Error": {"Code": code, "Message": message or f"{code} (scripted)"}}, operation)


@dataclass
class FakeEc2:
    """One instance plus the account's capacity reservations; implements Instances and Capacity."""

    state: str = "running"
    instance_type: str = "t3.large"
    instance_id: str = INSTANCE_ID
    reason_code: str | None = None
    reason_message: str | None = None
    reservation_target: str | None = None
    stop_polls: int = 0
    """Observations that still show `stopping` after a stop."""
    start_polls: int = 0
    """Observations that still show `pending` after a start."""
    starts: dict[str, list[str]] = field(default_factory=dict)
    """Per type, what each start does: `ok`, `error:<Code>`, `silent` (back to stopped), `stuck` (pending)."""
    checks: dict[str, list[str]] = field(default_factory=dict)
    """Per type, status check answers in turn (`ok`, `initializing`, `impaired`); the last one repeats."""
    unreservable: set[str] = field(default_factory=set)
    reservations: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_next: dict[str, Exception] = field(default_factory=dict)
    """Method name -> error its next call raises (once)."""
    calls: list[tuple[str, ...]] = field(default_factory=list)
    _countdown: int = 0
    _after_pending: str = "ok"
    _checks_seen: int = 0

    # --- Instances ------------------------------------------------------------------------------------------

    def _call(self, name: str, *args: str) -> None:
        self.calls.append((name, *args))
        error = self.fail_next.pop(name, None)
        if error is not None:
            raise error

    def _need_stopped(self, what: str) -> None:
        if self.state != "stopped":
            raise client_error(
                "IncorrectInstanceState", f"The instance '{self.instance_id}' is not in the 'stopped' state ({what})."
            )

    def observe(self, instance_id: str) -> InstanceView:
        self._call("observe")
        if self.state == "stopping":
            if self._countdown > 0:
                self._countdown -= 1
            else:
                self.state = "stopped"
        elif self.state == "pending" and self._after_pending != "stuck":
            if self._countdown > 0:
                self._countdown -= 1
            elif self._after_pending == "silent":
                self.state = "stopped"
                self.reason_code = "Server.InsufficientInstanceCapacity"
                self.reason_message = "Server.InsufficientInstanceCapacity: Insufficient capacity."
            else:
                self.state = "running"
                self.reason_code = self.reason_message = None
                self._checks_seen = 0
        return InstanceView(
            instance_id=instance_id,
            state=self.state,
            instance_type=self.instance_type,
            reason_code=self.reason_code,
            reason_message=self.reason_message,
            reservation_target=self.reservation_target,
        )

    def stop(self, instance_id: str) -> None:
        self._call("stop")
        if self.state not in ("running", "stopping", "stopped"):
            raise client_error("IncorrectInstanceState", f"The instance is {self.state}.")
        if self.state == "running":
            self.state = "stopping"
            self.reason_code = "Client.UserInitiatedShutdown"
            self.reason_message = "Client.UserInitiatedShutdown: User initiated shutdown"
            self._countdown = self.stop_polls
            self._release()

    def _release(self) -> None:
        """A stopped instance no longer uses the open reservation it ran in."""
        for reservation in self.reservations.values():
            if reservation["used_by"] == self.instance_id:
                reservation["used_by"] = None

    def _take_open_reservation(self) -> None:
        """A start with the default `open` preference runs in a free active reservation of its type, if any."""
        for reservation in self.reservations.values():
            free = reservation["state"] == "active" and reservation["used_by"] is None
            if free and reservation["type"] == self.instance_type:
                reservation["used_by"] = self.instance_id
                return

    def start(self, instance_id: str) -> None:
        self._call("start", self.instance_type)
        self._need_stopped("start")
        target = self.reservation_target
        if target is not None:
            reservation = self.reservations.get(target)
            if reservation is None or reservation["state"] != "active" or reservation["type"] != self.instance_type:
                raise client_error("ReservationCapacityExceeded", f"cannot launch into reservation {target}")
        script = self.starts.get(self.instance_type, [])
        outcome = script.pop(0) if script else "ok"
        if outcome.startswith("error:"):
            raise client_error(outcome.split(":", 1)[1], f"no {self.instance_type} now")
        self.state = "pending"
        self._countdown = self.start_polls
        self._after_pending = outcome
        if target is None and outcome != "silent":
            self._take_open_reservation()

    def set_type(self, instance_id: str, instance_type: str) -> None:
        self._call("set_type", instance_type)
        self._need_stopped("modify")
        self.instance_type = instance_type

    def set_reservation(self, instance_id: str, reservation_id: str | None) -> None:
        self._call("set_reservation", reservation_id or "open")
        self._need_stopped("capacity reservation attributes")
        self.reservation_target = reservation_id

    def status_checks(self, instance_id: str) -> StatusChecks:
        self._call("status_checks")
        if self.state != "running":
            return StatusChecks(state=self.state, system="not-applicable", instance="not-applicable")
        script = self.checks.get(self.instance_type, ["ok"])
        answer = script[min(self._checks_seen, len(script) - 1)]
        self._checks_seen += 1
        return StatusChecks(state="running", system="ok" if answer == "impaired" else answer, instance=answer)

    # --- Capacity -------------------------------------------------------------------------------------------

    def reserve(self, instance_type: str, availability_zone: str, *, client_token: str, tags: Mapping[str, str]) -> str:
        self._call("reserve", instance_type)
        if instance_type in self.unreservable:
            raise client_error("InsufficientInstanceCapacity", f"Insufficient capacity to reserve {instance_type}.")
        reservation_id = f"cr-{len(self.reservations) + 1:017x}"
        self.reservations[reservation_id] = {
            "type": instance_type,
            "zone": availability_zone,
            "state": "active",
            "token": client_token,
            "tags": dict(tags),
            "used_by": None,
        }
        return reservation_id

    def cancel(self, reservation_id: str) -> bool:
        self._call("cancel", reservation_id)
        reservation = self.reservations.get(reservation_id)
        if reservation is None or reservation["state"] != "active":
            return False
        reservation["state"] = "cancelled"
        reservation["used_by"] = None
        return True

    # --- what tests check -----------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]

    def changes(self) -> list[tuple[str, ...]]:
        return [call for call in self.calls if call[0] in MUTATIONS]


@dataclass
class FakeClock:
    """The time `clock.utcnow()` answers; the loop moves it by the poll interval between calls."""

    now: datetime = T0

    def utcnow(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_plan(**overrides: Any) -> DrivePlan:
    """A plan as the Plan step writes it (with fields drive ignores), t3.large -> m5.large, then m5a.large."""
    plan: dict[str, Any] = {
        "status": "go",
        "instance_id": INSTANCE_ID,
        "instance_name": "web-1",
        "change_id": "chg-1",
        "execution_id": "arn:aws:states:us-east-1:123456789012:execution:ec2ops-resize:chg-1",
        "reason": "phase 2 needs more memory",
        "from_type": "t3.large",
        "target_type": "m5.large",
        "candidates": ["m5.large", "m5a.large"],
        "was_running": True,
        "availability_zone": ZONE,
        "snapshot": False,
        "reserve_capacity": False,
        "revert_after_hours": None,
        "prices": {"t3.large": 0.0832, "m5.large": 0.096, "m5a.large": 0.086},
        "price_source": "bundled-table",
        "hourly_cost_delta": 0.0128,
        "vcpus": {"from": 2, "to": 2},
        "memory_gib": {"from": 8, "to": 8},
        "public_ipv4_changes": True,
        "expected_downtime_seconds": 145,
        "summary": "t3.large -> m5.large",
        **overrides,
    }
    return DrivePlan.model_validate(plan)


SETTINGS = DriveSettings.model_validate(
    {
        "RESIZE_STOP_TIMEOUT_SECONDS": 600,
        "RESIZE_START_TIMEOUT_SECONDS": 600,
        "RESIZE_STATUS_CHECK_TIMEOUT_SECONDS": 900,
        "RESIZE_ROLLBACK_ATTEMPTS": 5,
    }
)
POLL_SECONDS = 10


@dataclass
class Story:
    """Drive calls as the state machine makes them: JSON in and out, a wait between calls, faults when told."""

    plan: DrivePlan
    ec2: FakeEc2
    clock: FakeClock
    settings: DriveSettings = SETTINGS
    poll_seconds: float = POLL_SECONDS
    progress: Progress | None = None
    history: list[Progress] = field(default_factory=list)

    def call(self, fault: Fault | None = None) -> Progress:
        """One drive call; checks that it made at most one change (a type change may also set the reservation)."""
        before = len(self.ec2.calls)
        event = {
            "plan": self.plan.model_dump(mode="json"),
            "progress": self.progress.model_dump(mode="json") if self.progress else None,
            "fault": fault.model_dump(mode="json") if fault else None,
        }
        result = drive(DriveEvent.model_validate(event), instances=self.ec2, capacity=self.ec2, config=self.settings)
        changes = [call for call in self.ec2.calls[before:] if call[0] in MUTATIONS and call[0] != "set_reservation"]
        assert len(changes) <= 1, f"one drive call made several changes: {changes}"
        self.progress = Progress.model_validate(result.model_dump(mode="json"))
        self.history.append(self.progress)
        return self.progress

    def run(self, limit: int = 400) -> Progress:
        """Call, wait, call... until done."""
        for _ in range(limit):
            progress = self.call()
            if progress.done:
                return progress
            self.clock.advance(self.poll_seconds)
        raise AssertionError(f"the drive loop did not end in {limit} calls: {self.progress}")

    def run_until(self, phase: str, limit: int = 100) -> Progress:
        """Call until the progress enters this phase (for faults injected at a given point)."""
        for _ in range(limit):
            progress = self.call()
            if progress.phase == phase:
                return progress
            assert not progress.done, f"ended before reaching {phase}: {progress.outcome}"
            self.clock.advance(self.poll_seconds)
        raise AssertionError(f"never reached phase {phase}")

    def phases(self) -> list[str]:
        """The phases after each call, repeats collapsed."""
        seen: list[str] = []
        for progress in self.history:
            if not seen or seen[-1] != progress.phase:
                seen.append(progress.phase)
        return seen
