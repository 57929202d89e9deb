"""Stop, start, retype and observe one instance: the EC2 calls of the resize drive loop, behind a small interface.

The interface is a Protocol so the phase machine's tests can script EC2 (capacity errors, silent fallbacks, slow
stops, failing status checks) that moto cannot: moto stops and starts at once and always passes status checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from botocore.exceptions import ClientError

from ec2ops_lambda.aws.ec2 import LazyEc2Client, error_code
from ec2ops_lambda.errors import InstanceNotFound


@dataclass(frozen=True)
class InstanceView:
    """What one DescribeInstances says about the instance, reduced to what the phase machine decides on."""

    instance_id: str
    state: str
    instance_type: str
    reason_code: str | None = None
    reason_message: str | None = None
    reservation_target: str | None = None

    def describe(self) -> str:
        """`stopped on t3.large`: the words every message uses for where the instance stands."""
        return f"{self.state} on {self.instance_type}"


@dataclass(frozen=True)
class StatusChecks:
    """EC2's two status checks (`ok`, `impaired`, `initializing`, ...) and the instance state they were read in."""

    state: str
    system: str
    instance: str


class Instances(Protocol):
    """The instance calls drive and finish make; Ec2Instances on AWS, a scripted fake in the unit tests."""

    def observe(self, instance_id: str) -> InstanceView:
        """The instance's state, type, state reason and capacity reservation target."""
        ...

    def stop(self, instance_id: str) -> None:
        """Ask EC2 to stop the instance (it passes through `stopping`)."""
        ...

    def start(self, instance_id: str) -> None:
        """Ask EC2 to start the instance (it passes through `pending`, or falls back to `stopped`)."""
        ...

    def set_type(self, instance_id: str, instance_type: str) -> None:
        """Change the type of a stopped instance."""
        ...

    def set_reservation(self, instance_id: str, reservation_id: str | None) -> None:
        """Target a capacity reservation, or (None) go back to any open capacity; the instance must be stopped."""
        ...

    def status_checks(self, instance_id: str) -> StatusChecks:
        """The system and instance status checks, whatever the instance's state."""
        ...


class Ec2Instances(LazyEc2Client):
    """Instances on EC2, with a client made on first use (never at import)."""

    def observe(self, instance_id: str) -> InstanceView:
        """One DescribeInstances; an instance EC2 no longer lists raises InstanceNotFound."""
        try:
            reservations = self.client.describe_instances(InstanceIds=[instance_id])["Reservations"]
        except ClientError as error:
            if error_code(error).startswith("InvalidInstanceID"):
                raise InstanceNotFound(f"EC2 does not know {instance_id} (any more): {error}") from None
            raise
        for reservation in reservations:
            for instance in reservation.get("Instances", []):
                if instance.get("InstanceId") != instance_id:
                    continue
                reason = instance.get("StateReason", {})
                target = instance.get("CapacityReservationSpecification", {}).get("CapacityReservationTarget", {})
                return InstanceView(
                    instance_id=instance_id,
                    state=str(instance.get("State", {}).get("Name", "unknown")),
                    instance_type=str(instance.get("InstanceType", "")),
                    reason_code=reason.get("Code"),
                    reason_message=reason.get("Message"),
                    reservation_target=target.get("CapacityReservationId"),
                )
        raise InstanceNotFound(f"EC2 no longer lists {instance_id}: it was terminated or removed")

    def stop(self, instance_id: str) -> None:
        """StopInstances, a normal (not forced) stop so the OS shuts down cleanly."""
        self.client.stop_instances(InstanceIds=[instance_id])

    def start(self, instance_id: str) -> None:
        """StartInstances; a capacity failure is either raised here or seen later as a return to `stopped`."""
        self.client.start_instances(InstanceIds=[instance_id])

    def set_type(self, instance_id: str, instance_type: str) -> None:
        """ModifyInstanceAttribute InstanceType."""
        self.client.modify_instance_attribute(InstanceId=instance_id, InstanceType={"Value": instance_type})

    def set_reservation(self, instance_id: str, reservation_id: str | None) -> None:
        """ModifyInstanceCapacityReservationAttributes: target one reservation, or any open capacity."""
        if reservation_id is None:
            self.client.modify_instance_capacity_reservation_attributes(
                InstanceId=instance_id, CapacityReservationSpecification={"CapacityReservationPreference": "open"}
            )
            return
        self.client.modify_instance_capacity_reservation_attributes(
            InstanceId=instance_id,
            CapacityReservationSpecification={"CapacityReservationTarget": {"CapacityReservationId": reservation_id}},
        )

    def status_checks(self, instance_id: str) -> StatusChecks:
        """DescribeInstanceStatus with IncludeAllInstances, so a stopped instance answers too."""
        statuses = self.client.describe_instance_status(InstanceIds=[instance_id], IncludeAllInstances=True)
        for status in statuses.get("InstanceStatuses", []):
            if status.get("InstanceId") == instance_id:
                return StatusChecks(
                    state=str(status.get("InstanceState", {}).get("Name", "unknown")),
                    system=str(status.get("SystemStatus", {}).get("Status", "unknown")),
                    instance=str(status.get("InstanceStatus", {}).get("Status", "unknown")),
                )
        return StatusChecks(state="unknown", system="unknown", instance="unknown")
