"""CheckSnapshots step: is the set complete, still going, broken, or past its deadline?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from aws_lambda_powertools import Logger

from ec2ops_lambda import clock
from ec2ops_lambda.aws.ec2 import Ec2
from ec2ops_lambda.errors import SnapshotFailed, SnapshotTimeout
from ec2ops_lambda.models.common import iso
from ec2ops_lambda.models.snapshot import Progress, ProgressEvent, SnapshotStatus

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import SnapshotTypeDef

logger = Logger(service="ec2ops-snapshot", child=True)


def _status(snapshot: SnapshotTypeDef) -> SnapshotStatus:
    """One DescribeSnapshots item in the shape the wait loop and Record read."""
    return SnapshotStatus(
        snapshot_id=snapshot["SnapshotId"],
        volume_id=snapshot.get("VolumeId", ""),
        state=snapshot.get("State", "pending"),
        progress=snapshot.get("Progress", ""),
        size_gib=snapshot.get("VolumeSize", 0),
        start_time=snapshot.get("StartTime"),
    )


def check_progress(event: ProgressEvent, *, ec2: Ec2) -> Progress:
    """`completed` or `pending`; SnapshotFailed on an error or a lost snapshot; SnapshotTimeout past the deadline."""
    plan = event.plan
    logger.append_keys(instance_id=plan.instance_id, change_id=plan.change_id)
    ids = list(dict.fromkeys(event.snapshot_ids))
    if not ids:
        raise SnapshotFailed(
            f"CreateSnapshots returned no snapshot for {plan.label}: there is nothing to wait for. "
            "Check that the instance still has EBS volumes attached, then start again."
        )
    found = {snapshot["SnapshotId"]: snapshot for snapshot in ec2.snapshots_by_id(ids)}
    missing = [snapshot_id for snapshot_id in ids if snapshot_id not in found]
    if missing:
        raise SnapshotFailed(
            f"snapshot {', '.join(missing)} of {plan.label} no longer exists (deleted while the workflow waited?): "
            "the set is incomplete and useless. Start the workflow again."
        )
    statuses = [_status(found[snapshot_id]) for snapshot_id in ids]
    failed = [found[status.snapshot_id] for status in statuses if status.state == "error"]
    if failed:
        what = "; ".join(
            f"snapshot {s['SnapshotId']} of volume {s.get('VolumeId', '?')} ended in state 'error': "
            f"{s.get('StateMessage') or 'EC2 gave no reason'}"
            for s in failed
        )
        raise SnapshotFailed(
            f"{what}. A crash-consistent set of {plan.label} is only useful whole, so this set is discarded. "
            "Start the workflow again; if it fails again, check the volume's status checks."
        )
    total = sum(status.size_gib for status in statuses)
    state: Literal["completed", "pending"] = (
        "completed" if all(status.state == "completed" for status in statuses) else "pending"
    )
    if state == "pending" and clock.utcnow() > plan.deadline:
        late = ", ".join(
            f"{status.snapshot_id} ({status.volume_id}) {status.progress or status.state}"
            for status in statuses
            if status.state != "completed"
        )
        raise SnapshotTimeout(
            f"the snapshots of {plan.label} did not complete by the deadline {iso(plan.deadline)} "
            f"(requested {iso(plan.requested_at)}): still going: {late}. The incomplete set is discarded. "
            "Start again when the volumes are less busy, or raise snapshot_timeout_minutes in cdk.json."
        )
    logger.info("snapshot progress", extra={"state": state, "snapshots": [s.model_dump(mode="json") for s in statuses]})
    return Progress(state=state, snapshots=statuses, total_size_gib=total)
