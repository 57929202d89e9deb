"""Finish step: cancel the reservation, manage the revert schedule, record once, release the lock, say what happened.

Every part is best effort and its failure is told in the message, except the lock release: if the lock cannot be
released, finish raises so the state machine's catch releases it (the result is then lost, the ledger item is not).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import Field

from ec2ops_lambda import clock, settings
from ec2ops_lambda.aws.capacity import Capacity
from ec2ops_lambda.aws.instances import Instances, InstanceView
from ec2ops_lambda.aws.ledger import Ledger, LedgerItem
from ec2ops_lambda.aws.lock import Lock
from ec2ops_lambda.errors import InvalidInput
from ec2ops_lambda.models.common import as_utc, iso
from ec2ops_lambda.models.resize_progress import (
    DrivePlan,
    FinishEvent,
    LedgerKey,
    Outcome,
    Progress,
    ResizeResult,
    ResultError,
)
from ec2ops_lambda.resize.revert import RevertSchedules, revert_input, schedule_name

logger = Logger(service="ec2ops-resize", child=True)

WORKFLOW = "resize"
KINDS: dict[Outcome, str] = {
    "resized": "resize",
    "rolled_back": "resize-rolled-back",
    "rollback_failed": "resize-rollback-failed",
    "aborted": "resize-aborted",
}
HOURS_PER_MONTH = Decimal(730)
_STAMP_LENGTH = len("2025-01-31T12:00:00.000Z")


class LockSettings(settings._Settings):
    """Lock and finish both write the ledger table (the lock lives in it)."""

    ledger_table: str = Field(alias="LEDGER_TABLE", min_length=1)


class FinishSettings(LockSettings):
    """Finish also creates the revert schedule, which starts this state machine with the scheduler's role."""

    state_machine_arn: str | None = Field(default=None, alias="RESIZE_STATE_MACHINE_ARN")
    scheduler_role_arn: str | None = Field(default=None, alias="SCHEDULER_ROLE_ARN")
    schedule_group: str = Field(default="default", alias="SCHEDULE_GROUP", min_length=1)


def _why(error: Exception) -> str:
    """An exception in one line for a message."""
    return f"{type(error).__name__}: {error}"


def _sentence(text: str) -> str:
    """Text that ends as a sentence, so parts join cleanly."""
    text = text.strip()
    return text if not text or text.endswith((".", "!", "?")) else text + "."


def snapshot_ids(output: Any) -> list[str]:
    """Snapshot ids from the nested execution's output: the snapshot result, or the whole .sync response."""
    if isinstance(output, str):
        try:
            output = json.loads(output)
        except ValueError:
            return []
    if isinstance(output, Mapping):
        if "Output" in output:
            return snapshot_ids(output["Output"])
        output = output.get("snapshot_ids")
    if not isinstance(output, list):
        return []
    return [value for value in dict.fromkeys(output) if isinstance(value, str) and value.startswith("snap-")]


def keyed_at(progress: Progress, now: datetime) -> datetime:
    """The ledger key's time: the first drive call's, so a retried finish computes the same key."""
    for event in progress.events[:1]:
        try:
            return as_utc(datetime.fromisoformat(event[:_STAMP_LENGTH]))
        except ValueError:
            break
    return now


def downtime_seconds(progress: Progress) -> float | None:
    """From the stop request to `running` again (on the new type, or the original after a rollback)."""
    if progress.stop_requested_at is None or progress.running_at is None:
        return None
    seconds = (progress.running_at - progress.stop_requested_at).total_seconds()
    return round(seconds, 1) if seconds >= 0 else None


def hourly_cost_delta(plan: DrivePlan, outcome: Outcome, to_type: str) -> float | None:
    """What the change costs per hour: nothing unless resized, and for the type actually used (maybe a fallback)."""
    if outcome != "resized":
        return 0.0
    new, old = plan.prices.get(to_type), plan.prices.get(plan.from_type)
    if new is not None and old is not None:
        return round(new - old, 4)
    return plan.hourly_cost_delta if to_type == plan.target_type else None


def result_error(progress: Progress) -> ResultError | None:
    """The Fail state's error name (docs/resize.md, Errors)."""
    if progress.outcome == "resized":
        return None
    if progress.outcome == "rollback_failed":
        return "RollbackFailed"
    if (
        progress.outcome == "aborted"
        and progress.first_failure
        and progress.first_failure.error == "CapacityUnavailable"
    ):
        return "CapacityUnavailable"
    return "ResizeRolledBack"


def _plain_event(line: str) -> str:
    """An event line without its time stamp."""
    return line[_STAMP_LENGTH + 1 :] if len(line) > _STAMP_LENGTH and line[4] == "-" else line


def _tried_line(progress: Progress) -> str:
    """The candidate types that were tried and what became of each."""
    if not progress.tried:
        return "No candidate type was tried."
    return "Tried: " + "; ".join(f"{entry.type} {entry.result} ({entry.detail})" for entry in progress.tried) + "."


