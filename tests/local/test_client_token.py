"""moto gap `run_instances_ignores_client_token`: a repeated ClientToken returns the instance it launched."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from ec2ops.local import moto_gaps


@pytest.fixture
def ec2() -> Iterator[Any]:
    from contextlib import ExitStack

    with mock_aws(), ExitStack() as stack:
        moto_gaps.run_instances_ignores_client_token(stack)
        yield boto3.client("ec2", region_name="us-east-1")


def image(ec2: Any) -> str:
    return str(ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"])


def test_the_same_token_returns_the_same_instance(ec2: Any) -> None:
    ami = image(ec2)
    first = ec2.run_instances(ImageId=ami, InstanceType="m5.large", MinCount=1, MaxCount=1, ClientToken="t-1")
    again = ec2.run_instances(ImageId=ami, InstanceType="m5.large", MinCount=1, MaxCount=1, ClientToken="t-1")
    assert again["Instances"][0]["InstanceId"] == first["Instances"][0]["InstanceId"]
    assert len(ec2.describe_instances()["Reservations"]) == 1


def test_another_token_or_none_launches_again(ec2: Any) -> None:
    ami = image(ec2)
    ec2.run_instances(ImageId=ami, InstanceType="m5.large", MinCount=1, MaxCount=1, ClientToken="t-1")
    ec2.run_instances(ImageId=ami, InstanceType="m5.large", MinCount=1, MaxCount=1, ClientToken="t-2")
    ec2.run_instances(ImageId=ami, InstanceType="m5.large", MinCount=1, MaxCount=1)
    assert len(ec2.describe_instances()["Reservations"]) == 3


def test_the_same_token_with_other_parameters_is_refused(ec2: Any) -> None:
    ami = image(ec2)
    ec2.run_instances(ImageId=ami, InstanceType="m5.large", MinCount=1, MaxCount=1, ClientToken="t-1")
    with pytest.raises(ClientError) as refused:
        ec2.run_instances(ImageId=ami, InstanceType="c5.large", MinCount=1, MaxCount=1, ClientToken="t-1")
    assert refused.value.response["Error"]["Code"] == "IdempotentParameterMismatch"
