"""The revert schedule: an EventBridge Scheduler one-time schedule that resizes the instance back later."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import boto3
from botocore.exceptions import ClientError

from ec2ops_lambda.aws.ec2 import error_code
from ec2ops_lambda.models.common import as_utc

SCHEDULE_PREFIX = "ec2ops-revert-"
REASON_LIMIT = 256  # the resize input's `reason` limit: a longer one would make the revert itself fail


def schedule_name(instance_id: str) -> str:
    """One revert schedule per instance, so a later resize finds and replaces it."""
    return f"{SCHEDULE_PREFIX}{instance_id}"


def at_expression(moment: datetime) -> str:
    """Scheduler's one-time expression, in UTC to the second."""
    return f"at({as_utc(moment):%Y-%m-%dT%H:%M:%S})"


def revert_input(instance_id: str, from_type: str, change_id: str, reason: str) -> dict[str, Any]:
    """The resize execution input that undoes this change (no snapshot: one was offered before the first stop)."""
    return {
        "instance_id": instance_id,
        "target_type": from_type,
        "snapshot": False,
        "reason": f"revert of {change_id}: {reason}"[:REASON_LIMIT],
    }


class RevertSchedules:
    """Revert schedules in one schedule group; a client is made on first use, never at import."""

    def __init__(self, group: str = "default", client: Any = None) -> None:
        self.group = group
        self._client = client

    @property
    def client(self) -> Any:
        """The boto3 client, created lazily."""
        if self._client is None:
            self._client = boto3.client("scheduler")
        return self._client

    def delete(self, instance_id: str) -> bool:
        """Remove the instance's pending revert; False when there was none."""
        try:
            self.client.delete_schedule(Name=schedule_name(instance_id), GroupName=self.group)
        except ClientError as error:
            if error_code(error) == "ResourceNotFoundException":
                return False
            raise
        return True

    def create(
        self, instance_id: str, at: datetime, *, state_machine_arn: str, role_arn: str, payload: Mapping[str, Any]
    ) -> str:
        """A one-time schedule that starts the resize state machine with `payload`, deleted once it has run."""
        name = schedule_name(instance_id)
        self.client.create_schedule(
            Name=name,
            GroupName=self.group,
            ScheduleExpression=at_expression(at),
            ScheduleExpressionTimezone="UTC",
            FlexibleTimeWindow={"Mode": "OFF"},
            ActionAfterCompletion="DELETE",
            Description=f"ec2ops: {payload.get('reason', 'revert')}"[:512],
            Target={"Arn": state_machine_arn, "RoleArn": role_arn, "Input": json.dumps(dict(payload))},
        )
        return name

    def get(self, instance_id: str) -> dict[str, Any] | None:
        """The instance's revert schedule as Scheduler returns it, or None (for reports and tests)."""
        try:
            found: dict[str, Any] = self.client.get_schedule(Name=schedule_name(instance_id), GroupName=self.group)
        except ClientError as error:
            if error_code(error) == "ResourceNotFoundException":
                return None
            raise
        return found
