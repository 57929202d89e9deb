"""Record and RecordFailure steps: the ledger item, the workflow's output, and compensation after a failure."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from ec2ops_lambda import clock
from ec2ops_lambda.aws.ec2 import Ec2
from ec2ops_lambda.aws.ledger import Ledger, LedgerItem, snapshot_cost_effect
from ec2ops_lambda.aws.notify import Notifier
from ec2ops_lambda.models.common import tags_dict
from ec2ops_lambda.models.snapshot import (
    INSTANCE_ID_PATTERN,
    Failure,
    LedgerKey,
    PruneResult,
    RecordEvent,
    SnapshotPlan,
    SnapshotResult,
    VolumeSnapshot,
)
from ec2ops_lambda.snapshot import retention
from ec2ops_lambda.snapshot.plan import WORKFLOW

logger = Logger(service="ec2ops-snapshot", child=True)

KIND_DONE = "snapshot"
KIND_FAILED = "snapshot-failed"
CAUSE_LIMIT = 4000


def _plural(count: int, word: str) -> str:
    """`1 set`, `2 sets`: messages read as written by a person."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def _sentence(text: str) -> str:
    """Text that ends as a sentence, so causes and messages join cleanly."""
    text = text.strip()
    return text if not text or text.endswith((".", "!", "?")) else text + "."


# --- Record -----------------------------------------------------------------------------------------------------


def _retention_line(plan: SnapshotPlan, pruned: PruneResult) -> str:
    """The second line of the message: what retention deleted and kept, so nobody wonders where a set went."""
    limits = [f"{name} {value}" for name, value in (("count", plan.retain.count), ("days", plan.retain.days)) if value]
    rule = f"Retention ({', '.join(limits) or 'no limits'})"
    kept = _plural(len(pruned.kept_sets), "set")
    if pruned.deleted:
        line = (
            f"{rule}: deleted {_plural(len(pruned.deleted), 'snapshot')} of "
            f"{_plural(len(pruned.deleted_sets), 'older set')} ({', '.join(pruned.deleted_sets)}); {kept} kept."
        )
    else:
        line = f"{rule}: nothing to prune; {kept} kept."
    if pruned.protected:
        line += f" {_plural(len(pruned.protected), 'snapshot')} kept because an AMI uses them."
    return line


def record(event: RecordEvent, *, ledger: Ledger) -> SnapshotResult:
    """Write the one ledger item of a completed set and say, in two lines, what happened."""
    plan, progress, pruned = event.plan, event.progress, event.pruned
    logger.append_keys(instance_id=plan.instance_id, change_id=plan.change_id)
    by_id = {status.snapshot_id: status for status in progress.snapshots}
    snapshot_ids = list(dict.fromkeys(event.snapshot_ids)) or list(by_id)
    volumes = [
        VolumeSnapshot(
            snapshot_id=snapshot_id,
            volume_id=by_id[snapshot_id].volume_id if snapshot_id in by_id else "",
            size_gib=by_id[snapshot_id].size_gib if snapshot_id in by_id else 0,
        )
        for snapshot_id in snapshot_ids
    ]
    total = sum(volume.size_gib for volume in volumes)
    message = (
        f"Snapshot set {plan.change_id} of {plan.label} completed: {_plural(len(volumes), 'volume')}, {total} GiB "
        f"({', '.join(snapshot_ids)}). Reason: {_sentence(plan.reason)}\n{_retention_line(plan, pruned)}"
    )
    item = LedgerItem(
        instance_id=plan.instance_id,
        kind=KIND_DONE,
        change_id=plan.change_id,
        execution_id=event.execution_id,
        workflow=WORKFLOW,
        keyed_at=plan.requested_at,
        at=clock.utcnow(),
        what=message,
        why=plan.reason,
        cost_effect=snapshot_cost_effect(total),
        detail={
            "snapshot_ids": snapshot_ids,
            "volumes": [volume.model_dump() for volume in volumes],
            "total_size_gib": total,
            "pruned_snapshot_ids": pruned.deleted,
            "pruned_sets": pruned.deleted_sets,
            "kept_sets": pruned.kept_sets,
            "protected_snapshot_ids": pruned.protected,
            "retain": plan.retain.model_dump(),
            "requested_at": plan.requested_at,
            "availability_zone": plan.availability_zone,
        },
    )
    pk, sk = ledger.put(item)
    logger.info("snapshot recorded", extra={"pk": pk, "sk": sk})
    return SnapshotResult(
        instance_id=plan.instance_id,
        change_id=plan.change_id,
        snapshot_ids=snapshot_ids,
        volumes=volumes,
        total_size_gib=total,
        pruned_snapshot_ids=pruned.deleted,
        kept_sets=pruned.kept_sets,
        ledger=LedgerKey(pk=pk, sk=sk),
        message=message,
    )


