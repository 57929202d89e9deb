"""The revert schedule on EventBridge Scheduler (moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest
from ec2ops_lambda.resize.revert import RevertSchedules, at_expression, revert_input
from moto import mock_aws

from tests.unit.world import REGION

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:ec2ops-resize"
ROLE = "arn:aws:iam::123456789012:role/ec2ops-scheduler"


@pytest.fixture
def schedules() -> Iterator[RevertSchedules]:
    with mock_aws():
        yield RevertSchedules("default", boto3.client("scheduler", region_name=REGION))


def test_create_then_get_and_delete(schedules: RevertSchedules) -> None:
    at = datetime(2025, 6, 4, 15, 0, 0, 900_000, tzinfo=UTC)
    payload = revert_input("i-0123456789abcdef0", "t3.large", "chg-1", "phase 2")
    name = schedules.create("i-0123456789abcdef0", at, state_machine_arn=ARN, role_arn=ROLE, payload=payload)
    assert name == "ec2ops-revert-i-0123456789abcdef0"
    found = schedules.get("i-0123456789abcdef0")
    assert found is not None
    assert found["ScheduleExpression"] == "at(2025-06-04T15:00:00)"
    assert found["ScheduleExpressionTimezone"] == "UTC"
    assert found["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert found["ActionAfterCompletion"] == "DELETE"
    assert found["Target"]["Arn"] == ARN and found["Target"]["RoleArn"] == ROLE
    assert json.loads(found["Target"]["Input"]) == {
        "instance_id": "i-0123456789abcdef0",
        "target_type": "t3.large",
        "snapshot": False,
        "reason": "revert of chg-1: phase 2",
    }
    assert schedules.delete("i-0123456789abcdef0") is True
    assert schedules.get("i-0123456789abcdef0") is None


def test_delete_of_a_missing_schedule_is_fine(schedules: RevertSchedules) -> None:
    assert schedules.delete("i-0123456789abcdef0") is False


def test_revert_reason_fits_the_input_limit() -> None:
    payload = revert_input("i-0123456789abcdef0", "t3.large", "c" * 80, "r" * 256)
    assert len(payload["reason"]) == 256


def test_at_expression_is_utc_to_the_second() -> None:
    assert at_expression(datetime(2025, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)) == "at(2025-01-02T03:04:05)"
