"""The resize plan's world on moto: a managed build box, and the Plan handler run as the state machine runs it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ec2ops_lambda.handlers import resize_plan as handlers

from tests.unit.world import DEFAULT_AMI, FakeLambdaContext, fake_lambda_context, moto_ec2

FROM, TO, FALLBACK = "t3.2xlarge", "c7i.8xlarge", "c6i.8xlarge"
CHANGE_ID = "chg-1"
EXECUTION_ID = f"arn:aws:states:us-east-1:123456789012:execution:ec2ops-resize:{CHANGE_ID}"


def moto_instance(instance_id: str) -> Any:
    """moto's own instance object, to set what its API cannot (state, lifecycle, root device, boot mode)."""
    return moto_ec2().get_instance(instance_id)


def describe(ec2: Any, instance_id: str) -> dict[str, Any]:
    instance: dict[str, Any] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return instance


def state_and_type(ec2: Any, instance_id: str) -> tuple[str, str]:
    instance = describe(ec2, instance_id)
    return instance["State"]["Name"], instance["InstanceType"]


@pytest.fixture
def context() -> FakeLambdaContext:
    return fake_lambda_context("ec2ops-resize-plan")


@pytest.fixture
def launch(ec2: Any) -> Callable[..., str]:
    """Launch build-box: a managed, running t3.2xlarge in us-east-1a, HVM like every current AMI."""

    def _launch(
        instance_type: str = FROM,
        *,
        zone: str = "us-east-1a",
        managed: bool = True,
        tags: dict[str, str] | None = None,
    ) -> str:
        all_tags = {"Name": "build-box", **({"ec2ops:managed": "true"} if managed else {}), **(tags or {})}
        instance_id: str = ec2.run_instances(
            ImageId=DEFAULT_AMI,
            MinCount=1,
            MaxCount=1,
            InstanceType=instance_type,
            Placement={"AvailabilityZone": zone},
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()]}
            ],
        )["Instances"][0]["InstanceId"]
        # moto reports `paravirtual` for an instance of an AMI it does not know; EC2 says hvm for any current AMI.
        moto_instance(instance_id).virtualization_type = "hvm"
        return instance_id

    return _launch


@pytest.fixture
def planned(ec2: Any, context: FakeLambdaContext) -> Callable[..., dict[str, Any]]:
    """Run the Plan handler as the state machine does; `fields` are the execution input besides the instance."""

    def _planned(instance_id: str, **fields: Any) -> dict[str, Any]:
        request = {"instance_id": instance_id, "target_type": TO, "reason": "phase 2 needs 32 vCPUs", **fields}
        return handlers.plan({"request": request, "change_id": CHANGE_ID, "execution_id": EXECUTION_ID}, context)

    return _planned
