"""The world the Lambda code runs in, on moto: managed instances, the ledger table, the topic, a Lambda context."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from ec2ops_lambda.handlers import snapshot as handlers
from moto import mock_aws

from tests.unit.world import DEFAULT_AMI, LEDGER_TABLE, REGION, FakeLambdaContext, Inbox, fake_lambda_context, take_set

_SETTINGS = ("SNAPSHOT_RETAIN_COUNT", "SNAPSHOT_RETAIN_DAYS", "SNAPSHOT_TIMEOUT_MINUTES", "LEDGER_TABLE", "TOPIC_ARN")


@pytest.fixture
def context() -> FakeLambdaContext:
    return fake_lambda_context()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto for every service, without its default AMIs (faster), and the function's settings as the stack sets them."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    monkeypatch.setenv("EC2OPS_ENV", "test")
    for name in _SETTINGS:
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield


@pytest.fixture
def ec2(aws: None) -> Any:
    return boto3.client("ec2", region_name=REGION)


@pytest.fixture
def launch(ec2: Any) -> Callable[..., str]:
    """Launch an instance named web-1: managed by default, an 8 GiB root volume plus the given data volumes."""

    def _launch(
        *,
        managed: bool = True,
        data_volumes_gib: tuple[int, ...] = (),
        root: bool = True,
        tags: dict[str, str] | None = None,
    ) -> str:
        mappings: list[dict[str, Any]] = []
        if root:
            mappings.append({"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}})
        for index, size in enumerate(data_volumes_gib):
            mappings.append({"DeviceName": f"/dev/sd{chr(ord('f') + index)}", "Ebs": {"VolumeSize": size}})
        all_tags = {"Name": "web-1", **({"ec2ops:managed": "true"} if managed else {}), **(tags or {})}
        instance = ec2.run_instances(
            ImageId=DEFAULT_AMI,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.large",
            BlockDeviceMappings=mappings,
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()]}
            ],
        )["Instances"][0]
        instance_id: str = instance["InstanceId"]
        return instance_id

    return _launch


@pytest.fixture
def planned(ec2: Any, context: FakeLambdaContext) -> Callable[..., dict[str, Any]]:
    """Run the Plan handler as the state machine does; `fields` are the execution input besides the instance."""

    def _planned(instance_id: str, change_id: str = "chg-1", **fields: Any) -> dict[str, Any]:
        request = {"instance_id": instance_id, "reason": "before kernel upgrade", **fields}
        return handlers.plan({"request": request, "change_id": change_id}, context)

    return _planned


@pytest.fixture
def taken(ec2: Any, planned: Callable[..., dict[str, Any]]) -> Callable[..., tuple[dict[str, Any], list[str]]]:
    """Plan, then take the set as the CreateSnapshots task would: (plan, snapshot ids)."""

    def _taken(instance_id: str, change_id: str = "chg-1", **fields: Any) -> tuple[dict[str, Any], list[str]]:
        plan = planned(instance_id, change_id, **fields)
        return plan, take_set(ec2, plan)

    return _taken


@pytest.fixture
def ledger_table(aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ledger as the storage stack makes it: string pk/sk, on demand."""
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=LEDGER_TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("LEDGER_TABLE", LEDGER_TABLE)
    return LEDGER_TABLE


@pytest.fixture
def inbox(aws: None, monkeypatch: pytest.MonkeyPatch) -> Inbox:
    """The notification topic with an SQS queue subscribed, as a human's mailbox would be."""
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic_arn = sns.create_topic(Name="ec2ops-notifications")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="subscriber")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv("TOPIC_ARN", topic_arn)
    return Inbox(topic_arn, queue_url)
