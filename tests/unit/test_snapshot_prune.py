"""Prune: older ec2ops sets beyond retention go; hand-made snapshots, other instances' and AMI-used sets stay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ec2ops_lambda.handlers import snapshot as handlers

from tests.unit.world import FakeLambdaContext, days_ago, existing_snapshot_ids, set_started, use_in_ami

Launch = Callable[..., str]
Taken = Callable[..., tuple[dict[str, Any], list[str]]]


@pytest.fixture
def history(launch: Launch, taken: Taken) -> Callable[..., tuple[dict[str, Any], dict[str, list[str]]]]:
    """Sets of one instance taken `ages` days ago, oldest first; returns the newest plan and each set's ids."""

    def _history(ages: dict[str, float], **fields: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
        instance_id = launch(data_volumes_gib=(10,))
        sets: dict[str, list[str]] = {}
        plan: dict[str, Any] = {}
        for change_id, age in sorted(ages.items(), key=lambda item: -item[1]):
            plan, sets[change_id] = taken(instance_id, change_id, **fields)
            set_started(sets[change_id], days_ago(age))
        return plan, sets

    return _history


def prune(context: FakeLambdaContext, plan: dict[str, Any]) -> dict[str, Any]:
    return handlers.prune({"plan": plan}, context)


def test_prune_by_count_deletes_only_the_oldest_sets(
    history: Callable[..., Any], ec2: Any, context: FakeLambdaContext
) -> None:
    # Given four daily sets of an instance, kept by count only
    plan, sets = history({"day-0": 3, "day-1": 2, "day-2": 1, "day-3": 0}, retain={"count": 2, "days": None})
    # When the newest execution prunes
    result = prune(context, plan)
    # Then the two oldest sets are gone, the two newest remain
    assert result["deleted_sets"] == ["day-1", "day-0"]  # newest first, as kept_sets
    assert sorted(result["deleted"]) == sorted(sets["day-0"] + sets["day-1"])
    assert result["kept_sets"] == ["day-3", "day-2"]
    assert result["protected"] == []
    assert existing_snapshot_ids(ec2) == set(sets["day-2"] + sets["day-3"])


def test_prune_by_days_deletes_sets_past_the_limit(
    history: Callable[..., Any], ec2: Any, context: FakeLambdaContext
) -> None:
    plan, sets = history({"d0": 40, "d10": 30, "d20": 20, "d40": 0}, retain={"count": None, "days": 25})
    result = prune(context, plan)
    assert sorted(result["deleted_sets"]) == ["d0", "d10"]
    assert existing_snapshot_ids(ec2) == set(sets["d20"] + sets["d40"])


def test_prune_never_touches_a_snapshot_ec2ops_did_not_make(
    launch: Launch, taken: Taken, ec2: Any, context: FakeLambdaContext
) -> None:
    # Given an old ec2ops set, a hand-made snapshot, one tagged like ec2ops but not made by it,
    # and another instance's old ec2ops set
    instance_id = launch()
    old_plan, old_set = taken(instance_id, "old", retain={"count": 1, "days": None})
    set_started(old_set, days_ago(100))
    volume_id = old_plan["volumes"][0]["volume_id"]
    by_hand = ec2.create_snapshot(VolumeId=volume_id, Description="taken by hand")["SnapshotId"]
    lookalike = ec2.create_snapshot(
        VolumeId=volume_id,
        TagSpecifications=[
            {
                "ResourceType": "snapshot",
                "Tags": [
                    {"Key": "ec2ops:instance-id", "Value": instance_id},
                    {"Key": "ec2ops:change-id", "Value": "x"},
                ],
            }
        ],
    )["SnapshotId"]
    set_started([by_hand, lookalike], days_ago(100))
    _, other_set = taken(launch(), "other", retain={"count": 1, "days": None})
    set_started(other_set, days_ago(100))
    plan, new_set = taken(instance_id, "new", retain={"count": 1, "days": None})
    # When the instance's newest execution prunes
    result = prune(context, plan)
    # Then only its own old ec2ops set is gone
    assert result["deleted"] == old_set
    assert existing_snapshot_ids(ec2) == {by_hand, lookalike, *other_set, *new_set}


def test_a_set_used_by_an_ami_is_protected(history: Callable[..., Any], ec2: Any, context: FakeLambdaContext) -> None:
    # Given an old set whose root snapshot an AMI was built from
    plan, sets = history({"golden": 10, "plain": 5, "new": 0}, retain={"count": 1, "days": None})
    use_in_ami(ec2, sets["golden"][0])
    # When pruning keeps only the newest set
    result = prune(context, plan)
    # Then the AMI's set stays whole, reported as protected; the plain old one goes
    assert result["deleted_sets"] == ["plain"]
    assert result["protected"] == sorted(sets["golden"])
    assert result["kept_sets"] == ["new", "golden"]
    assert set(sets["golden"]) <= existing_snapshot_ids(ec2)


def test_a_snapshot_ec2_refuses_to_delete_as_in_use_is_protected_not_a_failure(
    history: Callable[..., Any], ec2: Any, context: FakeLambdaContext
) -> None:
    # Given an old set with a snapshot an AMI took while the prune ran (invisible when the AMIs were listed)
    plan, sets = history({"old": 10, "new": 0}, retain={"count": 1, "days": None})
    from tests.unit.world import moto_ec2

    in_use = sets["old"][0]
    image_id = ec2.register_image(Name="registered-meanwhile", RootDeviceName="/dev/xvda")["ImageId"]
    moto_ec2().snapshots[in_use].from_ami = image_id
    # When pruning
    result = prune(context, plan)
    # Then what could be deleted is, the in-use snapshot stays and is reported, and the set counts as kept
    assert result["protected"] == [in_use]
    assert in_use not in result["deleted"]
    assert "old" in result["kept_sets"] and "old" not in result["deleted_sets"]
    assert in_use in existing_snapshot_ids(ec2)


def test_prune_without_limits_keeps_every_set(
    history: Callable[..., Any], ec2: Any, context: FakeLambdaContext
) -> None:
    plan, sets = history({"a": 400, "b": 200, "c": 0}, retain={"count": None, "days": None})
    result = prune(context, plan)
    assert result == {"deleted": [], "deleted_sets": [], "kept_sets": ["c", "b", "a"], "protected": []}
    assert existing_snapshot_ids(ec2) == {snapshot_id for ids in sets.values() for snapshot_id in ids}


def test_prune_never_deletes_the_executions_own_set(
    history: Callable[..., Any], ec2: Any, context: FakeLambdaContext
) -> None:
    # Given the execution's set stamped older than another (clock skew between EC2 and the plan)
    plan, sets = history({"mine": 0, "other": 0}, retain={"count": 1, "days": None})
    set_started(sets["other"], days_ago(0))
    set_started(sets["mine"], days_ago(1))
    plan = {**plan, "change_id": "mine"}
    result = prune(context, plan)
    assert "mine" in result["kept_sets"]
    assert set(sets["mine"]) <= existing_snapshot_ids(ec2)
