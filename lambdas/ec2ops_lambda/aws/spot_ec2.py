"""The EC2 calls of spot failover: read the interrupted instance and the market, launch, move the identity.

Every method is one or two API calls, so the logic modules stay pure and the emulator runs the real calls. The
launch client makes one attempt per call: the launch loop does its own backoff for `RequestLimitExceeded`, on the
Lambda's clock and inside its deadline, and records each try (botocore's hidden retries would do neither).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ec2ops_lambda.aws.ec2 import Ec2, error_code

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

_ONE_ATTEMPT = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=20)
LINUX = "Linux/UNIX"


@dataclass(frozen=True)
class Observed:
    """An instance's state now, with EC2's reason when it stopped or terminated by itself."""

    state: str
    reason_code: str | None = None
    reason_message: str | None = None


class SpotEc2(Ec2):
    """EC2 for spot failover; its client makes single attempts (see the module docstring)."""

    @property
    def client(self) -> EC2Client:
        """The boto3 client, created lazily with one attempt per call."""
        if self._client is None:
            self._client = boto3.client("ec2", config=_ONE_ATTEMPT)
        return self._client

    # --- the interrupted instance -----------------------------------------------------------------------------
    def user_data(self, instance_id: str) -> str | None:
        """The instance's user data, base64 as EC2 keeps it; None when it has none or is already gone."""
        try:
            answer = self.client.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        except ClientError as error:
            if error_code(error).startswith("InvalidInstanceID"):
                return None
            raise
        value = answer.get("UserData", {}).get("Value")
        return str(value) if value else None

    def elastic_ip(self, instance_id: str) -> tuple[str, str] | None:
        """(allocation id, public IP) of the VPC Elastic IP associated with the instance, if any."""
        addresses = self.client.describe_addresses(Filters=[{"Name": "instance-id", "Values": [instance_id]}])
        for address in addresses.get("Addresses", []):
            if address.get("AllocationId"):
                return str(address["AllocationId"]), str(address.get("PublicIp", ""))
        return None

    # --- the market ---------------------------------------------------------------------------------------------
    def zone_ids(self) -> dict[str, str]:
        """AZ name -> zone id (placement scores speak zone ids)."""
        zones = self.client.describe_availability_zones()["AvailabilityZones"]
        return {str(zone["ZoneName"]): str(zone["ZoneId"]) for zone in zones}

    def subnets_by_zone(self, vpc_id: str, own_subnet: str, own_zone: str) -> dict[str, str]:
        """One subnet per AZ of the instance's VPC: its own in its AZ, else the lowest id (deterministic)."""
        found: dict[str, str] = {own_zone: own_subnet}
        paginator = self.client.get_paginator("describe_subnets")
        for page in paginator.paginate(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]):
            for subnet in page.get("Subnets", []):
                zone = str(subnet.get("AvailabilityZone", ""))
                subnet_id = str(subnet.get("SubnetId", ""))
                if zone and subnet_id and (zone not in found or (zone != own_zone and subnet_id < found[zone])):
                    found[zone] = subnet_id
        return found

    def offered_types(self, zones: Iterable[str]) -> set[str]:
        """Types offered in at least one of these AZs."""
        offered: set[str] = set()
        paginator = self.client.get_paginator("describe_instance_type_offerings")
        for page in paginator.paginate(
            LocationType="availability-zone", Filters=[{"Name": "location", "Values": sorted(zones)}]
        ):
            offered.update(str(item["InstanceType"]) for item in page.get("InstanceTypeOfferings", []))
        return offered

    def offerings_by_zone(self, instance_types: Iterable[str], zones: Iterable[str]) -> set[tuple[str, str]]:
        """(type, AZ) pairs EC2 offers among these types and AZs."""
        pairs: set[tuple[str, str]] = set()
        paginator = self.client.get_paginator("describe_instance_type_offerings")
        for page in paginator.paginate(
            LocationType="availability-zone",
            Filters=[
                {"Name": "location", "Values": sorted(zones)},
                {"Name": "instance-type", "Values": sorted(instance_types)},
            ],
        ):
            for item in page.get("InstanceTypeOfferings", []):
                pairs.add((str(item["InstanceType"]), str(item["Location"])))
        return pairs

    def architectures(self, instance_types: Iterable[str]) -> dict[str, set[str]]:
        """Supported CPU architectures per type; a type EC2 does not know is absent."""
        names = sorted(set(instance_types))
        found: dict[str, set[str]] = {}
        if not names:
            return found
        try:
            answer = self.client.describe_instance_types(InstanceTypes=names)  # type: ignore[arg-type]
        except ClientError as error:
            if error_code(error) != "InvalidInstanceType":
                raise
            return {name: archs for one in names for name, archs in self.architectures_of_one(one).items()}
        for info in answer.get("InstanceTypes", []):
            found[str(info["InstanceType"])] = set(info.get("ProcessorInfo", {}).get("SupportedArchitectures", []))
        return found

    def architectures_of_one(self, instance_type: str) -> dict[str, set[str]]:
        """One type's architectures, or nothing when EC2 does not know it (a typo in the alternates tag)."""
        try:
            answer = self.client.describe_instance_types(InstanceTypes=[instance_type])  # type: ignore[list-item]
        except ClientError as error:
            if error_code(error) == "InvalidInstanceType":
                return {}
            raise
        return {
            str(info["InstanceType"]): set(info.get("ProcessorInfo", {}).get("SupportedArchitectures", []))
            for info in answer.get("InstanceTypes", [])
        }

    def spot_prices(
        self, instance_types: Iterable[str], zones: Iterable[str], now: datetime
    ) -> dict[tuple[str, str], float]:
        """The current Linux spot price per (type, AZ): the newest entry of the last hours per pool."""
        wanted_zones = set(zones)
        newest: dict[tuple[str, str], tuple[datetime, float]] = {}
        paginator = self.client.get_paginator("describe_spot_price_history")
        for page in paginator.paginate(
            InstanceTypes=sorted(set(instance_types)),  # type: ignore[arg-type]
            ProductDescriptions=[LINUX, f"{LINUX} (Amazon VPC)"],
            StartTime=now - timedelta(hours=3),
            EndTime=now,
        ):
            for entry in page.get("SpotPriceHistory", []):
                key = (str(entry.get("InstanceType")), str(entry.get("AvailabilityZone")))
                if key[1] not in wanted_zones:
                    continue
                stamp = entry.get("Timestamp")
                moment = stamp if isinstance(stamp, datetime) else now
                price = float(entry.get("SpotPrice", "0") or 0)
                if price > 0 and (key not in newest or moment > newest[key][0]):
                    newest[key] = (moment, price)
        return {key: price for key, (_, price) in newest.items()}

    def placement_scores(self, instance_type: str, region: str) -> dict[str, int]:
        """Single-AZ placement scores (1..10) of one type for one instance, by zone id."""
        answer = self.client.get_spot_placement_scores(
            InstanceTypes=[instance_type],
            TargetCapacity=1,
            TargetCapacityUnitType="units",
            SingleAvailabilityZone=True,
            RegionNames=[region],
        )
        return {
            str(score["AvailabilityZoneId"]): int(score["Score"])
            for score in answer.get("SpotPlacementScores", [])
            if score.get("AvailabilityZoneId") and score.get("Score") is not None
        }

    # --- launch and watch ---------------------------------------------------------------------------------------
    def run_instance(self, request: Mapping[str, Any]) -> str:
        """RunInstances for one instance; returns its id (the same one again for a repeated ClientToken)."""
        answer = self.client.run_instances(**request)
        return str(answer["Instances"][0]["InstanceId"])

    def observe(self, instance_id: str) -> Observed:
        """The instance's state and state reason; an unknown id reads as `terminated` (it is gone)."""
        instance = self.describe_instance(instance_id)
        if instance is None:
            return Observed("terminated", "InvalidInstanceID.NotFound", "EC2 no longer lists the instance")
        reason = instance.get("StateReason", {})
        return Observed(
            str(instance.get("State", {}).get("Name", "unknown")), reason.get("Code"), reason.get("Message")
        )

    def terminate(self, instance_id: str) -> None:
        """TerminateInstances; an instance already gone is fine."""
        try:
            self.client.terminate_instances(InstanceIds=[instance_id])
        except ClientError as error:
            if not error_code(error).startswith("InvalidInstanceID"):
                raise

    # --- identity -----------------------------------------------------------------------------------------------
    def set_tags(self, instance_id: str, tags: Mapping[str, str]) -> None:
        """CreateTags (overwrites the values of existing keys)."""
        self.client.create_tags(
            Resources=[instance_id], Tags=[{"Key": key, "Value": value} for key, value in sorted(tags.items())]
        )

    def move_elastic_ip(self, allocation_id: str, instance_id: str) -> str:
        """Associate the Elastic IP with the instance, taking it from wherever it is; returns the public IP."""
        self.client.associate_address(AllocationId=allocation_id, InstanceId=instance_id, AllowReassociation=True)
        addresses = self.client.describe_addresses(AllocationIds=[allocation_id]).get("Addresses", [])
        return str(addresses[0].get("PublicIp", "")) if addresses else ""
