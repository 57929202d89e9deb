"""Read-only EC2 look-ups the resize plan makes: instance types, AZ offerings, stop protection, Elastic IPs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from ec2ops_lambda.aws.ec2 import Ec2, error_code

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.literals import InstanceTypeType
    from mypy_boto3_ec2.type_defs import InstanceTypeInfoTypeDef

UNKNOWN_TYPE = "InvalidInstanceType"


class Ec2Types:
    """Look-ups through the same lazily made client as `Ec2`, so a test or the emulator replaces both at once."""

    def __init__(self, ec2: Ec2 | None = None) -> None:
        self._ec2 = ec2 if ec2 is not None else Ec2()

    @property
    def client(self) -> EC2Client:
        """The EC2 client, made on first use (never at import)."""
        return self._ec2.client

    def describe_instance_types(self, names: Iterable[str]) -> dict[str, InstanceTypeInfoTypeDef]:
        """What EC2 says about each type it knows; an unknown type is simply absent from the answer."""
        wanted = list(dict.fromkeys(names))
        try:
            return self._describe_types(wanted)
        except ClientError as error:
            if error_code(error) != UNKNOWN_TYPE:
                raise
        # One unknown name fails the whole call: ask one by one to learn which names are real.
        known: dict[str, InstanceTypeInfoTypeDef] = {}
        for name in wanted:
            try:
                known.update(self._describe_types([name]))
            except ClientError as error:
                if error_code(error) != UNKNOWN_TYPE:
                    raise
        return known

    def _describe_types(self, names: list[str]) -> dict[str, InstanceTypeInfoTypeDef]:
        """One DescribeInstanceTypes call, every page, keyed by type name."""
        found: dict[str, InstanceTypeInfoTypeDef] = {}
        if not names:
            return found
        paginator = self.client.get_paginator("describe_instance_types")
        types: list[InstanceTypeType] = names  # type: ignore[assignment]  # any text; EC2 says which are real
        for page in paginator.paginate(InstanceTypes=types):
            for info in page.get("InstanceTypes", []):
                found[str(info.get("InstanceType"))] = info
        return found

    def offered_in_zone(self, names: Iterable[str], zone: str) -> set[str]:
        """Which of these types EC2 offers in this Availability Zone."""
        wanted = list(dict.fromkeys(names))
        offered: set[str] = set()
        if not wanted:
            return offered
        paginator = self.client.get_paginator("describe_instance_type_offerings")
        pages = paginator.paginate(
            LocationType="availability-zone",
            Filters=[{"Name": "location", "Values": [zone]}, {"Name": "instance-type", "Values": wanted}],
        )
        for page in pages:
            for offering in page.get("InstanceTypeOfferings", []):
                if offering.get("Location") == zone:
                    offered.add(str(offering.get("InstanceType")))
        return offered

    def stop_protected(self, instance_id: str) -> bool:
        """Whether stop protection (disableApiStop) is on: a StopInstances call would be refused."""
        answer = self.client.describe_instance_attribute(InstanceId=instance_id, Attribute="disableApiStop")
        return bool(answer.get("DisableApiStop", {}).get("Value", False))

    def elastic_ips(self, instance_id: str) -> set[str]:
        """The Elastic IP addresses associated with the instance (they survive a stop; other public IPv4s do not)."""
        answer = self.client.describe_addresses(Filters=[{"Name": "instance-id", "Values": [instance_id]}])
        return {str(address["PublicIp"]) for address in answer.get("Addresses", []) if address.get("PublicIp")}
