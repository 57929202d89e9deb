"""The retention rule of docs/snapshot.md, on plain data: which sets go, which stay, which an AMI protects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ec2ops_lambda.snapshot.retention import Decision, SnapshotSet, choose, group_sets

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
INSTANCE = "i-0123456789abcdef0"


def aged(change_id: str, days: float, **flags: bool) -> SnapshotSet:
    return SnapshotSet(
        change_id=change_id,
        created=NOW - timedelta(days=days),
        snapshot_ids=(f"snap-{change_id}-a", f"snap-{change_id}-b"),
        **flags,
    )


def names(sets: tuple[SnapshotSet, ...]) -> list[str]:
    return [s.change_id for s in sets]


def decide(sets: list[SnapshotSet], **limits: Any) -> Decision:
    return choose(sets, now=NOW, **limits)


def test_count_alone_keeps_exactly_the_newest_sets() -> None:
    # Given five daily sets
    sets = [aged(f"d{age}", age) for age in (4, 3, 2, 1, 0)]
    # When only a count of 2 is given
    decision = decide(sets, count=2, days=None)
    # Then the two newest stay and the three oldest go
    assert names(decision.keep) == ["d0", "d1"]
    assert names(decision.delete) == ["d2", "d3", "d4"]
    assert decision.protected == ()


def test_days_alone_deletes_sets_older_than_the_limit() -> None:
    # Given sets 40, 30, 20 and 0 days old
    sets = [aged(f"d{age}", age) for age in (40, 30, 20, 0)]
    # When only 25 days are kept
    decision = decide(sets, count=None, days=25)
    # Then the sets past 25 days go
    assert names(decision.keep) == ["d0", "d20"]
    assert names(decision.delete) == ["d30", "d40"]


def test_with_both_limits_a_set_goes_only_when_outside_both() -> None:
    # Given sets 0, 1, 2, 3, 20 and 30 days old
    sets = [aged(f"d{age}", age) for age in (30, 20, 3, 2, 1, 0)]
    # When the newest 3 and anything younger than 10 days are kept
    decision = decide(sets, count=3, days=10)
    # Then d3 stays for its age though it is not among the newest 3; d20 and d30 are outside both
    assert names(decision.keep) == ["d0", "d1", "d2", "d3"]
    assert names(decision.delete) == ["d20", "d30"]


def test_with_both_limits_the_count_keeps_old_sets_the_days_would_drop() -> None:
    sets = [aged(f"d{age}", age) for age in (7, 6, 5, 0)]
    decision = decide(sets, count=3, days=1)
    assert names(decision.keep) == ["d0", "d5", "d6"]
    assert names(decision.delete) == ["d7"]


def test_the_newest_set_is_never_deleted_even_when_past_every_limit() -> None:
    # Given only old sets
    sets = [aged("old", 50), aged("older", 60)]
    # When the day limit alone would drop both
    decision = decide(sets, count=None, days=7)
    # Then the newest of them stays
    assert names(decision.keep) == ["old"]
    assert names(decision.delete) == ["older"]


def test_a_set_an_ami_uses_is_protected_not_deleted() -> None:
    sets = [aged("golden", 90, used_by_image=True), aged("plain", 80), aged("new", 0)]
    decision = decide(sets, count=1, days=None)
    assert names(decision.protected) == ["golden"]
    assert names(decision.delete) == ["plain"]
    assert names(decision.keep) == ["new"]


def test_without_any_limit_every_set_is_kept() -> None:
    sets = [aged(f"d{age}", age) for age in (400, 30, 0)]
    decision = decide(sets, count=None, days=None)
    assert names(decision.keep) == ["d0", "d30", "d400"]
    assert decision.delete == ()


def test_a_set_exactly_as_old_as_the_limit_is_kept() -> None:
    decision = decide([aged("edge", 30), aged("over", 30.001), aged("new", 0)], count=None, days=30)
    assert names(decision.keep) == ["new", "edge"]
    assert names(decision.delete) == ["over"]


def test_the_executions_own_set_and_sets_still_being_created_are_kept() -> None:
    # Given the execution's own set stamped older than others (clock skew), and another execution's set in progress
    sets = [aged("mine", 10), aged("running", 9, in_progress=True), aged("newest", 0), aged("stale", 8)]
    decision = decide(sets, count=1, days=None, always_keep={"mine"})
    assert names(decision.keep) == ["newest", "running", "mine"]
    assert names(decision.delete) == ["stale"]


@pytest.mark.parametrize("limits", [{"count": 0, "days": None}, {"count": None, "days": 0}])
def test_a_limit_below_one_is_a_programming_error(limits: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        decide([aged("a", 1)], **limits)


# --- grouping EC2's snapshots into sets --------------------------------------------------------------------------


def ec2_snapshot(snapshot_id: str, minutes_ago: int, **tags: str) -> dict[str, Any]:
    return {
        "SnapshotId": snapshot_id,
        "StartTime": NOW - timedelta(minutes=minutes_ago),
        "State": "completed",
        "Tags": [{"Key": key.replace("_", "-").replace("ec2ops-", "ec2ops:"), "Value": v} for key, v in tags.items()],
    }


def ours(snapshot_id: str, change_id: str, minutes_ago: int = 0, instance: str = INSTANCE) -> dict[str, Any]:
    return ec2_snapshot(
        snapshot_id,
        minutes_ago,
        ec2ops_created_by="ec2ops",
        ec2ops_instance_id=instance,
        ec2ops_change_id=change_id,
    )


def test_sets_group_by_change_id_and_start_at_their_first_snapshot() -> None:
    snapshots = [ours("snap-2", "a", minutes_ago=5), ours("snap-1", "a", minutes_ago=7), ours("snap-3", "b")]
    sets = {s.change_id: s for s in group_sets(snapshots, instance_id=INSTANCE)}
    assert sets["a"].snapshot_ids == ("snap-1", "snap-2")
    assert sets["a"].created == NOW - timedelta(minutes=7)
    assert sets["b"].snapshot_ids == ("snap-3",)


def test_only_this_instances_ec2ops_snapshots_are_considered() -> None:
    snapshots = [
        ours("snap-mine", "a"),
        ours("snap-other-instance", "a", instance="i-0fedcba9876543210"),
        ec2_snapshot("snap-by-hand", 0, ec2ops_instance_id=INSTANCE, ec2ops_change_id="a"),
        ec2_snapshot("snap-no-change", 0, ec2ops_created_by="ec2ops", ec2ops_instance_id=INSTANCE),
        ec2_snapshot("snap-untagged", 0),
    ]
    sets = group_sets(snapshots, instance_id=INSTANCE)
    assert [s.snapshot_ids for s in sets] == [("snap-mine",)]


def test_a_set_with_one_snapshot_in_an_ami_is_marked_used_and_one_pending_in_progress() -> None:
    pending = {**ours("snap-3", "b"), "State": "pending"}
    sets = {
        s.change_id: s
        for s in group_sets(
            [ours("snap-1", "a"), ours("snap-2", "a"), pending],
            instance_id=INSTANCE,
            used_by_images={"snap-2"},
        )
    }
    assert sets["a"].used_by_image and not sets["a"].in_progress
    assert sets["b"].in_progress and not sets["b"].used_by_image