class _Finish:
    """One finish call: the plan, the final progress, and the parts that act."""

    def __init__(
        self,
        event: FinishEvent,
        *,
        instances: Instances,
        capacity: Capacity,
        ledger: Ledger,
        lock: Lock,
        schedules: RevertSchedules,
        config: FinishSettings,
    ) -> None:
        self.plan, self.progress = event.plan, event.progress
        self.execution_id = event.execution_id or event.plan.execution_id
        self.snapshot_ids = snapshot_ids(event.snapshot)
        self.instances, self.capacity, self.ledger, self.lock = instances, capacity, ledger, lock
        self.schedules, self.config = schedules, config
        self.now = clock.utcnow()
        self.notes: list[str] = []
        self.problems: list[str] = []
        self.revert_at: datetime | None = None
        self.revert_schedule: str | None = None

    def cancel_reservation(self) -> None:
        """A reservation is billed while active: cancel it whatever the outcome (the instance keeps running)."""
        reservation_id = self.progress.reservation_id
        if reservation_id is None:
            return
        try:
            cancelled = self.capacity.cancel(reservation_id)
        except Exception as error:
            logger.exception("could not cancel the capacity reservation")
            self.problems.append(
                f"The capacity reservation {reservation_id} could not be cancelled ({_why(error)}): cancel it by "
                "hand, it is billed while active."
            )
            return
        self.notes.append(
            f"The capacity reservation {reservation_id} was {'cancelled' if cancelled else 'already cancelled'}."
        )

    def look(self) -> InstanceView | None:
        """The instance now, for the cause and the record; None when it cannot be read."""
        try:
            return self.instances.observe(self.plan.instance_id)
        except Exception:
            logger.exception("could not read the instance")
            return None

    def replace_revert(self) -> None:
        """After a change of type: drop the earlier revert (it would undo the wrong change), add the new one."""
        instance_id = self.plan.instance_id
        name = schedule_name(instance_id)
        try:
            if self.schedules.delete(instance_id):
                self.notes.append(f"The earlier revert schedule {name} was removed.")
        except Exception as error:
            logger.exception("could not delete the earlier revert schedule")
            self.problems.append(
                f"The earlier revert schedule {name} could not be removed ({_why(error)}): delete it by hand, or it "
                "will resize the instance to an older type."
            )
        hours = self.plan.revert_after_hours
        if not hours:
            return
        if not (self.config.state_machine_arn and self.config.scheduler_role_arn):
            self.problems.append(
                "No revert was scheduled: RESIZE_STATE_MACHINE_ARN or SCHEDULER_ROLE_ARN is not set (a deployment "
                f"problem); revert to {self.plan.from_type} by hand."
            )
            return
        at = (self.now + timedelta(hours=hours)).replace(microsecond=0)
        payload = revert_input(instance_id, self.plan.from_type, self.plan.change_id, self.plan.reason)
        try:
            self.revert_schedule = self.schedules.create(
                instance_id,
                at,
                state_machine_arn=self.config.state_machine_arn,
                role_arn=self.config.scheduler_role_arn,
                payload=payload,
            )
        except Exception as error:
            logger.exception("could not create the revert schedule")
            self.problems.append(
                f"The revert to {self.plan.from_type} could not be scheduled ({_why(error)}): revert by hand."
            )
            return
        self.revert_at = at
        self.notes.append(f"A revert to {self.plan.from_type} is scheduled at {iso(at)} ({name}).")

    def cause(self, seen: InstanceView | None, to_type: str) -> str:
        """What failed first, what was done, and where the instance stands now."""
        progress, plan = self.progress, self.plan
        first = progress.first_failure
        parts = [_sentence(f"{first.error}: {first.cause}" if first else "The resize did not complete")]
        if progress.outcome == "aborted":
            parts.append("Nothing was changed.")
        elif progress.outcome == "rolled_back":
            parts.append(f"The resize was rolled back to {plan.from_type}.")
        else:
            last = _plain_event(progress.events[-1]) if progress.events else "rollback failed"
            last = last.split("; the instance is ", 1)[0]
            parts.append(_sentence(last[0].upper() + last[1:]))
        if first is None or any(entry.type not in first.cause for entry in progress.tried):
            parts.append(_tried_line(progress))
        now = seen.describe() if seen is not None else f"of unknown state, last known type {to_type}"
        parts.append(f"The instance is {now} now.")
        return " ".join(parts)

    def message(self, result: ResizeResult, cause: str | None) -> str:
        """The notification: what happened in the first line, then the facts and anything left to do."""
        plan = self.plan
        lines: list[str]
        if result.status == "resized":
            headline = f"Resized {plan.label} from {plan.from_type} to {result.to_type}."
            if result.to_type != plan.target_type:
                headline += f" The target {plan.target_type} could not be used; the fallback {result.to_type} was."
            lines = [headline]
            facts = []
            if result.downtime_seconds is not None:
                facts.append(f"Downtime {result.downtime_seconds:g} s.")
            elif not plan.was_running:
                facts.append("It was stopped and stays stopped.")
            if result.hourly_cost_delta is not None:
                facts.append(f"Cost change {result.hourly_cost_delta:+.4f} USD/hour.")
            lines.append(" ".join(facts))
        else:
            words = {"rolled_back": "failed and was rolled back", "aborted": "did not start"}.get(
                result.status, "failed and could NOT be rolled back: the instance needs attention"
            )
            lines = [f"Resize of {plan.label} from {plan.from_type} to {plan.target_type} {words}.", cause or ""]
            if result.downtime_seconds is not None:
                lines.append(f"Downtime {result.downtime_seconds:g} s.")
        lines.append(f"Reason: {_sentence(plan.reason)}" if plan.reason else "")
        if self.snapshot_ids:
            lines.append(f"Snapshots taken before the change: {', '.join(self.snapshot_ids)}.")
        lines.extend(self.notes)
        lines.extend(self.problems)
        return "\n".join(line for line in lines if line)

    def record(self, result: ResizeResult, seen: InstanceView | None) -> LedgerKey | None:
        """One ledger item; a retried finish computes the same key and the conditional put keeps one."""
        plan, progress = self.plan, self.progress
        outcome = result.status
        delta = result.hourly_cost_delta
        monthly = (Decimal(str(delta)) * HOURS_PER_MONTH).quantize(Decimal("0.01")) if delta is not None else None
        item = LedgerItem(
            instance_id=plan.instance_id,
            kind=KINDS[outcome],
            change_id=plan.change_id,
            execution_id=self.execution_id,
            workflow=WORKFLOW,
            keyed_at=keyed_at(progress, self.now),
            at=self.now,
            what=result.message,
            why=plan.reason,
            cost_effect={
                "monthly_usd_upper_bound": monthly,
                "hourly_usd_delta": delta,
                "basis": f"on-demand price of {result.to_type} minus {plan.from_type}, x 730 hours",
                "note": "upper bound: the instance runs less than every hour of the month when it is stopped",
            },
            detail={
                "outcome": outcome,
                "error": result.error,
                "from_type": plan.from_type,
                "to_type": result.to_type,
                "target_type": plan.target_type,
                "candidates": plan.candidates,
                "tried": [entry.model_dump() for entry in progress.tried],
                "first_failure": progress.first_failure.model_dump() if progress.first_failure else None,
                "snapshot_ids": self.snapshot_ids,
                "downtime_seconds": result.downtime_seconds,
                "hourly_cost_delta": delta,
                "revert_schedule": {"name": self.revert_schedule, "at": self.revert_at}
                if self.revert_schedule
                else None,
                "reservation_id": progress.reservation_id,
                "reserved_type": progress.reserved_type,
                "rollback_attempts": progress.rollback_attempts,
                "state_now": seen.state if seen is not None else None,
                "was_running": plan.was_running,
                "events": progress.events,
            },
        )
        try:
            pk, sk = self.ledger.put(item)
        except Exception as error:
            logger.exception("could not write the ledger item")
            self.problems.append(f"The change was not recorded in the ledger ({_why(error)}).")
            return None
        return LedgerKey(pk=pk, sk=sk)

    def release_lock(self) -> None:
        """Free the instance for the next execution; raises when it cannot, so the state machine's catch does."""
        status = self.lock.release(self.plan.instance_id, self.execution_id)
        if not status.held:
            logger.warning("the lock was not held by this execution", extra={"holder": status.holder})

    def run(self) -> ResizeResult:
        """All the finishing steps, in the order that keeps the most even when one fails."""
        progress, plan = self.progress, self.plan
        if not progress.done or progress.outcome is None:
            raise InvalidInput(
                f"finish needs a finished drive loop; this progress is in phase {progress.phase} (not done)"
            )
        outcome = progress.outcome
        try:
            self.cancel_reservation()
            seen = self.look()
            to_type = seen.instance_type if seen is not None else progress.current_type
            if outcome == "resized":
                self.replace_revert()
            cause = None if outcome == "resized" else self.cause(seen, to_type)
            result = ResizeResult(
                status=outcome,
                error=result_error(progress),
                cause=cause,
                instance_id=plan.instance_id,
                change_id=plan.change_id,
                from_type=plan.from_type,
                to_type=to_type,
                snapshot_ids=self.snapshot_ids,
                downtime_seconds=downtime_seconds(progress),
                hourly_cost_delta=hourly_cost_delta(plan, outcome, to_type),
                revert_at=self.revert_at,
                message="",
            )
            result.message = self.message(result, cause)
            result.ledger = self.record(result, seen)
            if result.ledger is None:
                result.message = self.message(result, cause)
        finally:
            self.release_lock()
        logger.info("resize finished", extra={"outcome": outcome, "ledger": result.ledger})
        return result


def finish(
    event: FinishEvent,
    *,
    instances: Instances,
    capacity: Capacity,
    ledger: Ledger,
    lock: Lock,
    schedules: RevertSchedules,
    config: FinishSettings,
) -> ResizeResult:
    """Finish the resize: reservation, revert schedule, ledger, lock; return the result the user reads."""
    return _Finish(
        event, instances=instances, capacity=capacity, ledger=ledger, lock=lock, schedules=schedules, config=config
    ).run()
