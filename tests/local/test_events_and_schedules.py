"""Rules from the synthesized template route real AWS events; schedules fire when the clock passes them."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from ec2ops.local import LocalCloud
from tests.local.conftest import LOCAL_EVENTS


def sample(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((LOCAL_EVENTS / name).read_text())
    return event


def test_the_published_spot_warning_starts_the_rule_target_with_the_transformed_input(
    cloud: LocalCloud,
) -> None:
    started = cloud.put_event(sample("spot-interruption-warning.json"))
    assert len(started) == 1
    result = cloud.wait(started[0])
    assert result.state_machine == "ec2ops-probe-echo"
    assert result.output == {"instance_id": "i-1234567890abcdef0", "action": "action"}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update({"detail-type": "EC2 Instance Rebalance Recommendation"}),
        lambda e: e.update({"detail-type": "EC2 Spot Instance Interruption Warnings"}),
        lambda e: e.update({"source": "custom.ec2"}),
    ],
    ids=["rebalance", "plural-detail-type", "other-source"],
)
def test_near_misses_start_nothing(cloud: LocalCloud, mutate: Any) -> None:
    event = sample("spot-interruption-warning.json")
    mutate(event)
    assert cloud.put_event(event) == []


def test_the_real_rebalance_sample_does_not_match_the_spot_warning_rule(cloud: LocalCloud) -> None:
    assert cloud.put_event(sample("rebalance-recommendation.json")) == []


def _schedule(cloud: LocalCloud, name: str, when: str, **extra: Any) -> None:
    cloud.client("scheduler").create_schedule(
        Name=name,
        ScheduleExpression=when,
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": cloud.state_machine_arn("probe-echo"),
            "RoleArn": "arn:aws:iam::123456789012:role/s",
            "Input": json.dumps({"from": name}),
        },
        **extra,
    )


def test_a_one_time_schedule_fires_once_when_the_clock_passes_it(cloud: LocalCloud) -> None:
    at = (cloud.clock.now() + timedelta(hours=55)).strftime("%Y-%m-%dT%H:%M:%S")
    _schedule(cloud, "revert", f"at({at})", ActionAfterCompletion="DELETE")
    cloud.clock.advance(hours=54)
    assert cloud.router.deliveries == []
    cloud.clock.advance(hours=1, seconds=1)
    cloud.clock.advance(hours=1)
    assert [d.source for d in cloud.router.deliveries] == ["schedule:default/revert"]
    results = cloud.wait_all()
    assert [r.output for r in results] == [{"from": "revert"}]
    assert cloud.client("scheduler").list_schedules()["Schedules"] == []  # deleted after completion


def test_a_rate_schedule_fires_each_period(cloud: LocalCloud) -> None:
    _schedule(cloud, "sweeper", "rate(15 minutes)")
    for _ in range(3):
        cloud.clock.advance(minutes=15)
    assert len(cloud.router.deliveries) == 3


def test_a_nested_execution_runs_and_its_output_comes_back_to_the_parent(cloud: LocalCloud) -> None:
    result = cloud.run("probe-parent", {"from": "parent"})
    assert result.status == "SUCCEEDED", result.cause
    assert result.output["child"] == {"output": {"from": "parent"}}
    children = cloud.sfn.list_executions(stateMachineArn=cloud.state_machine_arn("probe-echo"))["executions"]
    assert len(children) == 1
