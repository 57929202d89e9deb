"""Drive step: the resize phase machine. Each call makes at most one EC2 change (or one look) and returns progress.

Forward: reserve? -> stop -> wait_stopped -> modify -> start -> wait_running -> verify -> done (resized).
No capacity on start (an error, or a silent return to `stopped`) moves to the next candidate type. Any other
failure turns back: the rollback phases read the instance first and act on what it actually is, until it runs
(or, if it was stopped, stays stopped) on its original type again. The state machine waits between calls.

A reservation (when asked) is open, not targeted: the instance keeps the default `open` preference and its start
uses the reservation by itself, so nothing on the instance refers to it once finish cancels it. The trade-off:
another instance of the same type started in the same AZ between the reservation and the start (while the
instance stops) could take it, and the start then may meet a capacity error; that is handled like any other (the
reservation fixed the type, so no other candidate is tried: the loop rolls back to the original type).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from pydantic import Field

from ec2ops_lambda import clock, settings
from ec2ops_lambda.aws.capacity import Capacity, client_token
from ec2ops_lambda.aws.ec2 import error_code
from ec2ops_lambda.aws.instances import Instances, InstanceView
from ec2ops_lambda.errors import InstanceNotFound
from ec2ops_lambda.models.common import iso
from ec2ops_lambda.models.resize_progress import (
    DriveEvent,
    DrivePlan,
    Fault,
    FirstFailure,
    Outcome,
    Phase,
    Progress,
    Tried,
)
from ec2ops_lambda.snapshot.record import error_message

logger = Logger(service="ec2ops-resize", child=True)

RESERVE_NO_CAPACITY = frozenset(
    {"InsufficientInstanceCapacity", "ReservationCapacityExceeded", "InstanceLimitExceeded"}
)
"""CreateCapacityReservation codes that say this type cannot be had here now: try the next candidate."""
START_NO_CAPACITY = frozenset({"InsufficientInstanceCapacity", "Unsupported"})
"""StartInstances codes that say this type cannot run here now: try the next candidate."""
SILENT_NO_CAPACITY = "Server.InsufficientInstanceCapacity"
"""The StateReason of a start EC2 accepted and then gave up for lack of capacity (ec2-failures.md)."""
GONE_STATES = frozenset({"shutting-down", "terminated"})
ROLLBACK_BACKOFF_SECONDS = 30
"""First wait before starting again on the original type; doubled after each failed start."""
ROLLBACK_BACKOFF_LIMIT = 300
EVENTS_HEAD = 20
EVENTS_LIMIT = 150
RESOURCE_TAGS = {"ec2ops:created-by": "ec2ops"}


class DriveSettings(settings._Settings):
    """How long each wait may last, and how often a rollback start is retried."""

    stop_timeout_seconds: int = Field(default=600, alias="RESIZE_STOP_TIMEOUT_SECONDS", ge=1, le=86_400)
    start_timeout_seconds: int = Field(default=600, alias="RESIZE_START_TIMEOUT_SECONDS", ge=1, le=86_400)
    status_check_timeout_seconds: int = Field(default=900, alias="RESIZE_STATUS_CHECK_TIMEOUT_SECONDS", ge=1, le=86_400)
    rollback_attempts: int = Field(default=5, alias="RESIZE_ROLLBACK_ATTEMPTS", ge=1, le=100)


def start_progress(plan: DrivePlan) -> Progress:
    """The first call's progress: reserve first when asked (only worth it for an instance that will start)."""
    first: Phase = "reserve" if plan.reserve_capacity and plan.was_running else "stop"
    return Progress(phase=first, current_type=plan.from_type)