# --- RecordFailure ------------------------------------------------------------------------------------------------


def error_message(cause: Any) -> str:
    """The human part of a Step Functions error Cause: a Lambda's errorMessage, or an SDK task's plain text."""
    if cause is None:
        return ""
    if isinstance(cause, Mapping):
        return str(cause.get("errorMessage") or json.dumps(cause, default=str))
    text = str(cause).strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if isinstance(parsed, Mapping) and parsed.get("errorMessage"):
        return str(parsed["errorMessage"])
    return text


def _ids(value: Any) -> list[str]:
    """Snapshot ids from what a state holds: {"snapshot_ids": [...]}, CreateSnapshots' {"Snapshots": [...]}, a list."""
    if isinstance(value, Mapping):
        value = value.get("snapshot_ids", value.get("Snapshots", value.get("snapshots")))
    if not isinstance(value, list):
        return []
    found: list[str] = []
    for entry in value:
        snapshot_id = entry.get("SnapshotId", entry.get("snapshot_id")) if isinstance(entry, Mapping) else entry
        if isinstance(snapshot_id, str) and snapshot_id.startswith("snap-") and snapshot_id not in found:
            found.append(snapshot_id)
    return found


@dataclass
class FailedRun:
    """What a failed execution's state tells, read without trusting its shape."""

    error: str
    message: str
    execution_id: str
    plan: SnapshotPlan | None
    instance_id: str | None
    change_id: str | None
    reason: str
    created_ids: list[str]
    completed: bool
    progress_sizes: dict[str, int] = field(default_factory=dict)
    pruned: bool = False
    recorded: bool = False

    @property
    def label(self) -> str:
        """The instance as messages name it."""
        if self.plan is not None:
            return self.plan.label
        return self.instance_id or "an unknown instance"

    @property
    def phase(self) -> str:
        """Where the workflow was when it failed, told from what the state holds."""
        if self.plan is None:
            return "before anything was created"
        if not self.created_ids and not self.completed:
            return "while creating the snapshots"
        if not self.completed:
            return "while waiting for the snapshots to complete"
        if not self.pruned:
            return "while pruning older sets"
        if not self.recorded:
            return "while recording the result"
        return "while sending the notification"


def read_failed_run(event: Any) -> FailedRun:
    """The failed execution's facts from RecordFailure's payload, whatever its shape."""
    payload: Mapping[str, Any] = event if isinstance(event, Mapping) else {}
    state_raw = payload.get("state")
    state: Mapping[str, Any] = state_raw if isinstance(state_raw, Mapping) else {}
    error_raw = state.get("error")
    error: Mapping[str, Any] = error_raw if isinstance(error_raw, Mapping) else {}
    execution_id = str(payload.get("execution_id") or "")
    try:
        plan: SnapshotPlan | None = SnapshotPlan.model_validate(state.get("plan"))
    except ValidationError:
        plan = None
    request_raw = state.get("request")
    request: Mapping[str, Any] = request_raw if isinstance(request_raw, Mapping) else state
    instance_id = plan.instance_id if plan is not None else request.get("instance_id")
    if not (isinstance(instance_id, str) and _looks_like_instance_id(instance_id)):
        instance_id = None
    change_id = plan.change_id if plan is not None else (execution_id.rsplit(":", 1)[-1] or None)
    progress_raw = state.get("progress")
    progress: Mapping[str, Any] = progress_raw if isinstance(progress_raw, Mapping) else {}
    sizes: dict[str, int] = {}
    statuses = progress.get("snapshots")
    for status in statuses if isinstance(statuses, list) else []:
        if isinstance(status, Mapping) and isinstance(status.get("snapshot_id"), str):
            size = status.get("size_gib")
            sizes[status["snapshot_id"]] = size if isinstance(size, int) else 0
    reason = plan.reason if plan is not None else request.get("reason")
    return FailedRun(
        error=str(error.get("Error") or "UnknownError"),
        message=error_message(error.get("Cause")),
        execution_id=execution_id,
        plan=plan,
        instance_id=instance_id,
        change_id=change_id,
        reason=reason if isinstance(reason, str) else "",
        created_ids=_ids(state.get("created")) or list(sizes),
        completed=progress.get("state") == "completed",
        progress_sizes=sizes,
        pruned=isinstance(state.get("pruned"), Mapping),
        recorded=isinstance(state.get("result"), Mapping),
    )


