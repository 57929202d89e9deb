"""ec2ops-spot-failover on ec2ops.local: events sent with `put_event` through the synthesized rule, the state
machine and its Lambdas executed as deployed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ec2ops.local import ExecutionResult, LocalCloud
from tests.workflows.iam import granted_actions, iam_action, is_granted

EVENTS = Path(__file__).parents[1] / "fixtures" / "aws-events"
SAMPLE_ID = "i-1234567890abcdef0"
TYPE, AZ = "m5.large", "us-east-1a"


def sample(name: str, instance_id: str) -> dict[str, Any]:
    """A published AWS sample event with the instance id of one of ours."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text().replace(SAMPLE_ID, instance_id))
    return event


def warning(instance_id: str) -> dict[str, Any]:
    return sample("spot-interruption-warning.json", instance_id)


def rebalance(instance_id: str) -> dict[str, Any]:
    return sample("rebalance-recommendation.json", instance_id)


def deliver(cloud: LocalCloud, event: dict[str, Any]) -> list[ExecutionResult]:
    """put_event through the app's rule, and wait for every execution it started."""
    arns = cloud.put_event(event)
    assert arns, "the rule started no execution"
    results = [cloud.wait(arn) for arn in arns]
    for result in results:  # shown when a test fails
        print(f"{result.name}: {result.status} {result.error} {result.cause}")
    return results


def spot_instance(cloud: LocalCloud, policy: str = "replace", *, eip: bool = True, **tags: str) -> str:
    iid = cloud.launch_instance(
        TYPE, market="spot", availability_zone=AZ, tags={"ec2ops:failover": policy, "Name": "web-1", **tags}
    )
    if eip:
        allocation = cloud.ec2.allocate_address(Domain="vpc")["AllocationId"]
        cloud.ec2.associate_address(AllocationId=allocation, InstanceId=iid)
    return iid


def replacements(cloud: LocalCloud, iid: str) -> list[dict[str, Any]]:
    """Every instance ec2ops launched to replace `iid`, whatever its state."""
    reservations = cloud.ec2.describe_instances(Filters=[{"Name": "tag:ec2ops:replaces", "Values": [iid]}])
    return [instance for r in reservations["Reservations"] for instance in r["Instances"]]


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


def elastic_ip_holder(cloud: LocalCloud) -> str | None:
    (address,) = cloud.ec2.describe_addresses()["Addresses"]
    return address.get("InstanceId")


def items(cloud: LocalCloud, iid: str, kind: str) -> list[dict[str, Any]]:
    return [item for item in cloud.ledger_items(f"instance#{iid}") if item["kind"] == kind]


def bad_marks(cloud: LocalCloud) -> list[dict[str, Any]]:
    return cloud.ledger_items("spot-pools")


# --- the story of the issue -------------------------------------------------------------------------------------