def drive(event: DriveEvent, *, instances: Instances, capacity: Capacity, config: DriveSettings) -> Progress:
    """One step of the phase machine; with a fault, turn back from wherever the instance now is."""
    if event.progress is not None and event.progress.done:
        return event.progress
    machine = _Machine(
        plan=event.plan,
        progress=event.progress.model_copy(deep=True) if event.progress else start_progress(event.plan),
        instances=instances,
        capacity=capacity,
        config=config,
        now=clock.utcnow(),
    )
    if event.progress is None:
        plan = event.plan
        machine.log(
            f"resize of {plan.label} from {plan.from_type} begins; candidates in order: {', '.join(plan.candidates)}"
        )
    if event.fault is not None:
        machine.recover(event.fault)
    else:
        machine.step()
    logger.info("drive step", extra={"phase": machine.progress.phase, "outcome": machine.progress.outcome})
    return machine.progress


def _message(error: ClientError) -> str:
    """The EC2 error's own words."""
    return str(error.response.get("Error", {}).get("Message", "")) or str(error)


def _why(error: Exception) -> str:
    """An exception as `Code: message`, the way EC2 errors are quoted in causes."""
    if isinstance(error, ClientError):
        return f"{error_code(error)}: {_message(error)}"
    return f"{type(error).__name__}: {error}"