def _looks_like_instance_id(value: str) -> bool:
    """Only an id EC2 could know becomes a ledger key; anything else is recorded as unknown."""
    return re.fullmatch(INSTANCE_ID_PATTERN, value) is not None


@dataclass
class Cleanup:
    """What compensation did to the set."""

    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)

    def sentence(self, run: FailedRun) -> str:
        """Cleanup in words: what was deleted, what was kept and why, what a human must still do."""
        parts = []
        if run.completed:
            parts.append(
                f"The completed set ({', '.join(self.kept) or 'ids unknown'}) was kept: it is whole and usable."
            )
        elif self.deleted:
            parts.append(f"Cleaned up: deleted the incomplete set ({', '.join(self.deleted)}).")
        elif not self.problems:
            parts.append("Nothing was created, so nothing needed cleaning up.")
        if self.problems:
            where = f" (tag ec2ops:change-id={run.change_id})" if run.change_id else ""
            parts.append(
                "Cleanup incomplete: " + "; ".join(self.problems) + f". Delete the leftover snapshots{where} by hand."
            )
        return " ".join(parts)


def _is_ours(snapshot: Mapping[str, Any], run: FailedRun) -> bool:
    """Compensation deletes only snapshots ec2ops made for this very change."""
    tags = tags_dict(snapshot.get("Tags"))
    return (
        tags.get(retention.CREATED_BY_TAG) == retention.CREATED_BY_VALUE
        and (run.instance_id is None or tags.get(retention.INSTANCE_TAG) == run.instance_id)
        and (run.change_id is None or tags.get(retention.CHANGE_TAG) == run.change_id)
    )


def compensate(run: FailedRun, ec2: Ec2) -> Cleanup:
    """Delete an incomplete set (useless: crash consistency needs every volume); keep a completed one."""
    cleanup = Cleanup(sizes=dict(run.progress_sizes))
    if run.completed:
        cleanup.kept = list(run.created_ids)
        return cleanup
    if run.plan is None and not run.created_ids:
        return cleanup
    found: dict[str, Mapping[str, Any]] = {}
    try:
        if run.created_ids:
            found.update((s["SnapshotId"], s) for s in ec2.snapshots_by_id(run.created_ids))
        if run.instance_id and run.change_id:
            tagged = ec2.snapshots_tagged(
                {
                    retention.CREATED_BY_TAG: retention.CREATED_BY_VALUE,
                    retention.INSTANCE_TAG: run.instance_id,
                    retention.CHANGE_TAG: run.change_id,
                }
            )
            found.update((s["SnapshotId"], s) for s in tagged)
    except Exception as error:
        logger.exception("could not list the set's snapshots")
        cleanup.problems.append(f"could not list the set's snapshots ({error})")
    for snapshot_id, snapshot in found.items():
        cleanup.sizes.setdefault(snapshot_id, int(snapshot.get("VolumeSize", 0)))
        if not _is_ours(snapshot, run):
            logger.warning("not deleting a snapshot ec2ops did not make for this change", extra={"id": snapshot_id})
            continue
        try:
            outcome = ec2.delete_snapshot(snapshot_id)
        except Exception as error:
            logger.exception("could not delete a snapshot of the incomplete set", extra={"id": snapshot_id})
            cleanup.problems.append(f"could not delete {snapshot_id} ({error})")
            continue
        if outcome == "in_use":
            cleanup.problems.append(f"{snapshot_id} is in use by an AMI and was kept")
            cleanup.kept.append(snapshot_id)
        else:
            cleanup.deleted.append(snapshot_id)
    return cleanup


def _cause(run: FailedRun, cleanup: Cleanup) -> str:
    """The Fail state's cause: what failed, where, and what was cleaned up, capped for Step Functions."""
    message = _sentence(run.message) or "no cause was given."
    cause = f"Snapshot of {run.label} failed {run.phase}: {run.error}: {message} {cleanup.sentence(run)}"
    return cause if len(cause) <= CAUSE_LIMIT else cause[: CAUSE_LIMIT - 3] + "..."