def test_the_published_warning_replaces_the_instance_in_another_pool_and_records_the_savings(
    cloud: LocalCloud, record_property: Any
) -> None:
    iid = spot_instance(cloud)
    old = cloud.instance(iid)

    (result,) = deliver(cloud, warning(iid))

    assert result.status == "SUCCEEDED", result.cause
    (new,) = replacements(cloud, iid)
    assert new["State"]["Name"] == "running"
    assert new["InstanceLifecycle"] == "spot"
    assert (new["InstanceType"], new["Placement"]["AvailabilityZone"]) != (TYPE, AZ)
    # launched from the old launch configuration, in the app's VPC
    assert new["ImageId"] == old["ImageId"]
    assert [g["GroupId"] for g in new["SecurityGroups"]] == [g["GroupId"] for g in old["SecurityGroups"]]
    assert new["VpcId"] == old["VpcId"]
    # identity moved: the Elastic IP and the role tags
    assert elastic_ip_holder(cloud) == new["InstanceId"]
    assert tags_of(new) | {"ec2ops:role": "primary", "ec2ops:replaces": iid, "Name": "web-1"} == tags_of(new)
    assert tags_of(new)["ec2ops:managed"] == "true"
    old_tags = tags_of(cloud.instance(iid))
    assert (old_tags["ec2ops:role"], old_tags["ec2ops:replaced-by"]) == ("interrupted", new["InstanceId"])
    # the switch is recorded with pools, prices, timing and savings
    (switch,) = items(cloud, iid, "spot-switch")
    detail = switch["detail"]
    assert detail["old"]["pool"] == f"{TYPE}/{AZ}"
    assert detail["new"]["pool"] == f"{new['InstanceType']}/{new['Placement']['AvailabilityZone']}"
    assert detail["new"]["market"] == "spot"
    assert detail["reason"]["signal"] == "interruption-warning"
    assert [a["outcome"] for a in detail["pools_tried"]] == ["running"]
    ranked = detail["ranking"]
    assert ranked[0]["pool"] == detail["new"]["pool"] and ranked[0]["rank"] == 1
    assert {"price", "interruption", "placement", "same_type"} <= set(ranked[0]["parts"])
    interrupted = next(entry for entry in ranked if entry["pool"] == f"{TYPE}/{AZ}")
    assert interrupted["excluded_because"] == "the interrupted pool"
    savings = switch["cost_effect"]["hourly_savings_vs_on_demand_usd"]
    assert savings > 0
    assert float(savings) == pytest.approx(
        float(detail["new"]["on_demand_hourly_usd"]) - float(detail["new"]["hourly_usd"]), abs=1e-6
    )
    assert 0 < detail["seconds_notice_to_running"] < 120
    assert result.output["status"] == "replaced"
    (message,) = [n for n in cloud.notifications() if n["subject"] == "ec2ops spot failover"]
    assert new["InstanceId"] in message["message"] and "USD/h" in message["message"]
    # the interrupted pool is remembered as bad
    assert [m["pool"] for m in bad_marks(cloud)] == [f"{TYPE}/{AZ}"]
    record_property("figure", f"spot failover: notice to replacement running {detail['seconds_notice_to_running']} s")


def test_the_same_warning_twice_launches_exactly_one_replacement(cloud: LocalCloud) -> None:
    iid = spot_instance(cloud)
    event = warning(iid)

    first = deliver(cloud, event)
    second = deliver(cloud, event)

    assert [r.status for r in first + second] == ["SUCCEEDED", "SUCCEEDED"], [r.cause for r in first + second]
    assert len(replacements(cloud, iid)) == 1
    assert second[0].output["outcome"] == "duplicate"
    outcomes = sorted(item["detail"]["outcome"] for item in items(cloud, iid, "spot-signal"))
    assert outcomes == ["duplicate", "go"]


def test_two_deliveries_at_once_launch_exactly_one_replacement(cloud: LocalCloud) -> None:
    iid = spot_instance(cloud)
    arns = cloud.put_event(warning(iid)) + cloud.put_event(warning(iid))

    results = [cloud.wait(arn) for arn in arns]

    assert [r.status for r in results] == ["SUCCEEDED", "SUCCEEDED"]
    assert len(replacements(cloud, iid)) == 1
    assert sorted(r.output.get("outcome", r.output.get("status")) for r in results) == ["duplicate", "replaced"]


def test_rebalance_then_warning_with_policy_replace_launches_once_on_the_warning(cloud: LocalCloud) -> None:
    iid = spot_instance(cloud, "replace")

    (noted,) = deliver(cloud, rebalance(iid))
    assert noted.output["outcome"] == "noted"
    assert replacements(cloud, iid) == []
    (replaced,) = deliver(cloud, warning(iid))
    (again,) = deliver(cloud, warning(iid))

    assert replaced.output["status"] == "replaced"
    assert again.output["outcome"] == "duplicate"
    assert len(replacements(cloud, iid)) == 1


