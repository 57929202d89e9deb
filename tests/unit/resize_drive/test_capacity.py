"""Ec2Capacity on a stubbed EC2 client: the reservation is created open, and a gone one cancels quietly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from ec2ops_lambda.aws.capacity import Ec2Capacity, client_token


@pytest.fixture
def stubbed() -> Iterator[tuple[Ec2Capacity, Stubber]]:
    client: Any = boto3.client(
        "ec2", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    with Stubber(client) as stubber:
        yield Ec2Capacity(client), stubber
        stubber.assert_no_pending_responses()


def test_reserve_creates_an_open_reservation(stubbed: tuple[Ec2Capacity, Stubber]) -> None:
    capacity, stubber = stubbed
    token = client_token("m5.large", "chg-1")
    stubber.add_response(
        "create_capacity_reservation",
        {"CapacityReservation": {"CapacityReservationId": "cr-0123456789abcdef0"}},
        {
            "InstanceType": "m5.large",
            "InstancePlatform": "Linux/UNIX",
            "AvailabilityZone": "us-east-1a",
            "InstanceCount": 1,
            "EndDateType": "unlimited",
            "InstanceMatchCriteria": "open",
            "ClientToken": token,
            "TagSpecifications": [
                {"ResourceType": "capacity-reservation", "Tags": [{"Key": "ec2ops:created-by", "Value": "ec2ops"}]}
            ],
        },
    )
    reservation_id = capacity.reserve(
        "m5.large", "us-east-1a", client_token=token, tags={"ec2ops:created-by": "ec2ops"}
    )
    assert reservation_id == "cr-0123456789abcdef0"


def test_cancel_of_a_reservation_already_gone_is_not_an_error(stubbed: tuple[Ec2Capacity, Stubber]) -> None:
    capacity, stubber = stubbed
    stubber.add_response(
        "cancel_capacity_reservation", {"Return": True}, {"CapacityReservationId": "cr-0123456789abcdef0"}
    )
    stubber.add_client_error(
        "cancel_capacity_reservation",
        service_error_code="InvalidCapacityReservationId.NotFound",
        expected_params={"CapacityReservationId": "cr-0123456789abcdef1"},
    )
    assert capacity.cancel("cr-0123456789abcdef0") is True
    assert capacity.cancel("cr-0123456789abcdef1") is False
