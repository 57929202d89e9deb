"""On-demand capacity reservations: reserve a candidate type before the stop, cancel it when the resize ends.

The reservation is open (InstanceMatchCriteria="open"), never targeted: an instance whose preference is the default
`open` and whose type, platform and AZ match uses it by itself when it starts, so ec2ops never points the instance at
it, and cancelling it afterwards leaves nothing behind on the instance (an instance that targets a cancelled
reservation cannot launch, and its target can only be changed while it is stopped). The trade-off: an open
reservation can be taken by any matching instance, so another instance of the same type started in the same AZ
between the reservation and our start (the time the stop takes) may use it; the start may then meet a capacity
error, which the drive loop's usual no-capacity handling (rollback to the original type) takes care of.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from botocore.exceptions import ClientError

from ec2ops_lambda.aws.ec2 import LazyEc2Client, error_code

# Already cancelled or expired (IncorrectState: ours have no commitment, so only a non-active one is refused) or gone.
_GONE = {"InvalidCapacityReservationId.NotFound", "InvalidCapacityReservationId.Malformed", "IncorrectState"}
_TOKEN_LIMIT = 64


def client_token(instance_type: str, change_id: str) -> str:
    """The same request retried (a Lambda retry) gets the same reservation back, not a second billed one."""
    return f"{instance_type}-{change_id}"[:_TOKEN_LIMIT]


class Capacity(Protocol):
    """The reservation calls drive and finish make; Ec2Capacity on AWS, a scripted fake in the unit tests."""

    def reserve(self, instance_type: str, availability_zone: str, *, client_token: str, tags: Mapping[str, str]) -> str:
        """Reserve one instance of this type in this AZ, open to any matching instance; returns the reservation id."""
        ...

    def cancel(self, reservation_id: str) -> bool:
        """Cancel the reservation; False when it was already cancelled or gone."""
        ...


class Ec2Capacity(LazyEc2Client):
    """Capacity reservations on EC2, with a client made on first use (never at import)."""

    def reserve(self, instance_type: str, availability_zone: str, *, client_token: str, tags: Mapping[str, str]) -> str:
        """CreateCapacityReservation: one Linux/UNIX instance, open (used by a matching start), until cancelled."""
        response = self.client.create_capacity_reservation(
            InstanceType=instance_type,
            InstancePlatform="Linux/UNIX",
            AvailabilityZone=availability_zone,
            InstanceCount=1,
            EndDateType="unlimited",
            InstanceMatchCriteria="open",
            ClientToken=client_token,
            TagSpecifications=[
                {
                    "ResourceType": "capacity-reservation",
                    "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
                }
            ],
        )
        return str(response["CapacityReservation"]["CapacityReservationId"])

    def cancel(self, reservation_id: str) -> bool:
        """CancelCapacityReservation; one already cancelled, expired or unknown is not an error."""
        try:
            self.client.cancel_capacity_reservation(CapacityReservationId=reservation_id)
        except ClientError as error:
            if error_code(error) in _GONE:
                return False
            raise
        return True