def test_a_warning_after_the_instance_is_gone_launches_nothing_more(cloud: LocalCloud) -> None:
    iid = spot_instance(cloud)
    deliver(cloud, warning(iid))
    cloud.ec2.terminate_instances(InstanceIds=[iid])  # what AWS does two minutes after the warning
    cloud.clock.advance(minutes=5)

    (late,) = deliver(cloud, warning(iid))

    assert late.status == "SUCCEEDED"
    assert late.output["outcome"] == "duplicate"
    assert len(replacements(cloud, iid)) == 1


# --- launch failures ------------------------------------------------------------------------------------------


def test_no_capacity_in_the_best_pool_uses_the_next_and_marks_the_first_bad_for_the_next_incident(
    cloud: LocalCloud,
) -> None:
    iid = spot_instance(cloud)
    cloud.inject_fault("ec2", "RunInstances", "InsufficientInstanceCapacity", message="no m5 spot capacity")

    (result,) = deliver(cloud, warning(iid))

    assert result.status == "SUCCEEDED", result.cause
    (switch,) = items(cloud, iid, "spot-switch")
    tried = switch["detail"]["pools_tried"]
    assert [(a["outcome"], a["code"]) for a in tried] == [
        ("pool-failed", "InsufficientInstanceCapacity"),
        ("running", None),
    ]
    first_choice = tried[0]["pool"]
    assert switch["detail"]["new"]["pool"] != first_choice
    (mark,) = [m for m in bad_marks(cloud) if m["pool"] == first_choice]
    assert "InsufficientInstanceCapacity" in mark["reason"]

    # the next incident within the expiry avoids that pool, and says why
    other = spot_instance(cloud, eip=False)
    (next_result,) = deliver(cloud, warning(other))
    (next_switch,) = items(cloud, other, "spot-switch")
    entry = next(e for e in next_switch["detail"]["ranking"] if e["pool"] == first_choice)
    assert entry["excluded_because"].startswith("marked bad until")
    assert next_switch["detail"]["new"]["pool"] != first_choice
    assert next_result.status == "SUCCEEDED"


def test_the_account_spot_quota_falls_back_to_on_demand_at_once_and_says_why(cloud: LocalCloud) -> None:
    iid = spot_instance(cloud)
    cloud.inject_fault(
        "ec2", "RunInstances", "MaxSpotInstanceCountExceeded", message="Max spot instance count exceeded"
    )

    (result,) = deliver(cloud, warning(iid))

    assert result.status == "SUCCEEDED", result.cause
    (new,) = [r for r in replacements(cloud, iid) if r["State"]["Name"] == "running"]
    assert new.get("InstanceLifecycle") != "spot"
    (switch,) = items(cloud, iid, "spot-switch")
    assert switch["detail"]["new"]["market"] == "on-demand"
    assert switch["detail"]["fell_back_to_on_demand_because"].startswith("MaxSpotInstanceCountExceeded")
    assert [a["outcome"] for a in switch["detail"]["pools_tried"]] == ["spot-unavailable", "running"]
    assert "on-demand because MaxSpotInstanceCountExceeded" in switch["what"]
    assert float(switch["cost_effect"]["hourly_savings_vs_on_demand_usd"]) == 0
    assert bad_marks(cloud) == [m for m in bad_marks(cloud) if "interrupted" in m["reason"]], "no pool blamed"


def test_throttling_twice_succeeds_after_backoff(cloud: LocalCloud) -> None:
    iid = spot_instance(cloud)
    cloud.inject_fault("ec2", "RunInstances", "RequestLimitExceeded", times=2)

    (result,) = deliver(cloud, warning(iid))

    assert result.status == "SUCCEEDED", result.cause
    (switch,) = items(cloud, iid, "spot-switch")
    tried = switch["detail"]["pools_tried"]
    assert [a["outcome"] for a in tried] == ["throttled", "throttled", "running"]
    assert len({a["pool"] for a in tried}) == 1, "throttling retries the same pool"
    assert all("retrying in" in a["message"] for a in tried[:2])
    assert len(replacements(cloud, iid)) == 1


