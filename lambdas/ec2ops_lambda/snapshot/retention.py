"""Which ec2ops snapshot sets of an instance to delete: pure, so the rule of docs/snapshot.md is tested alone.

A set is deleted only when it is outside every limit given: not among the newest `count` sets and older than
`days` (a limit that is None keeps nothing; with neither limit, nothing is deleted). Never deleted: the newest
set, a set named in `always_keep` (the execution's own), a set still being created (another execution owns it),
a set with a snapshot an AMI uses (reported as protected).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ec2ops_lambda.models.common import as_utc, tags_dict

CREATED_BY_TAG = "ec2ops:created-by"
CREATED_BY_VALUE = "ec2ops"
INSTANCE_TAG = "ec2ops:instance-id"
CHANGE_TAG = "ec2ops:change-id"


@dataclass(frozen=True)
class SnapshotSet:
    """The snapshots one execution took of one instance, created when its first snapshot started."""

    change_id: str
    created: datetime
    snapshot_ids: tuple[str, ...]
    used_by_image: bool = False
    in_progress: bool = False


@dataclass(frozen=True)
class Decision:
    """Every set lands in exactly one list; each list is newest first."""

    keep: tuple[SnapshotSet, ...]
    delete: tuple[SnapshotSet, ...]
    protected: tuple[SnapshotSet, ...]


def is_ec2ops_snapshot_of(snapshot: Mapping[str, Any], instance_id: str) -> bool:
    """Only snapshots ec2ops made of this instance are ever considered; a hand-made one never is."""
    tags = tags_dict(snapshot.get("Tags"))
    return (
        tags.get(CREATED_BY_TAG) == CREATED_BY_VALUE
        and tags.get(INSTANCE_TAG) == instance_id
        and bool(tags.get(CHANGE_TAG))
    )


def group_sets(
    snapshots: Iterable[Mapping[str, Any]], *, instance_id: str, used_by_images: Collection[str] = ()
) -> list[SnapshotSet]:
    """DescribeSnapshots items grouped by change id; any but this instance's ec2ops snapshots are dropped."""
    members: dict[str, list[Mapping[str, Any]]] = {}
    for snapshot in snapshots:
        if not is_ec2ops_snapshot_of(snapshot, instance_id):
            continue
        members.setdefault(tags_dict(snapshot.get("Tags"))[CHANGE_TAG], []).append(snapshot)
    sets = []
    for change_id, group in members.items():
        ids = tuple(sorted(str(snapshot["SnapshotId"]) for snapshot in group))
        sets.append(
            SnapshotSet(
                change_id=change_id,
                created=min(as_utc(snapshot["StartTime"]) for snapshot in group),
                snapshot_ids=ids,
                used_by_image=any(snapshot_id in used_by_images for snapshot_id in ids),
                in_progress=any(snapshot.get("State") == "pending" for snapshot in group),
            )
        )
    return sets


def choose(
    sets: Sequence[SnapshotSet],
    *,
    count: int | None,
    days: int | None,
    now: datetime,
    always_keep: Collection[str] = (),
) -> Decision:
    """Split the sets into keep / delete / protected by the retention rule."""
    if count is not None and count < 1:
        raise ValueError(f"count must be at least 1 or None (got {count})")
    if days is not None and days < 1:
        raise ValueError(f"days must be at least 1 or None (got {days})")
    newest_first = sorted(sets, key=lambda s: (s.created, s.change_id), reverse=True)
    max_age = timedelta(days=days) if days is not None else None
    keep: list[SnapshotSet] = []
    delete: list[SnapshotSet] = []
    protected: list[SnapshotSet] = []
    for rank, snapshot_set in enumerate(newest_first):
        within_count = count is not None and rank < count
        within_days = max_age is not None and as_utc(now) - snapshot_set.created <= max_age
        no_limit = count is None and days is None
        if (
            rank == 0
            or no_limit
            or within_count
            or within_days
            or snapshot_set.change_id in always_keep
            or snapshot_set.in_progress
        ):
            keep.append(snapshot_set)
        elif snapshot_set.used_by_image:
            protected.append(snapshot_set)
        else:
            delete.append(snapshot_set)
    return Decision(keep=tuple(keep), delete=tuple(delete), protected=tuple(protected))
