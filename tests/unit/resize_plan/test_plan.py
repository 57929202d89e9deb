"""Plan on moto: the plan a go, a dry run and a same-type request produce, and what it tells the user."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ec2ops_lambda.models.resize import ResizePlan

from tests.unit.resize_plan.conftest import CHANGE_ID, EXECUTION_ID, FALLBACK, FROM, TO, state_and_type

Launch = Callable[..., str]
Planned = Callable[..., dict[str, Any]]


def associate_elastic_ip(ec2: Any, instance_id: str) -> str:
    allocation = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=allocation["AllocationId"], InstanceId=instance_id)
    address: str = allocation["PublicIp"]
    return address


def test_go_plan_for_a_running_build_box_has_prices_sizes_downtime_and_fallbacks(
    launch: Launch, planned: Planned, ec2: Any
) -> None:
    # Given a running, managed t3.2xlarge with an ordinary public IPv4 address
    instance_id = launch()
    # When the plan step runs for c7i.8xlarge with c6i.8xlarge as fallback
    plan = planned(instance_id, fallback_types=[FALLBACK], revert_after_hours=55)
    # Then it says go, with everything the later steps and the user need
    assert plan["status"] == "go"
    assert {k: plan[k] for k in ("instance_id", "instance_name", "change_id", "execution_id", "reason")} == {
        "instance_id": instance_id,
        "instance_name": "build-box",
        "change_id": CHANGE_ID,
        "execution_id": EXECUTION_ID,
        "reason": "phase 2 needs 32 vCPUs",
    }
    assert (plan["from_type"], plan["target_type"], plan["candidates"]) == (FROM, TO, [TO, FALLBACK])
    assert (plan["was_running"], plan["availability_zone"]) == (True, "us-east-1a")
    assert (plan["snapshot"], plan["reserve_capacity"], plan["revert_after_hours"]) == (True, False, 55)
    # prices from the bundled table (moto answers the Price List API with an error)
    assert plan["price_source"] == "bundled-table"
    assert plan["prices"] == {FROM: 0.3328, TO: 1.428, FALLBACK: 1.36}
    assert plan["hourly_cost_delta"] == pytest.approx(1.0952)
    assert plan["vcpus"] == {"from": 8, "to": 32}
    assert plan["memory_gib"] == {"from": 32, "to": 64}
    assert plan["public_ipv4_changes"] is True
    assert plan["expected_downtime_seconds"] == 145
    assert plan["summary"].startswith(
        f"Resize build-box ({instance_id}) t3.2xlarge -> c7i.8xlarge: 8 -> 32 vCPUs, 32 -> 64 GiB, "
        "$0.3328/h -> $1.4280/h (+$1.0952/h); about 2.5 min of downtime; "
        "its public IPv4 address will change (no Elastic IP); fallbacks: c6i.8xlarge; "
        "a snapshot of its volumes first; back to t3.2xlarge after 55 h; 24 more vCPUs must fit"
    )
    # and the plan is what the later steps read back
    assert ResizePlan.model_validate(plan).model_dump(mode="json") == plan
    # and nothing was touched
    assert state_and_type(ec2, instance_id) == ("running", FROM)


def test_an_elastic_ip_keeps_the_public_address(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch()
    associate_elastic_ip(ec2, instance_id)
    plan = planned(instance_id)
    assert plan["public_ipv4_changes"] is False
    assert "its Elastic IP stays" in plan["summary"]


def test_an_elastic_ip_of_another_instance_does_not_count(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch()
    associate_elastic_ip(ec2, launch())
    assert planned(instance_id)["public_ipv4_changes"] is True


def test_a_stopped_instance_has_no_downtime_and_no_address_to_lose(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch()
    ec2.stop_instances(InstanceIds=[instance_id])
    plan = planned(instance_id)
    assert (plan["status"], plan["was_running"]) == ("go", False)
    assert (plan["expected_downtime_seconds"], plan["public_ipv4_changes"]) == (0, False)
    assert "no downtime (it is stopped)" in plan["summary"]
    assert state_and_type(ec2, instance_id) == ("stopped", FROM)


def test_a_stopped_instance_with_stop_protection_can_be_planned(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch()
    ec2.stop_instances(InstanceIds=[instance_id])
    ec2.modify_instance_attribute(InstanceId=instance_id, DisableApiStop={"Value": True})
    assert planned(instance_id)["status"] == "go"


def test_dry_run_plans_and_says_nothing_changed(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch()
    plan = planned(instance_id, dry_run=True, snapshot=False)
    assert plan["status"] == "planned"
    assert plan["summary"].startswith(f"Dry run, nothing was changed: Resize build-box ({instance_id}) t3.2xlarge")
    assert "no fallbacks" in plan["summary"]
    assert "snapshot" not in plan["summary"]
    assert state_and_type(ec2, instance_id) == ("running", FROM)


def test_same_type_is_unchanged(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch()
    plan = planned(instance_id, target_type=FROM, fallback_types=[FALLBACK])
    assert plan["status"] == "unchanged"
    assert plan["prices"] == {FROM: 0.3328}
    assert (plan["hourly_cost_delta"], plan["expected_downtime_seconds"], plan["public_ipv4_changes"]) == (0, 0, False)
    assert plan["vcpus"] == {"from": 8, "to": 8}
    assert plan["summary"] == f"build-box ({instance_id}) is already t3.2xlarge: nothing to do. Nothing was changed."
    assert state_and_type(ec2, instance_id) == ("running", FROM)


def test_same_type_is_unchanged_even_with_stop_protection(launch: Launch, planned: Planned, ec2: Any) -> None:
    """Nothing would be stopped, so stop protection is no reason to fail."""
    instance_id = launch()
    ec2.modify_instance_attribute(InstanceId=instance_id, DisableApiStop={"Value": True})
    assert planned(instance_id, target_type=FROM)["status"] == "unchanged"


def test_a_type_in_no_price_source_has_a_null_price_and_the_summary_says_so(launch: Launch, planned: Planned) -> None:
    instance_id = launch()
    plan = planned(instance_id, target_type="z1d.large")
    assert plan["status"] == "go"
    assert plan["prices"] == {FROM: 0.3328, "z1d.large": None}
    assert plan["hourly_cost_delta"] is None
    assert "price of z1d.large unknown (not in the bundled price table), t3.2xlarge $0.3328/h" in plan["summary"]


def test_a_smaller_type_shows_a_saving(launch: Launch, planned: Planned) -> None:
    instance_id = launch()
    plan = planned(instance_id, target_type="t3.large")
    assert plan["hourly_cost_delta"] == pytest.approx(-0.2496)
    assert "$0.3328/h -> $0.0832/h (-$0.2496/h)" in plan["summary"]
    assert "32 -> 8 GiB" in plan["summary"]
    assert "quota" not in plan["summary"]


def test_the_snapshot_reason_names_the_change_and_fits_the_snapshot_limit(launch: Launch, planned: Planned) -> None:
    instance_id = launch()
    short = planned(instance_id, reason="phase 2")
    long = planned(instance_id, reason="x" * 256)
    assert short["snapshot_reason"] == f"before resize {CHANGE_ID}: phase 2"
    assert len(long["snapshot_reason"]) == 256
    assert long["snapshot_reason"].startswith(f"before resize {CHANGE_ID}: xxx")