@dataclass
class _Machine:
    """One drive call: the plan, the progress being advanced, and the EC2 it acts on."""

    plan: DrivePlan
    progress: Progress
    instances: Instances
    capacity: Capacity
    config: DriveSettings
    now: datetime
    seen: InstanceView | None = None

    # --- bookkeeping ------------------------------------------------------------------------------------------

    def log(self, text: str) -> None:
        """One plain-words line per action, stamped; the middle of a very long story is left out to stay small."""
        events = self.progress.events
        events.append(f"{iso(self.now)} {text}")
        if len(events) > EVENTS_LIMIT:
            del events[EVENTS_HEAD : len(events) - EVENTS_LIMIT + EVENTS_HEAD]

    def remember_failure(self, error: str, cause: str) -> None:
        """Keep the first failure only: it is what the user must read; later ones are consequences."""
        if self.progress.first_failure is None:
            self.progress.first_failure = FirstFailure(error=error, cause=cause)

    def wait_until(self, seconds: int) -> None:
        """Give the current wait a deadline."""
        self.progress.phase_deadline = self.now + timedelta(seconds=seconds)

    def overdue(self) -> bool:
        """The current wait has outlasted its deadline."""
        deadline = self.progress.phase_deadline
        return deadline is not None and self.now >= deadline

    def go(self, phase: Phase) -> None:
        """Move to a phase that has no deadline of its own."""
        self.progress.phase = phase
        self.progress.phase_deadline = None

    def end(self, outcome: Outcome, text: str) -> None:
        """The last word of the loop: the Done? choice sees `done` and moves on to Finish."""
        self.go("done")
        self.progress.done = True
        self.progress.outcome = outcome
        self.log(text)

    @property
    def candidate(self) -> str:
        """The type being tried now: the reserved one when a reservation was made."""
        if self.progress.reserved_type is not None:
            return self.progress.reserved_type
        return self.plan.candidates[self.progress.candidate_index]

    def next_candidate(self) -> int | None:
        """The index of the next type to try; None when a reservation fixed the type or the list is exhausted."""
        following = self.progress.candidate_index + 1
        if self.progress.reserved_type is not None or following >= len(self.plan.candidates):
            return None
        return following

    def observe(self) -> InstanceView:
        """Read the instance and remember what it is now."""
        seen = self.instances.observe(self.plan.instance_id)
        self.seen = seen
        self.progress.current_type = seen.instance_type
        return seen

    # --- dispatch ---------------------------------------------------------------------------------------------

    def step(self) -> None:
        """Run the current phase once."""
        phase = self.progress.phase
        if phase == "rollback_start" and self.progress.phase_deadline is not None and not self.overdue():
            return  # backing off before the next start on the original type
        if phase.startswith("rollback_"):
            self.rollback()
            return
        forward = {
            "reserve": self.reserve,
            "stop": self.stop,
            "wait_stopped": self.wait_stopped,
            "modify": self.modify,
            "start": self.start,
            "wait_running": self.wait_running,
            "verify": self.verify,
        }[phase]
        try:
            forward()
        except InstanceNotFound as error:
            self.give_up(str(error), look=False)
        except ClientError as error:
            failed = self.progress.phase
            if failed in ("wait_stopped", "wait_running", "verify") and not self.overdue():
                self.log(f"could not read the instance ({_why(error)}); will look again")
                return
            self.turn_back(error_code(error), f"{failed.replace('_', ' ')} failed: {_message(error)}")

    def turn_back(self, error: str, cause: str) -> None:
        """Give up the forward path: the next call reads the instance and starts the rollback from there."""
        self.remember_failure(error, cause)
        self.log(f"{cause}; rolling back to {self.plan.from_type}")
        self.go("rollback_stop")

    def recover(self, fault: Fault) -> None:
        """The previous call failed outside this code (a Lambda error or timeout): turn back from what EC2 shows."""
        cause = error_message(fault.Cause) or "no details"
        phase = self.progress.phase
        self.log(f"the previous drive call failed in phase {phase}: {fault.Error}: {cause}")
        self.remember_failure(fault.Error, cause)
        if phase.startswith("rollback_"):
            if self.count_attempt(f"{fault.Error}: {cause}"):
                return
        else:
            self.go("rollback_stop")
        self.rollback()

    # --- forward ----------------------------------------------------------------------------------------------

    def reserve(self) -> None:
        """Reserve the current candidate, open, before the stop, so the start is very unlikely to fail for capacity.

        The instance is never pointed at the reservation: with its default `open` preference, a start of the reserved
        type in that AZ uses it. Only another matching instance started before ours (during the stop) could take it.
        """
        wanted, zone = self.candidate, self.plan.availability_zone
        tags = {**RESOURCE_TAGS, "ec2ops:instance-id": self.plan.instance_id, "ec2ops:change-id": self.plan.change_id}
        try:
            reservation_id = self.capacity.reserve(
                wanted, zone, client_token=client_token(wanted, self.plan.change_id), tags=tags
            )
        except ClientError as error:
            code = error_code(error)
            if code not in RESERVE_NO_CAPACITY:
                raise
            self.progress.tried.append(Tried(type=wanted, result="not reservable", detail=_why(error)))
            following = self.next_candidate()
            if following is not None:
                self.progress.candidate_index = following
                self.log(f"could not reserve {wanted} in {zone} ({code}); trying {self.candidate}")
                return
            tried = "; ".join(f"{entry.type} ({entry.detail})" for entry in self.progress.tried)
            self.remember_failure("CapacityUnavailable", f"no candidate type could be reserved in {zone}: {tried}")
            self.end("aborted", f"could not reserve {wanted} in {zone} ({code}); no candidate left, nothing changed")
            return
        self.progress.reservation_id = reservation_id
        self.progress.reserved_type = wanted
        self.log(f"reserved capacity for one {wanted} in {zone} ({reservation_id}, open: the start will use it)")
        self.go("stop")

    def stop(self) -> None:
        """Stop a running instance; a stopped one goes straight to the type change and stays stopped."""
        if not self.plan.was_running:
            self.log("the instance is stopped: only its type changes, it is not started")
            self.go("modify")
            self.modify()
            return
        self.instances.stop(self.plan.instance_id)
        self.progress.stop_requested_at = self.now
        self.progress.phase = "wait_stopped"
        self.wait_until(self.config.stop_timeout_seconds)
        self.log(f"stop requested (running on {self.plan.from_type})")

    def wait_stopped(self) -> None:
        """Change the type only once EC2 says `stopped`: earlier, ModifyInstanceAttribute is refused."""
        seen = self.observe()
        if seen.state == "stopped":
            self.log(f"stopped ({seen.instance_type})")
            self.go("modify")
        elif seen.state in GONE_STATES:
            self.turn_back("InstanceGone", f"the instance is {seen.state}")
        elif self.overdue():
            self.turn_back(
                "StopTimedOut",
                f"the instance did not stop within {self.config.stop_timeout_seconds} s (it is {seen.state})",
            )

    def modify(self) -> None:
        """Set the candidate type on the stopped instance; one that targets a reservation is moved to open capacity.

        A reservation ec2ops made is open and needs nothing here: the start uses it.
        """
        seen = self.observe()
        if seen.state != "stopped":
            self.turn_back(
                "IncorrectInstanceState", f"the instance is {seen.state}, not stopped, so its type cannot change"
            )
            return
        wanted = self.candidate
        if seen.instance_type != wanted:
            self.instances.set_type(self.plan.instance_id, wanted)
        self.progress.current_type = wanted
        line = f"type set to {wanted}"
        if seen.reservation_target is not None:
            # A targeting instance launches only into that reservation: one of another type, or a cancelled one,
            # would keep the start from working, and open capacity includes the open reservation ec2ops made.
            self.instances.set_reservation(self.plan.instance_id, None)
            line += f"; it targeted capacity reservation {seen.reservation_target}, now any open capacity"
        self.log(line)
        if self.plan.was_running:
            self.go("start")
            return
        self.progress.tried.append(Tried(type=wanted, result="resized", detail="type changed while stopped"))
        self.end("resized", f"resized from {self.plan.from_type} to {wanted}; left stopped, as it was")

    def start(self) -> None:
        """Start on the candidate type; no capacity for it moves on to the next candidate."""
        wanted = self.candidate
        try:
            self.instances.start(self.plan.instance_id)
        except ClientError as error:
            code = error_code(error)
            if code not in START_NO_CAPACITY:
                raise
            self.no_capacity(wanted, code, _message(error))
            return
        self.progress.phase = "wait_running"
        self.wait_until(self.config.start_timeout_seconds)
        self.log(f"start requested on {wanted}")

    def wait_running(self) -> None:
        """Trust `running` only: EC2 may accept a start and then return the instance to `stopped`."""
        seen = self.observe()
        if seen.state == "running":
            self.progress.running_at = self.now
            self.progress.phase = "verify"
            self.wait_until(self.config.status_check_timeout_seconds)
            self.log(f"running on {seen.instance_type}; waiting for the status checks")
        elif seen.state == "stopped" and seen.reason_code == SILENT_NO_CAPACITY:
            detail = f"the start was accepted, then the instance returned to stopped ({SILENT_NO_CAPACITY})"
            self.no_capacity(self.candidate, "InsufficientInstanceCapacity", detail)
        elif seen.state == "stopped":
            reason = f"{seen.reason_code or 'no reason given'}: {seen.reason_message or 'no message'}"
            self.turn_back(
                "InstanceStopped", f"the instance returned to stopped after the start on {self.candidate} ({reason})"
            )
        elif seen.state in GONE_STATES:
            self.turn_back("InstanceGone", f"the instance is {seen.state}")
        elif self.overdue():
            self.turn_back(
                "StartTimedOut",
                f"the instance did not reach running within {self.config.start_timeout_seconds} s (it is {seen.state})",
            )

    def no_capacity(self, wanted: str, code: str, detail: str) -> None:
        """Record the type as unavailable and try the next candidate, or turn back when none is left."""
        result = "unsupported" if code == "Unsupported" else "no capacity"
        self.progress.tried.append(Tried(type=wanted, result=result, detail=f"{code}: {detail}"))
        following = self.next_candidate()
        if following is None:
            tried = "; ".join(f"{entry.type} ({entry.detail})" for entry in self.progress.tried)
            self.turn_back(code, f"no candidate type could start: {tried}")
            return
        self.progress.candidate_index = following
        self.log(f"{wanted} could not start ({code}); trying {self.candidate}")
        self.go("modify")

    def verify(self) -> None:
        """Both status checks `ok`, or roll back: a type can start and still not boot (NVMe, drivers, KMS)."""
        checks = self.instances.status_checks(self.plan.instance_id)
        wanted = self.candidate
        if checks.state != "running":
            self.turn_back("InstanceNotRunning", f"the instance is {checks.state} while its status checks were awaited")
        elif checks.system == "ok" and checks.instance == "ok":
            self.progress.tried.append(Tried(type=wanted, result="resized", detail="running, status checks ok"))
            self.end("resized", f"status checks ok: resized from {self.plan.from_type} to {wanted}")
        elif "impaired" in (checks.system, checks.instance):
            detail = f"system {checks.system}, instance {checks.instance}"
            self.progress.tried.append(Tried(type=wanted, result="status checks failed", detail=detail))
            self.turn_back("StatusChecksFailed", f"{wanted} started but its status checks failed ({detail})")
        elif self.overdue():
            detail = f"system {checks.system}, instance {checks.instance}"
            self.progress.tried.append(Tried(type=wanted, result="status checks timed out", detail=detail))
            self.turn_back(
                "StatusChecksTimedOut",
                f"the status checks of {wanted} did not pass within {self.config.status_check_timeout_seconds} s "
                f"({detail})",
            )

    # --- rollback ---------------------------------------------------------------------------------------------

    def rollback(self) -> None:
        """Read the instance, then take the one step that brings it closer to its original type and state."""
        try:
            seen = self.observe()
        except InstanceNotFound as error:
            self.give_up(str(error), look=False)
            return
        except Exception as error:
            logger.warning("rollback could not read the instance", exc_info=True)
            self.count_attempt(f"could not read the instance ({_why(error)})")
            return
        if self.untouched(seen):
            self.end("aborted", f"nothing was changed: the instance is still {seen.describe()}")
            return
        try:
            self.rollback_from(seen)
        except InstanceNotFound as error:
            self.give_up(str(error), look=False)
        except Exception as error:
            logger.warning("rollback step failed", exc_info=True)
            self.count_attempt(_why(error))

    def untouched(self, seen: InstanceView) -> bool:
        """On entering the rollback: never stopped, original type and state, so nothing to undo (an early failure)."""
        original_state = "running" if self.plan.was_running else "stopped"
        return (
            self.progress.phase == "rollback_stop"
            and self.progress.stop_requested_at is None
            and seen.instance_type == self.plan.from_type
            and seen.state == original_state
        )

    def rollback_from(self, seen: InstanceView) -> None:
        """The rollback step for what the instance is now; the phase only tells a failed start from a fresh one."""
        original = self.plan.from_type
        if seen.state in GONE_STATES:
            self.give_up(f"the instance is {seen.state}", look=False)
        elif seen.state == "stopping":
            self.rollback_wait("rollback_wait_stopped", self.config.stop_timeout_seconds, seen)
        elif seen.state == "pending":
            # On a new type it must run before it can be stopped; on the original one it is starting.
            waiting: Phase = "rollback_wait_running" if seen.instance_type == original else "rollback_stop"
            self.rollback_wait(waiting, self.config.start_timeout_seconds, seen)
        elif seen.state == "running" and seen.instance_type != original:
            self.instances.stop(self.plan.instance_id)
            if self.progress.stop_requested_at is None:
                self.progress.stop_requested_at = self.now
            self.progress.phase = "rollback_wait_stopped"
            self.wait_until(self.config.stop_timeout_seconds)
            self.log(f"rollback: stop requested (running on {seen.instance_type})")
        elif seen.state == "running":
            self.rollback_verify(seen)
        elif seen.state == "stopped":
            self.rollback_stopped(seen)
        else:
            self.rollback_wait(self.progress.phase, self.config.start_timeout_seconds, seen)

    def rollback_stopped(self, seen: InstanceView) -> None:
        """Stopped: put the original type back (a targeting instance moves to open capacity), start it if it ran."""
        original, instance_id = self.plan.from_type, self.plan.instance_id
        if self.progress.phase == "rollback_wait_running":
            reason = f"{seen.reason_code or 'no reason given'}: {seen.reason_message or 'no message'}"
            self.retry_start_later(f"the start on {original} was accepted, then returned to stopped ({reason})")
            return
        retype = seen.instance_type != original
        if retype:
            self.progress.phase = "rollback_modify"
            self.instances.set_type(instance_id, original)
            self.progress.current_type = original
            self.log(f"rollback: type set back to {original}")
        target = seen.reservation_target
        untarget = retype and target is not None
        if untarget:
            # As on the way forward: a targeted reservation may not hold this type, or be cancelled.
            self.progress.phase = "rollback_modify"
            self.instances.set_reservation(instance_id, None)
            self.log(f"rollback: no longer targets capacity reservation {target}, now any open capacity")
        changed = retype or untarget
        if not self.plan.was_running:
            self.end("rolled_back", f"rolled back: stopped on {original}, as it was")
        elif changed:
            self.go("rollback_start")
        else:
            self.rollback_start()

    def rollback_start(self) -> None:
        """Start on the original type; no capacity is retried after a wait, up to the configured attempts."""
        original = self.plan.from_type
        try:
            self.instances.start(self.plan.instance_id)
        except ClientError as error:
            self.retry_start_later(f"start on {original} failed ({_why(error)})")
            return
        self.progress.phase = "rollback_wait_running"
        self.wait_until(self.config.start_timeout_seconds)
        self.log(f"rollback: start requested on {original}")

    def retry_start_later(self, problem: str) -> None:
        """A failed start on the original type: count it, and back off before the next (capacity comes back slowly)."""
        self.go("rollback_start")
        if not self.count_attempt(problem):
            attempts = self.progress.rollback_attempts
            backoff = min(ROLLBACK_BACKOFF_SECONDS * 2 ** (attempts - 1), ROLLBACK_BACKOFF_LIMIT)
            self.wait_until(backoff)
            self.log(f"rollback: next start on {self.plan.from_type} in {backoff} s or later")

    def rollback_verify(self, seen: InstanceView) -> None:
        """Running on the original type: done once both status checks pass."""
        original = self.plan.from_type
        if not self.plan.was_running:
            self.end("rolled_back", f"rolled back to {original}; it is running (started outside ec2ops)")
            return
        if self.progress.phase != "rollback_verify":
            self.progress.running_at = self.now
            self.progress.phase = "rollback_verify"
            self.wait_until(self.config.status_check_timeout_seconds)
            self.log(f"rollback: running on {original} again; waiting for the status checks")
            return
        checks = self.instances.status_checks(self.plan.instance_id)
        detail = f"system {checks.system}, instance {checks.instance}"
        if checks.system == "ok" and checks.instance == "ok":
            self.end("rolled_back", f"rolled back: running on {original} again, status checks ok")
        elif "impaired" in (checks.system, checks.instance):
            self.give_up(f"it runs on {original} again but its status checks fail ({detail})")
        elif self.overdue():
            self.give_up(
                f"it runs on {original} again but its status checks did not pass within "
                f"{self.config.status_check_timeout_seconds} s ({detail})"
            )

    def rollback_wait(self, phase: Phase, seconds: int, seen: InstanceView) -> None:
        """Wait for a transition; each deadline that passes counts as a failed attempt and opens a new one."""
        if self.progress.phase != phase or self.progress.phase_deadline is None:
            self.progress.phase = phase
            self.wait_until(seconds)
            return
        if self.overdue() and not self.count_attempt(f"the instance is still {seen.describe()} after {seconds} s"):
            self.wait_until(seconds)

    def count_attempt(self, problem: str) -> bool:
        """One more failed rollback attempt; True when that was the last one allowed (the loop has ended)."""
        self.progress.rollback_attempts += 1
        attempts, allowed = self.progress.rollback_attempts, self.config.rollback_attempts
        self.remember_failure("RollbackFailed", problem)
        self.log(f"rollback attempt {attempts} of {allowed} failed: {problem}")
        if attempts >= allowed:
            self.give_up(f"{problem} ({attempts} attempts)")
            return True
        return False

    def give_up(self, problem: str, *, look: bool = True) -> None:
        """End as rollback_failed, saying where the instance stands so a human can take over."""
        seen = self.seen
        if look and seen is None:
            try:
                seen = self.observe()
            except Exception:
                logger.warning("could not read the instance after the rollback failed", exc_info=True)
        where = (
            seen.describe()
            if seen is not None
            else f"in an unknown state (last known type {self.progress.current_type})"
        )
        self.remember_failure("RollbackFailed", problem)
        self.end("rollback_failed", f"rollback failed: {problem}; the instance is {where} and needs attention by hand")
