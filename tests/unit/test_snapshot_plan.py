"""Plan: every refusal before anything is created, and the plan CreateSnapshots and the later steps follow."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from ec2ops_lambda import clock
from ec2ops_lambda.errors import ConfigurationError, InstanceNotFound, InvalidInput, NotManaged, NoVolumes
from ec2ops_lambda.handlers import snapshot as handlers

from tests.unit.world import FakeLambdaContext, existing_snapshot_ids, take_set

Launch = Callable[..., str]
Planned = Callable[..., dict[str, Any]]

FIXED_NOW = datetime(2025, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


def tags_of(plan: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in plan["tags"]}


# --- refusals: a clear error, nothing created ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_fields", "error", "says"),
    [
        ({"instance_id": "abc"}, InvalidInput, "instance_id: must look like i-0123456789abcdef0"),
        ({"foo": "bar"}, InvalidInput, "unknown field 'foo'"),
        ({"reason": ""}, InvalidInput, "reason: must not be empty"),
        ({"retain": {"count": 0}}, InvalidInput, "retain.count: must be at least 1 (got 0)"),
        ({"retain": {"days": 0}}, InvalidInput, "retain.days: must be at least 1 (got 0)"),
        ({"instance_id": "i-0123456789abcdef0"}, InstanceNotFound, "i-0123456789abcdef0 does not exist in us-east-1"),
    ],
    ids=["malformed-id", "unknown-field", "empty-reason", "count-zero", "days-zero", "missing-instance"],
)
def test_plan_refuses_bad_input_and_creates_nothing(
    launch: Launch,
    ec2: Any,
    context: FakeLambdaContext,
    request_fields: dict[str, Any],
    error: type[Exception],
    says: str,
) -> None:
    # Given a managed instance, and an execution input with one thing wrong
    instance_id = launch()
    request = {"instance_id": instance_id, "reason": "before kernel upgrade", **request_fields}
    # When the plan step runs, then it refuses with the error the state machine catches, saying what is wrong
    with pytest.raises(error) as refused:
        handlers.plan({"request": request, "change_id": "chg-1"}, context)
    assert says in str(refused.value)
    # and nothing was created
    assert existing_snapshot_ids(ec2) == set()


def test_plan_refuses_a_terminated_instance(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch()
    ec2.terminate_instances(InstanceIds=[instance_id])
    with pytest.raises(InstanceNotFound, match=f"instance {instance_id} is terminated"):
        planned(instance_id)
    assert existing_snapshot_ids(ec2) == set()


def test_plan_refuses_unmanaged_instance(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch(managed=False)
    with pytest.raises(NotManaged) as refused:
        planned(instance_id)
    assert "no ec2ops:managed tag" in str(refused.value)
    assert "add the tag ec2ops:managed=true" in str(refused.value)
    assert existing_snapshot_ids(ec2) == set()


def test_plan_refuses_a_managed_tag_that_is_not_exactly_true(launch: Launch, planned: Planned) -> None:
    instance_id = launch(managed=False, tags={"ec2ops:managed": "True"})
    with pytest.raises(NotManaged, match="its tag ec2ops:managed is 'True'"):
        planned(instance_id)


def test_plan_refuses_an_instance_without_volumes(launch: Launch, planned: Planned, ec2: Any) -> None:
    # Given a managed instance whose only volume was detached
    instance_id = launch()
    root = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    volume_id = root["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    ec2.detach_volume(VolumeId=volume_id, InstanceId=instance_id)
    # When / Then
    with pytest.raises(NoVolumes, match=f"instance {instance_id} has no EBS volume attached"):
        planned(instance_id)
    assert existing_snapshot_ids(ec2) == set()


def test_plan_refuses_exclude_boot_on_an_instance_with_only_a_root_volume(
    launch: Launch, planned: Planned, ec2: Any
) -> None:
    instance_id = launch()
    with pytest.raises(NoVolumes) as refused:
        planned(instance_id, exclude_boot=True)
    assert "only its root volume" in str(refused.value)
    assert "Set exclude_boot to false" in str(refused.value)
    assert existing_snapshot_ids(ec2) == set()


def test_plan_refuses_a_payload_without_the_execution_name(launch: Launch, context: FakeLambdaContext) -> None:
    instance_id = launch()
    with pytest.raises(InvalidInput, match="change_id"):
        handlers.plan({"request": {"instance_id": instance_id, "reason": "x"}}, context)


def test_plan_reports_a_misconfigured_function_by_variable(
    launch: Launch, planned: Planned, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SNAPSHOT_RETAIN_COUNT", "0")
    with pytest.raises(ConfigurationError, match="SNAPSHOT_RETAIN_COUNT: must be at least 1"):
        planned(launch())


# --- the plan ------------------------------------------------------------------------------------------------------


def test_plan_lists_root_and_data_volume_and_fixes_tags_retention_and_deadline(
    launch: Launch, planned: Planned, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a managed instance with an 8 GiB root volume and a 100 GiB data volume, at a known time
    instance_id = launch(data_volumes_gib=(100,))
    monkeypatch.setattr(clock, "utcnow", lambda: FIXED_NOW)
    # When it is planned
    plan = planned(instance_id, change_id="snap-happy")
    # Then both volumes are in the plan, root first
    assert [(v["device"], v["size_gib"], v["is_boot"]) for v in plan["volumes"]] == [
        ("/dev/sda1", 8, True),
        ("/dev/sdf", 100, False),
    ]
    assert all(v["volume_id"].startswith("vol-") for v in plan["volumes"])
    assert plan["instance_id"] == instance_id
    assert plan["change_id"] == "snap-happy"
    assert plan["reason"] == "before kernel upgrade"
    assert plan["exclude_boot"] is False
    assert plan["availability_zone"] == "us-east-1a"
    # and the defaults of the deployment fill the retention
    assert plan["retain"] == {"count": 7, "days": 30}
    # and the deadline is the timeout from now, both in ISO UTC
    assert plan["requested_at"] == "2025-03-01T09:30:15.123Z"
    assert plan["deadline"] == "2025-03-01T10:30:15.123Z"
    assert plan["description"] == f"ec2ops snapshot of {instance_id} (snap-happy): before kernel upgrade"
    assert tags_of(plan) == {
        "ec2ops:created-by": "ec2ops",
        "ec2ops:instance-id": instance_id,
        "ec2ops:change-id": "snap-happy",
        "ec2ops:reason": "before kernel upgrade",
        "ec2ops:workflow": "snapshot",
        "Name": "ec2ops web-1 snap-happy",
    }


def test_the_plans_tags_and_description_are_what_create_snapshots_puts_on_the_set(
    launch: Launch, planned: Planned, ec2: Any
) -> None:
    instance_id = launch(data_volumes_gib=(20,))
    plan = planned(instance_id)
    take_set(ec2, plan)
    snapshots = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert sorted(s["VolumeSize"] for s in snapshots) == [8, 20]
    for snapshot in snapshots:
        assert {t["Key"]: t["Value"] for t in snapshot["Tags"]} == tags_of(plan)
        assert snapshot["Description"] == plan["description"]


def test_plan_with_exclude_boot_holds_only_the_data_volumes(launch: Launch, planned: Planned) -> None:
    plan = planned(launch(data_volumes_gib=(50, 20)), exclude_boot=True)
    assert [(v["device"], v["size_gib"], v["is_boot"]) for v in plan["volumes"]] == [
        ("/dev/sdf", 50, False),
        ("/dev/sdg", 20, False),
    ]
    assert plan["exclude_boot"] is True


@pytest.mark.parametrize(
    ("retain", "expected"),
    [
        ({}, {"count": 3, "days": 14}),
        (None, {"count": 3, "days": 14}),
        ({"count": 5}, {"count": 5, "days": 14}),
        ({"days": 2}, {"count": 3, "days": 2}),
        ({"count": 3, "days": None}, {"count": 3, "days": None}),
        ({"count": None, "days": 25}, {"count": None, "days": 25}),
    ],
)
def test_plan_takes_retention_defaults_only_for_what_the_input_leaves_out(
    launch: Launch,
    planned: Planned,
    monkeypatch: pytest.MonkeyPatch,
    retain: dict[str, Any] | None,
    expected: dict[str, Any],
) -> None:
    monkeypatch.setenv("SNAPSHOT_RETAIN_COUNT", "3")
    monkeypatch.setenv("SNAPSHOT_RETAIN_DAYS", "14")
    plan = planned(launch(), retain=retain)
    assert plan["retain"] == expected


def test_plan_without_any_limit_keeps_everything_and_says_so(launch: Launch, planned: Planned) -> None:
    plan = planned(launch(), retain={"count": None, "days": None})
    assert plan["retain"] == {"count": None, "days": None}
    assert "keep every set" in plan["retain_summary"]
    assert "nothing is pruned" in plan["retain_summary"]


def test_plan_deadline_follows_the_timeout_setting(
    launch: Launch, planned: Planned, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SNAPSHOT_TIMEOUT_MINUTES", "15")
    monkeypatch.setattr(clock, "utcnow", lambda: FIXED_NOW)
    assert planned(launch())["deadline"] == "2025-03-01T09:45:15.123Z"


def test_plan_keeps_description_and_tags_within_ec2_limits(launch: Launch, planned: Planned, ec2: Any) -> None:
    reason = "r" * 256
    plan = planned(launch(), reason=reason)
    assert len(plan["description"]) == 255
    assert plan["description"].startswith("ec2ops snapshot of ")
    assert tags_of(plan)["ec2ops:reason"] == reason
    assert all(len(tag["Value"]) <= 256 for tag in plan["tags"])
    take_set(ec2, plan)  # EC2 accepts them
