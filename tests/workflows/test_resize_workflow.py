"""ec2ops-resize, the synthesized state machine, executed on ec2ops.local with its Lambdas in-process."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from ec2ops.local import ExecutionResult, LocalCloud
from tests.workflows.iam import granted_actions, iam_action, is_granted

FROM, TO, FALLBACK = "t3.2xlarge", "c7i.8xlarge", "c6i.8xlarge"


def resize(cloud: LocalCloud, iid: str, **fields: Any) -> ExecutionResult:
    payload = {"instance_id": iid, "target_type": TO, "snapshot": False, "reason": "phase 2"} | fields
    return cloud.run("resize", payload)


def lock_item(cloud: LocalCloud, iid: str) -> list[dict[str, Any]]:
    return cloud.ledger_items(f"lock#{iid}")


def ends_running_on(cloud: LocalCloud, iid: str, instance_type: str) -> None:
    instance = cloud.instance(iid)
    assert (instance["State"]["Name"], instance["InstanceType"]) == ("running", instance_type)
    assert lock_item(cloud, iid) == [], "the lock must be released"


# --- the story of the issue -------------------------------------------------------------------------------------


def test_upgrade_with_snapshot_ends_running_on_the_target_and_is_recorded(
    cloud: LocalCloud, record_property: Callable[[str, object], None]
) -> None:
    # Given a managed t3.2xlarge running a long job
    iid = cloud.launch_instance(FROM, extra_volumes_gib=(100,))
    # When it is resized to c7i.8xlarge with a snapshot first
    result = resize(cloud, iid, snapshot=True, reason="phase 2 needs 32 vCPUs")
    # Then it runs as c7i.8xlarge, the snapshots exist, the ledger and the topic say so
    assert result.status == "SUCCEEDED", result.cause
    ends_running_on(cloud, iid, TO)
    assert result.output["status"] == "resized"
    assert (result.output["from_type"], result.output["to_type"]) == (FROM, TO)
    assert len(result.output["snapshot_ids"]) == 2
    assert result.output["downtime_seconds"] > 30
    assert result.output["hourly_cost_delta"] > 1
    snapshots = cloud.ec2.describe_snapshots(SnapshotIds=result.output["snapshot_ids"])["Snapshots"]
    assert {s["State"] for s in snapshots} == {"completed"}
    kinds = [item["kind"] for item in cloud.ledger_items(f"instance#{iid}")]
    assert "resize" in kinds and "snapshot" in kinds
    assert any(TO in (note["message"] or "") for note in cloud.notifications())
    # and the wait loops polled while EC2 was stopping and starting it
    history = cloud.instance_history(iid)
    assert history[-4:] == ["stopping", "stopped", "pending", "running"]
    assert result.counts.states_entered["WaitPoll"] >= 4
    record_property(  # shown in the test run's "figures" section (tests/conftest.py)
        "figure",
        f"resize happy path (with snapshot): {result.counts.state_transitions} state transitions, "
        f"{result.counts.states_entered['WaitPoll']} polls, {sum(result.counts.lambda_invocations.values())} Lambda "
        f"invocations, {sum(result.counts.api_calls.values())} AWS calls",
    )


def test_a_stopped_instance_is_only_modified_and_stays_stopped(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance(FROM)
    cloud.ec2.stop_instances(InstanceIds=[iid])
    cloud.clock.advance(minutes=2)
    result = resize(cloud, iid)
    assert result.status == "SUCCEEDED", result.cause
    instance = cloud.instance(iid)
    assert (instance["State"]["Name"], instance["InstanceType"]) == ("stopped", TO)
    assert "pending" not in cloud.instance_history(iid)[-3:]


def test_same_type_is_unchanged_and_dry_run_only_plans(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance(FROM)
    unchanged = resize(cloud, iid, target_type=FROM)
    planned = resize(cloud, iid, dry_run=True)
    assert (unchanged.status, unchanged.output["status"]) == ("SUCCEEDED", "unchanged")
    assert (planned.status, planned.output["status"]) == ("SUCCEEDED", "planned")
    assert planned.output["plan"]["prices"][TO] > planned.output["plan"]["prices"][FROM]
    assert "stopping" not in cloud.instance_history(iid)
    ends_running_on(cloud, iid, FROM)


# --- refusals: named error, instance never stopped, nothing created -------------------------------------------


REFUSALS = [
    ("malformed-id", {"instance_id": "i-xyz"}, "InvalidInput", "instance_id"),
    ("unknown-instance", {"instance_id": "i-0123456789abcdef0"}, "InstanceNotFound", "i-0123456789abcdef0"),
    ("unmanaged", {"instance_id": "<unmanaged>"}, "NotManaged", "ec2ops:managed"),
    ("auto-scaling", {"instance_id": "<asg>"}, "UnsupportedInstance", "Auto Scaling"),
    ("spot", {"instance_id": "<spot>"}, "UnsupportedInstance", "spot"),
    ("stop-protected", {"instance_id": "<protected>"}, "StopProtected", "stop"),
    ("pending", {"instance_id": "<pending>"}, "InvalidInstanceState", "pending"),
    ("unknown-type", {"target_type": "c7x.huge"}, "UnknownInstanceType", "c7x.huge"),
    ("not-offered", {"target_type": "trn1.32xlarge"}, "TypeNotOffered", "us-east-1a"),
    ("architecture", {"target_type": "c7g.8xlarge"}, "IncompatibleType", "arm64"),
    ("bad-fallback", {"fallback_types": ["c7g.8xlarge"]}, "IncompatibleType", "c7g.8xlarge"),
    ("bad-revert", {"revert_after_hours": -1}, "InvalidInput", "revert_after_hours"),
    ("unknown-field", {"revert_after": 5}, "InvalidInput", "revert_after"),
]


@pytest.mark.parametrize(("payload", "error", "says"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusals_fail_with_a_named_error_and_touch_nothing(
    cloud: LocalCloud, payload: dict[str, Any], error: str, says: str
) -> None:
    instances = {
        "<managed>": cloud.launch_instance(FROM, availability_zone="us-east-1a"),
        "<unmanaged>": cloud.launch_instance(FROM, managed=False),
        "<asg>": cloud.launch_instance(FROM, tags={"aws:autoscaling:groupName": "workers"}),
        "<spot>": cloud.launch_instance(FROM, market="spot"),
        "<protected>": cloud.launch_instance(FROM),
        "<pending>": cloud.launch_instance(FROM, running=False),
    }
    cloud.ec2.modify_instance_attribute(InstanceId=instances["<protected>"], DisableApiStop={"Value": True})
    text = json.dumps({"instance_id": "<managed>", "target_type": TO, "reason": "x", "snapshot": True} | payload)
    for placeholder, iid in instances.items():
        text = text.replace(placeholder, iid)
    before = {s["SnapshotId"] for s in cloud.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    result = cloud.run("resize", json.loads(text))
    assert (result.status, result.error) == ("FAILED", error)
    assert says in (result.cause or "")
    for iid in instances.values():
        assert "stopping" not in cloud.instance_history(iid)
        assert lock_item(cloud, iid) == []
    assert {s["SnapshotId"] for s in cloud.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]} == before


# --- capacity ---------------------------------------------------------------------------------------------------


def test_no_capacity_on_start_moves_to_the_first_fallback_that_starts(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance(FROM)
    cloud.inject_fault("ec2", "StartInstances", "InsufficientInstanceCapacity")
    result = resize(cloud, iid, fallback_types=[FALLBACK])
    assert result.status == "SUCCEEDED", result.cause
    ends_running_on(cloud, iid, FALLBACK)
    assert result.output["to_type"] == FALLBACK


def test_a_start_that_silently_falls_back_to_stopped_counts_as_no_capacity(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance(FROM)
    cloud.fall_back_on_next_start(instance_id=iid)
    result = resize(cloud, iid, fallback_types=[FALLBACK])
    assert result.status == "SUCCEEDED", result.cause
    ends_running_on(cloud, iid, FALLBACK)


def test_no_capacity_and_no_fallback_rolls_back_to_the_original_type(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance(FROM)
    cloud.inject_fault("ec2", "StartInstances", "InsufficientInstanceCapacity")
    result = resize(cloud, iid)
    assert (result.status, result.error) == ("FAILED", "ResizeRolledBack")
    assert "InsufficientInstanceCapacity" in (result.cause or "")
    ends_running_on(cloud, iid, FROM)
    assert [i["kind"] for i in cloud.ledger_items(f"instance#{iid}")] == ["resize-rolled-back"]


def test_a_reservation_is_made_before_the_stop_and_released_after(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance(FROM, availability_zone="us-east-1a")
    cloud.set_reservable(TO, "us-east-1a", False)
    result = resize(cloud, iid, reserve_capacity=True, fallback_types=[FALLBACK])
    assert result.status == "SUCCEEDED", result.cause
    ends_running_on(cloud, iid, FALLBACK)
    reservations = cloud.ec2.describe_capacity_reservations()["CapacityReservations"]
    assert [(r["InstanceType"], r["State"], r["InstanceMatchCriteria"]) for r in reservations] == [
        (FALLBACK, "cancelled", "open")
    ]


def test_nothing_reservable_stops_before_touching_the_instance(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance(FROM, availability_zone="us-east-1a")
    cloud.set_reservable(TO, "us-east-1a", False)
    result = resize(cloud, iid, reserve_capacity=True)
    assert (result.status, result.error) == ("FAILED", "CapacityUnavailable")
    assert "stopping" not in cloud.instance_history(iid)
    ends_running_on(cloud, iid, FROM)


# --- faults at each mutating step: always running on a tested type, lock released, ledger says why ------------


@pytest.mark.parametrize(
    ("service", "operation", "code", "after"),
    [
        ("ec2", "StopInstances", "UnauthorizedOperation", 0),
        ("ec2", "ModifyInstanceAttribute", "InvalidParameterCombination", 0),
        ("ec2", "StartInstances", "UnauthorizedOperation", 0),
        (
            "lambda",
            "Invoke",
            "ServiceUnavailable",
            4,
        ),  # the third drive invocation fails (plan, lock, drive, drive pass)
    ],
    ids=["stop", "modify", "start", "lambda"],
)
def test_a_fault_at_a_mutating_step_ends_running_on_the_original_type(
    cloud: LocalCloud, service: str, operation: str, code: str, after: int
) -> None:
    iid = cloud.launch_instance(FROM)
    cloud.inject_fault(service, operation, code, after=after)
    result = resize(cloud, iid)
    assert result.status == "FAILED"
    assert result.error in ("ResizeRolledBack", "ResizeFailed", "RollbackFailed") or result.error == code
    ends_running_on(cloud, iid, FROM)
    assert cloud.ledger_items(f"instance#{iid}"), "the ledger says what happened"


def test_failing_status_checks_roll_back(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance(FROM)
    cloud.impair_next_start(instance_id=iid)
    result = resize(cloud, iid)
    assert (result.status, result.error) == ("FAILED", "ResizeRolledBack")
    assert "StatusChecksFailed" in (result.cause or "")
    ends_running_on(cloud, iid, FROM)


def test_a_failed_snapshot_stops_the_resize_before_the_instance_is_touched(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance(FROM)
    cloud.fail_next_snapshots()
    result = resize(cloud, iid, snapshot=True)
    assert (result.status, result.error) == ("FAILED", "SnapshotFailed")
    assert "stopping" not in cloud.instance_history(iid)
    ends_running_on(cloud, iid, FROM)


# --- revert and concurrency ---------------------------------------------------------------------------------------


def test_revert_after_55_hours_brings_it_back_by_itself(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance(FROM)
    result = resize(cloud, iid, revert_after_hours=55)
    assert result.status == "SUCCEEDED", result.cause
    assert result.output["revert_at"]
    cloud.clock.advance(hours=54)
    assert cloud.instance(iid)["InstanceType"] == TO
    cloud.clock.advance(hours=1, minutes=1)
    reverts = [r for r in cloud.wait_all() if r.arn != result.arn]
    assert [r.status for r in reverts] == ["SUCCEEDED"]
    ends_running_on(cloud, iid, FROM)


def test_a_later_manual_resize_replaces_the_revert_schedule(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance(FROM)
    assert resize(cloud, iid, revert_after_hours=55).status == "SUCCEEDED"
    assert resize(cloud, iid, target_type=FALLBACK).status == "SUCCEEDED"
    assert cloud.client("scheduler").list_schedules()["Schedules"] == []
    cloud.clock.advance(hours=60)
    assert cloud.instance(iid)["InstanceType"] == FALLBACK


def test_two_resizes_at_once_exactly_one_proceeds(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance(FROM)
    first = cloud.start("resize", {"instance_id": iid, "target_type": TO, "snapshot": False, "reason": "a"})
    second = cloud.start("resize", {"instance_id": iid, "target_type": FALLBACK, "snapshot": False, "reason": "b"})
    results = [cloud.wait(first), cloud.wait(second)]
    assert sorted(r.status for r in results) == ["FAILED", "SUCCEEDED"]
    refused = next(r for r in results if r.status == "FAILED")
    winner = next(r for r in results if r.status == "SUCCEEDED")
    assert refused.error == "InstanceLocked"
    assert winner.arn in (refused.cause or "")
    ends_running_on(cloud, iid, winner.output["to_type"])


# --- least privilege, proven by what really ran ----------------------------------------------------------------


def test_every_call_each_resize_lambda_made_is_granted_to_its_own_role(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance(FROM)
    cloud.inject_fault("ec2", "StartInstances", "InsufficientInstanceCapacity")
    resize(cloud, iid, reserve_capacity=True, revert_after_hours=2)
    resize(cloud, iid, fallback_types=[FALLBACK], revert_after_hours=2)
    called = {f: c for f, c in cloud.counter.by_function.items() if f.startswith("ec2ops-resize")}
    assert set(called) == {"ec2ops-resize-plan", "ec2ops-resize-lock", "ec2ops-resize-drive", "ec2ops-resize-finish"}
    for function, calls in called.items():
        granted = granted_actions(cloud.app.template, cloud.app.function_roles[function])
        missing = [iam_action(call) for call in calls if not is_granted(iam_action(call), granted)]
        assert missing == [], f"{function} called {missing} without a grant"
