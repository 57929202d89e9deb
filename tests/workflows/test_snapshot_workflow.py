"""ec2ops-snapshot, the synthesized state machine, executed on ec2ops.local with its Lambdas in-process."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ec2ops.local import LocalCloud
from tests.workflows.iam import granted_actions, iam_action, is_granted


def ec2ops_snapshots(cloud: LocalCloud, instance_id: str) -> list[dict[str, Any]]:
    snapshots: list[dict[str, Any]] = cloud.ec2.describe_snapshots(
        OwnerIds=["self"],
        Filters=[
            {"Name": "tag:ec2ops:instance-id", "Values": [instance_id]},
        ],
    )["Snapshots"]
    return snapshots


def tags_of(snapshot: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in snapshot.get("Tags", [])}


def change_ids(cloud: LocalCloud, instance_id: str) -> set[str]:
    return {tags_of(s)["ec2ops:change-id"] for s in ec2ops_snapshots(cloud, instance_id)}


def own_snapshot_ids(cloud: LocalCloud) -> set[str]:
    """Every snapshot the account owns (moto's stock AMIs come with snapshots of their own)."""
    return {s["SnapshotId"] for s in cloud.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}


# --- the happy path ---------------------------------------------------------------------------------------


def test_snapshots_both_volumes_tags_them_records_and_notifies(cloud: LocalCloud) -> None:
    # Given a managed instance with a root volume and a data volume
    iid = cloud.launch_instance("t3.2xlarge", extra_volumes_gib=(100,))
    # When the snapshot workflow runs
    result = cloud.run("snapshot", {"instance_id": iid, "reason": "before kernel upgrade"}, name="snap-happy")
    # Then it succeeds with one snapshot per volume, completed and tagged
    assert result.status == "SUCCEEDED", result.cause
    assert len(result.output["snapshot_ids"]) == 2
    snapshots = ec2ops_snapshots(cloud, iid)
    assert sorted(s["SnapshotId"] for s in snapshots) == sorted(result.output["snapshot_ids"])
    assert {s["State"] for s in snapshots} == {"completed"}
    assert sorted(s["VolumeSize"] for s in snapshots) == [8, 100]
    for snapshot in snapshots:
        assert (
            tags_of(snapshot).items()
            >= {
                "ec2ops:created-by": "ec2ops",
                "ec2ops:instance-id": iid,
                "ec2ops:change-id": "snap-happy",
                "ec2ops:reason": "before kernel upgrade",
            }.items()
        )
    # and it really waited for the snapshots: the poll loop ran more than once
    assert result.counts.states_entered["WaitForSnapshots"] >= 2
    assert result.counts.lambda_invocations["ec2ops-snapshot-plan"] == 1
    assert result.counts.api_calls["ec2:CreateSnapshots"] == 1
    # and the ledger has the record, and the topic the notification
    items = cloud.ledger_items(f"instance#{iid}")
    assert [item["kind"] for item in items] == ["snapshot"]
    assert items[0]["change_id"] == "snap-happy"
    assert items[0]["why"] == "before kernel upgrade"
    assert sorted(items[0]["detail"]["snapshot_ids"]) == sorted(result.output["snapshot_ids"])
    notes = cloud.notifications()
    assert len(notes) == 1
    assert iid in notes[0]["message"]


def test_exclude_boot_snapshots_only_the_data_volume(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large", extra_volumes_gib=(50,))
    result = cloud.run("snapshot", {"instance_id": iid, "reason": "data only", "exclude_boot": True})
    assert result.status == "SUCCEEDED", result.cause
    assert [s["VolumeSize"] for s in ec2ops_snapshots(cloud, iid)] == [50]


# --- retention --------------------------------------------------------------------------------------------


def test_retention_by_count_keeps_the_newest_sets_and_never_touches_other_snapshots(
    cloud: LocalCloud,
) -> None:
    iid = cloud.launch_instance("t3.large", extra_volumes_gib=(10,))
    volume = cloud.instance(iid)["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    manual = cloud.ec2.create_snapshot(VolumeId=volume, Description="taken by hand")["SnapshotId"]
    for day in range(4):
        result = cloud.run(
            "snapshot",
            {"instance_id": iid, "reason": f"day {day}", "retain": {"count": 2, "days": None}},
            name=f"count-{day}",
        )
        assert result.status == "SUCCEEDED", result.cause
        cloud.clock.advance(days=1)
    assert change_ids(cloud, iid) == {"count-2", "count-3"}
    assert sorted(result.output["pruned_snapshot_ids"]) != []
    assert manual in {s["SnapshotId"] for s in cloud.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}


def test_retention_by_days_deletes_sets_older_than_the_limit(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large")
    # sets taken on days 0, 10, 20 and 40, keeping 25 days
    for name, days_until_next in (("d0", 10), ("d10", 10), ("d20", 20), ("d40", 0)):
        result = cloud.run(
            "snapshot", {"instance_id": iid, "reason": name, "retain": {"count": None, "days": 25}}, name=name
        )
        assert result.status == "SUCCEEDED", result.cause
        cloud.clock.advance(days=days_until_next)
    # on day 40, d0 (40 days old) and d10 (30) are past the limit; d20 (20) and d40 stay
    assert change_ids(cloud, iid) == {"d20", "d40"}


def test_a_set_used_by_an_ami_is_never_pruned(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large")
    first = cloud.run(
        "snapshot",
        {"instance_id": iid, "reason": "golden", "retain": {"count": 1, "days": None}},
        name="golden",
    )
    cloud.ec2.register_image(
        Name="golden-ami",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[
            {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": first.output["snapshot_ids"][0]}},
        ],
    )
    cloud.clock.advance(days=1)
    second = cloud.run(
        "snapshot", {"instance_id": iid, "reason": "next", "retain": {"count": 1, "days": None}}, name="next"
    )
    assert second.status == "SUCCEEDED", second.cause
    assert change_ids(cloud, iid) == {"golden", "next"}


# --- refusals: clear error, nothing created ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "error", "says"),
    [
        ({"reason": "x"}, "InvalidInput", "instance_id"),
        ({"instance_id": "i-nothex", "reason": "x"}, "InvalidInput", "instance_id"),
        ({"instance_id": "i-0123456789abcdef0", "reason": "x"}, "InstanceNotFound", "i-0123456789abcdef0"),
        ({"instance_id": "<managed>", "reason": "x", "retain": {"count": 0}}, "InvalidInput", "retain.count"),
        ({"instance_id": "<managed>", "reason": "x", "retain": {"days": -3}}, "InvalidInput", "retain.days"),
        ({"instance_id": "<managed>", "reason": ""}, "InvalidInput", "reason"),
        ({"instance_id": "<managed>", "reason": "x", "retian": {"count": 3}}, "InvalidInput", "retian"),
        ({"instance_id": "<unmanaged>", "reason": "x"}, "NotManaged", "ec2ops:managed"),
    ],
    ids=[
        "missing-id",
        "malformed-id",
        "unknown-instance",
        "count-zero",
        "negative-days",
        "empty-reason",
        "unknown-field",
        "unmanaged",
    ],
)
def test_bad_input_fails_with_a_clear_error_and_creates_nothing(
    cloud: LocalCloud,
    payload: dict[str, Any],
    error: str,
    says: str,
) -> None:
    managed = cloud.launch_instance("t3.large")
    unmanaged = cloud.launch_instance("t3.large", managed=False)
    substituted = json.loads(json.dumps(payload).replace("<managed>", managed).replace("<unmanaged>", unmanaged))
    before = own_snapshot_ids(cloud)
    result = cloud.run("snapshot", substituted)
    assert result.status == "FAILED"
    assert result.error == error
    assert says in (result.cause or "")
    assert own_snapshot_ids(cloud) == before
    assert result.counts.api_calls.get("ec2:CreateSnapshots", 0) == 0


# --- faults after the snapshot was asked for ------------------------------------------------------------------


def test_an_injected_create_snapshots_fault_fails_with_the_cause_and_records_it(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large")
    cloud.inject_fault("ec2", "CreateSnapshots", "SnapshotCreationPerVolumeRateExceeded")
    before = own_snapshot_ids(cloud)
    result = cloud.run("snapshot", {"instance_id": iid, "reason": "x"}, name="create-fault")
    assert result.status == "FAILED"
    assert "SnapshotCreationPerVolumeRateExceeded" in (result.cause or "")
    assert own_snapshot_ids(cloud) == before
    assert [item["kind"] for item in cloud.ledger_items(f"instance#{iid}")] == ["snapshot-failed"]
    assert any("create-fault" in (n["message"] or "") or iid in (n["message"] or "") for n in cloud.notifications())


def test_a_snapshot_ending_in_error_fails_the_execution_and_removes_the_incomplete_set(
    cloud: LocalCloud,
) -> None:
    iid = cloud.launch_instance("t3.large", extra_volumes_gib=(20,))
    cloud.fail_next_snapshots(times=1, message="Snapshot failed: volume I/O error")
    result = cloud.run("snapshot", {"instance_id": iid, "reason": "x"}, name="ends-in-error")
    assert result.status == "FAILED"
    assert result.error == "SnapshotFailed"
    assert "volume I/O error" in (result.cause or "")
    assert ec2ops_snapshots(cloud, iid) == []  # the half-good set is useless: removed
    failed = cloud.ledger_items(f"instance#{iid}")
    assert [item["kind"] for item in failed] == ["snapshot-failed"]


# --- least privilege, proven by what really ran --------------------------------------------------------------


def test_every_call_each_lambda_made_is_granted_to_its_own_role(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large", extra_volumes_gib=(10,))
    for _ in range(3):
        cloud.run("snapshot", {"instance_id": iid, "reason": "x", "retain": {"count": 1, "days": None}})
        cloud.clock.advance(days=1)
    cloud.fail_next_snapshots(times=1)
    cloud.run("snapshot", {"instance_id": iid, "reason": "x"})
    template = cloud.app.template
    called = cloud.counter.by_function
    assert set(called) >= {
        "ec2ops-snapshot-plan",
        "ec2ops-snapshot-progress",
        "ec2ops-snapshot-prune",
        "ec2ops-snapshot-record",
        "ec2ops-snapshot-record-failure",
    }
    for function, calls in called.items():
        granted = granted_actions(template, cloud.app.function_roles[function])
        missing = [iam_action(call) for call in calls if not is_granted(iam_action(call), granted)]
        assert missing == [], f"{function} called {missing} without a grant"


def test_notifications_are_still_readable_after_the_clock_jumps_days_ahead(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large")
    assert cloud.run("snapshot", {"instance_id": iid, "reason": "x"}).status == "SUCCEEDED"
    cloud.clock.advance(days=5)  # beyond SQS's default 4-day retention
    assert [iid in (note["message"] or "") for note in cloud.notifications()] == [True]