def test_no_pool_at_all_fails_clearly_and_leaves_nothing_running(cloud: LocalCloud) -> None:
    iid = spot_instance(cloud)
    cloud.inject_fault("ec2", "RunInstances", "InsufficientInstanceCapacity", times=100)

    (result,) = deliver(cloud, warning(iid))

    assert (result.status, result.error) == ("FAILED", "ReplacementFailed")
    assert "no pool gave" in result.cause and "spot" in result.cause and "on-demand" in result.cause
    assert replacements(cloud, iid) == []
    (failure,) = items(cloud, iid, "spot-failure")
    assert failure["detail"]["error"] == "ReplacementFailed"
    assert cloud.ledger_items(f"spot-incident#{iid}")[0]["state"] == "failed"
    assert any("FAILED" in (n["subject"] or "") for n in cloud.notifications())
    # a manual failover may try again once capacity is back (on-demand: every spot pool is now marked bad)
    cloud.faults.clear()
    manual = cloud.run("spot-failover", {"instance_id": iid, "action": "failover"})
    assert manual.status == "SUCCEEDED", manual.cause
    (new,) = replacements(cloud, iid)
    assert (new["State"]["Name"], manual.output["market"]) == ("running", "on-demand")


# --- the standby policy -----------------------------------------------------------------------------------------


def test_standby_rebalance_prepares_and_the_warning_only_promotes(cloud: LocalCloud) -> None:
    iid = spot_instance(cloud, "standby")

    (prepared,) = deliver(cloud, rebalance(iid))

    assert prepared.status == "SUCCEEDED", prepared.cause
    assert prepared.output["status"] == "standby-ready"
    (standby,) = replacements(cloud, iid)
    assert standby["State"]["Name"] == "running"
    assert tags_of(standby)["ec2ops:role"] == "standby"
    assert elastic_ip_holder(cloud) == iid, "a standby does not take the address before the warning"
    assert items(cloud, iid, "spot-standby")

    (promoted,) = deliver(cloud, warning(iid))

    assert promoted.status == "SUCCEEDED", promoted.cause
    assert promoted.output["status"] == "replaced"
    assert [r["InstanceId"] for r in replacements(cloud, iid)] == [standby["InstanceId"]], "no second launch"
    assert elastic_ip_holder(cloud) == standby["InstanceId"]
    assert tags_of(cloud.instance(standby["InstanceId"]))["ec2ops:role"] == "primary"
    (switch,) = items(cloud, iid, "spot-switch")
    assert switch["detail"]["how"] == "promote"
    assert switch["detail"]["new"]["instance_id"] == standby["InstanceId"]
    assert "ec2ops-spot-failover-launch" not in promoted.counts.lambda_invocations


def test_a_warning_while_the_standby_launches_promotes_it_when_it_runs(cloud: LocalCloud) -> None:
    iid = spot_instance(cloud, "standby")
    preparing = cloud.put_event(rebalance(iid))
    warned = cloud.put_event(warning(iid))

    results = [cloud.wait(arn) for arn in preparing + warned]

    assert [r.status for r in results] == ["SUCCEEDED", "SUCCEEDED"]
    (standby,) = replacements(cloud, iid)
    assert elastic_ip_holder(cloud) == standby["InstanceId"]
    assert tags_of(cloud.instance(standby["InstanceId"]))["ec2ops:role"] == "primary"
    outcomes = sorted(r.output.get("status") or r.output.get("outcome") for r in results)
    assert outcomes in (["replaced", "standby-pending"], ["duplicate", "replaced"])


# --- what ec2ops must not touch -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "managed", "why"),
    [
        ({}, False, "NotManaged"),
        ({"ec2ops:failover": "off"}, True, "NotManaged"),
        ({}, True, "NotManaged"),
        ({"ec2ops:failover": "replace", "ec2ops:environment": "prod"}, True, "NotManaged"),
    ],
    ids=["unmanaged", "failover-off", "no-failover-tag", "other-environment"],
)
def test_instances_ec2ops_may_not_replace_are_recorded_as_ignored(
    cloud: LocalCloud, tags: dict[str, str], managed: bool, why: str
) -> None:
    iid = cloud.launch_instance(TYPE, market="spot", availability_zone=AZ, managed=managed, tags=tags)

    (result,) = deliver(cloud, warning(iid))

    assert result.status == "SUCCEEDED"
    assert result.output["outcome"] == "ignored"
    assert replacements(cloud, iid) == []
    (signal,) = items(cloud, iid, "spot-signal")
    assert signal["detail"]["reason"] == why and signal["what"].startswith("ignored")