def record_failure(
    event: Any,
    *,
    ec2: Ec2,
    ledger: Ledger | None,
    notifier: Notifier | None,
    env: str,
) -> Failure:
    """Compensate, record `snapshot-failed`, notify: each part best-effort and logged; never raises."""
    try:
        return _record_failure(read_failed_run(event), ec2=ec2, ledger=ledger, notifier=notifier, env=env)
    except Exception as error:  # the execution must still fail with a cause, whatever went wrong here
        logger.exception("RecordFailure could not finish")
        state = event.get("state") if isinstance(event, Mapping) else None
        raw_error = state.get("error") if isinstance(state, Mapping) else None
        name = raw_error.get("Error") if isinstance(raw_error, Mapping) else None
        return Failure(
            error=str(name or "UnknownError"),
            cause=f"The snapshot workflow failed, and recording the failure failed too ({error}): "
            "check the execution's history and the instance's ec2ops snapshots by hand.",
        )


def _record_failure(run: FailedRun, *, ec2: Ec2, ledger: Ledger | None, notifier: Notifier | None, env: str) -> Failure:
    logger.append_keys(instance_id=run.instance_id, change_id=run.change_id)
    cleanup = compensate(run, ec2)
    cause = _cause(run, cleanup)
    failure = Failure(
        error=run.error, cause=cause, deleted_snapshot_ids=cleanup.deleted, kept_snapshot_ids=cleanup.kept
    )
    now = clock.utcnow()
    if ledger is None:
        logger.error("LEDGER_TABLE is not set: the failure is not recorded in the ledger")
    else:
        failure.ledger = _write_failure(run, cleanup, cause, ledger, now)
    if notifier is None:
        logger.error("TOPIC_ARN is not set: nobody is notified of the failure")
    else:
        failure.notified = _notify_failure(run, failure, notifier, env)
    logger.info("snapshot failure handled", extra=failure.model_dump(mode="json"))
    return failure


def _write_failure(run: FailedRun, cleanup: Cleanup, cause: str, ledger: Ledger, now: datetime) -> LedgerKey | None:
    """The `snapshot-failed` item; a ledger problem is logged, never allowed to hide the original failure."""
    kept_gib = sum(cleanup.sizes.get(snapshot_id, 0) for snapshot_id in cleanup.kept)
    item = LedgerItem(
        instance_id=run.instance_id or "unknown",
        kind=KIND_FAILED,
        change_id=run.change_id or "unknown",
        execution_id=run.execution_id,
        workflow=WORKFLOW,
        keyed_at=run.plan.requested_at if run.plan is not None else now,
        at=now,
        what=cause,
        why=run.reason,
        cost_effect=snapshot_cost_effect(kept_gib),
        detail={
            "error": {"name": run.error, "message": run.message},
            "failed": run.phase,
            "snapshot_ids": sorted({*run.created_ids, *cleanup.deleted, *cleanup.kept}),
            "deleted_snapshot_ids": cleanup.deleted,
            "kept_snapshot_ids": cleanup.kept,
            "cleanup_problems": cleanup.problems,
            "volumes": [volume.model_dump() for volume in run.plan.volumes] if run.plan is not None else [],
        },
    )
    try:
        pk, sk = ledger.put(item)
    except Exception:
        logger.exception("could not record the failure in the ledger")
        return None
    return LedgerKey(pk=pk, sk=sk)


def _notify_failure(run: FailedRun, failure: Failure, notifier: Notifier, env: str) -> bool:
    """Tell subscribers; a publish problem is logged, never allowed to hide the original failure."""
    lines = [failure.cause, "", f"instance: {run.instance_id or 'unknown'}", f"change: {run.change_id or 'unknown'}"]
    if run.execution_id:
        lines.append(f"execution: {run.execution_id}")
    if failure.ledger is not None:
        lines.append(f"ledger: {failure.ledger.pk} / {failure.ledger.sk}")
    try:
        notifier.publish(
            f"ec2ops {env}: snapshot of {run.instance_id or 'unknown instance'} failed ({run.error})", "\n".join(lines)
        )
    except Exception:
        logger.exception("could not publish the failure notification")
        return False
    return True
