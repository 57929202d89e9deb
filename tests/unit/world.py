"""Helpers that build and inspect the moto world of the unit tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from moto.core.models import DEFAULT_ACCOUNT_ID

from ec2ops.local.lambda_runtime import LambdaContext as FakeLambdaContext

REGION = "us-east-1"
LEDGER_TABLE = "ec2ops-ledger-test"
DEFAULT_AMI = "ami-0123456789abcdef0"


def fake_lambda_context(function_name: str = "ec2ops-snapshot-test") -> FakeLambdaContext:
    """The same Lambda context the emulator's runtime passes to handlers."""
    return FakeLambdaContext(
        function_name=function_name,
        memory_limit_in_mb=256,
        invoked_function_arn=f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:{function_name}",
        log_group_name=f"/aws/lambda/{function_name}",
        log_stream_name="test",
    )


def moto_ec2() -> Any:
    """moto's EC2 backend, to set what its API cannot (snapshot state, start time, an AMI's snapshots)."""
    from moto.ec2.models import ec2_backends

    return ec2_backends[DEFAULT_ACCOUNT_ID][REGION]


def take_set(ec2: Any, plan: dict[str, Any]) -> list[str]:
    """What the CreateSnapshots SDK task does with the plan: one tagged snapshot per volume."""
    response = ec2.create_snapshots(
        InstanceSpecification={"InstanceId": plan["instance_id"], "ExcludeBootVolume": plan["exclude_boot"]},
        Description=plan["description"],
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": plan["tags"]}],
    )
    return [snapshot["SnapshotId"] for snapshot in response["Snapshots"]]


def set_snapshot_state(snapshot_id: str, state: str, message: str | None = None) -> None:
    """What EC2 does over minutes (pending, then completed or error), set at once."""
    snapshot = moto_ec2().snapshots[snapshot_id]
    snapshot.status = state
    if message is not None:
        snapshot.state_message = message


def set_started(snapshot_ids: list[str], at: datetime) -> None:
    """moto stamps snapshots with the wall clock; a retention story needs them taken days apart."""
    for snapshot_id in snapshot_ids:
        moto_ec2().snapshots[snapshot_id].start_time = at.astimezone(UTC).replace(tzinfo=None)


def use_in_ami(ec2: Any, snapshot_id: str) -> str:
    """An AMI built from this snapshot. moto's RegisterImage ignores BlockDeviceMappings: point it by hand."""
    image_id: str = ec2.register_image(Name=f"golden-{snapshot_id}", RootDeviceName="/dev/xvda")["ImageId"]
    backend = moto_ec2()
    backend.amis[image_id].ebs_snapshot = backend.snapshots[snapshot_id]
    backend.snapshots[snapshot_id].from_ami = image_id  # so DeleteSnapshot answers InvalidSnapshot.InUse, as AWS
    return image_id


def existing_snapshot_ids(ec2: Any) -> set[str]:
    return {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}


def days_ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def ledger_items(instance_id: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(LEDGER_TABLE)
    items: list[dict[str, Any]] = table.query(
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": f"instance#{instance_id}"}
    )["Items"]
    return items


@dataclass
class Inbox:
    """An SQS queue subscribed to the topic: what a subscriber would read."""

    topic_arn: str
    queue_url: str

    def messages(self) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", region_name=REGION)
        found = []
        for message in sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", []):
            envelope = json.loads(message["Body"])
            found.append({"subject": envelope.get("Subject"), "message": envelope.get("Message")})
        return found


def execution_arn(change_id: str) -> str:
    return f"arn:aws:states:{REGION}:{DEFAULT_ACCOUNT_ID}:execution:ec2ops-snapshot:{change_id}"