def test_an_unknown_instance_id_is_recorded_and_a_manual_one_refused(cloud: LocalCloud) -> None:
    (result,) = deliver(cloud, warning("i-0aaaaaaaaaaaaaaaa"))
    assert result.output["outcome"] == "ignored"
    assert "does not exist" in result.output["message"]

    manual = cloud.run("spot-failover", {"instance_id": "i-0aaaaaaaaaaaaaaaa", "action": "failover"})
    assert (manual.status, manual.error) == ("FAILED", "InstanceNotFound")
    assert "ec2ops-spot-failover-launch" not in manual.counts.lambda_invocations


def test_a_malformed_event_fails_clearly_and_launches_nothing(cloud: LocalCloud) -> None:
    iid = spot_instance(cloud)
    event = warning(iid)
    event["detail"] = {"instance-id": "not-an-id", "instance-action": "explode"}

    (result,) = deliver(cloud, event)

    assert (result.status, result.error) == ("FAILED", "InvalidInput")
    assert "detail.instance-id" in result.cause and "instance-action" in result.cause
    assert "Nothing was launched" in result.cause
    assert replacements(cloud, iid) == []


def test_manual_promote_without_a_standby_is_refused(cloud: LocalCloud) -> None:
    iid = spot_instance(cloud)
    result = cloud.run("spot-failover", {"instance_id": iid, "action": "promote"})
    assert (result.status, result.error) == ("FAILED", "NoStandby")
    assert '"action": "prepare"' in json.loads(result.cause or "{}")["errorMessage"]
    assert replacements(cloud, iid) == []


def test_a_failed_address_move_is_reported_with_the_running_replacement(cloud: LocalCloud) -> None:
    iid = spot_instance(cloud)
    cloud.inject_fault("ec2", "AssociateAddress", "InvalidAddress.Locked", times=1)

    (result,) = deliver(cloud, warning(iid))

    assert (result.status, result.error) == ("FAILED", "PromotionFailed")
    (new,) = replacements(cloud, iid)
    assert new["InstanceId"] in result.cause and "associate-address" in result.cause
    (failure,) = items(cloud, iid, "spot-failure")
    assert failure["detail"]["replacement"] == new["InstanceId"]
    # the incident keeps the replacement: a redelivered warning does not launch another
    (again,) = deliver(cloud, warning(iid))
    assert again.output["outcome"] == "duplicate"
    assert len(replacements(cloud, iid)) == 1


# --- least privilege, proven by what really ran ----------------------------------------------------------------


def test_every_call_each_spot_lambda_made_is_granted_to_its_own_role(cloud: LocalCloud) -> None:
    first = spot_instance(cloud, "standby")
    deliver(cloud, rebalance(first))
    deliver(cloud, warning(first))
    second = spot_instance(cloud)
    cloud.inject_fault("ec2", "RunInstances", "InsufficientInstanceCapacity")
    deliver(cloud, warning(second))
    third = spot_instance(cloud)
    cloud.inject_fault("ec2", "RunInstances", "InsufficientInstanceCapacity", times=100)
    deliver(cloud, warning(third))
    called = {f: c for f, c in cloud.counter.by_function.items() if f.startswith("ec2ops-spot-failover")}
    assert set(called) == {
        f"ec2ops-spot-failover-{short}"
        for short in ("assess", "choose", "launch", "promote", "record", "record-failure")
    }
    for function, calls in called.items():
        granted = granted_actions(cloud.app.template, cloud.app.function_roles[function])
        missing = [iam_action(call) for call in calls if not is_granted(iam_action(call), granted)]
        assert missing == [], f"{function} called {missing} without a grant"
