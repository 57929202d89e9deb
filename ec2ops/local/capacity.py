"""On-demand capacity reservations, which moto does not implement at all.

Enough of the API for ec2ops: create (targeted or open, in one AZ), describe, cancel, and pointing an instance at
a reservation. A test can make a pool unreservable (`set_reservable(type, az, False)`): creating a reservation
there answers `InsufficientInstanceCapacity`, as EC2 does when the AZ has no room.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from moto.ec2.exceptions import EC2ClientError

from ec2ops.local.clock import EmulatorClock


@dataclass
class Reservation:
    reservation_id: str
    instance_type: str
    platform: str
    availability_zone: str
    zone_id: str
    count: int
    match_criteria: str
    end_date_type: str
    created: datetime
    tags: dict[str, str] = field(default_factory=dict)
    state: str = "active"
    instances: set[str] = field(default_factory=set)

    def as_api(self, account_id: str, region: str) -> dict[str, Any]:
        return {
            "CapacityReservationId": self.reservation_id,
            "OwnerId": account_id,
            "CapacityReservationArn": f"arn:aws:ec2:{region}:{account_id}:capacity-reservation/{self.reservation_id}",
            "AvailabilityZoneId": self.zone_id,
            "InstanceType": self.instance_type,
            "InstancePlatform": self.platform,
            "AvailabilityZone": self.availability_zone,
            "Tenancy": "default",
            "TotalInstanceCount": self.count,
            "AvailableInstanceCount": max(0, self.count - len(self.instances)),
            "EbsOptimized": False,
            "EphemeralStorage": False,
            "State": self.state,
            "StartDate": self.created,
            "EndDateType": self.end_date_type,
            "InstanceMatchCriteria": self.match_criteria,
            "CreateDate": self.created,
            "Tags": [{"Key": k, "Value": v} for k, v in self.tags.items()],
        }


class CapacityReservations:
    """The emulator's capacity reservation backend."""

    def __init__(self, clock: EmulatorClock) -> None:
        self.clock = clock
        self.reservations: dict[str, Reservation] = {}
        self.zone_ids: dict[str, str] = {}
        self._unreservable: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def set_reservable(self, instance_type: str, availability_zone: str, reservable: bool) -> None:
        with self._lock:
            if reservable:
                self._unreservable.discard((instance_type, availability_zone))
            else:
                self._unreservable.add((instance_type, availability_zone))

    def create(
        self,
        *,
        instance_type: str,
        platform: str,
        availability_zone: str,
        count: int,
        end_date_type: str,
        match_criteria: str,
        tags: dict[str, str],
    ) -> Reservation:
        if availability_zone not in self.zone_ids:
            raise EC2ClientError("InvalidParameterValue", f"Invalid availability zone: [{availability_zone}]")
        with self._lock:
            if (instance_type, availability_zone) in self._unreservable:
                raise EC2ClientError(
                    "InsufficientInstanceCapacity",
                    f"Insufficient capacity to reserve {instance_type} in {availability_zone}.",
                )
            reservation = Reservation(
                reservation_id=f"cr-{uuid.uuid4().hex[:17]}",
                instance_type=instance_type,
                platform=platform,
                availability_zone=availability_zone,
                zone_id=self.zone_ids[availability_zone],
                count=count,
                match_criteria=match_criteria,
                end_date_type=end_date_type,
                created=self.clock.now(),
                tags=tags,
            )
            self.reservations[reservation.reservation_id] = reservation
            return reservation

    def get(self, reservation_id: str) -> Reservation:
        reservation = self.reservations.get(reservation_id)
        if reservation is None:
            raise EC2ClientError(
                "InvalidCapacityReservationId.NotFound", f"The capacity reservation '{reservation_id}' does not exist"
            )
        return reservation

    def cancel(self, reservation_id: str) -> None:
        reservation = self.get(reservation_id)
        if reservation.state != "active":
            raise EC2ClientError(
                "IncorrectState",
                f"The capacity reservation '{reservation_id}' is {reservation.state} and cannot be cancelled",
            )
        reservation.state = "cancelled"

    def target(self, instance: Any, reservation_id: str | None) -> None:
        """Point a stopped instance at a reservation (EC2 requires it to be stopped), or at none."""
        if instance._state.name != "stopped":
            raise EC2ClientError(
                "IncorrectInstanceState", f"The instance '{instance.id}' is not in the 'stopped' state."
            )
        for reservation in self.reservations.values():
            reservation.instances.discard(instance.id)
        if reservation_id:
            reservation = self.get(reservation_id)
            if reservation.state != "active":
                raise EC2ClientError("InvalidParameterValue", f"capacity reservation {reservation_id} is not active")
            reservation.instances.add(instance.id)
