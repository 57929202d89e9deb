"""The EC2 calls ec2ops makes, behind one small class that tests and the emulator can stand in for."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Literal

import boto3
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef, InstanceTypeDef, SnapshotTypeDef, VolumeTypeDef

DeleteOutcome = Literal["deleted", "gone", "in_use"]

# DescribeSnapshots / DescribeVolumes accept at most 200 values per filter.
_FILTER_CHUNK = 200


def error_code(error: ClientError) -> str:
    """The AWS error code of a ClientError (`InvalidInstanceID.NotFound`, ...)."""
    return str(error.response.get("Error", {}).get("Code", ""))


def _chunks(values: list[str], size: int = _FILTER_CHUNK) -> Iterable[list[str]]:
    """Filter values in slices EC2 accepts."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


class LazyEc2Client:
    """Holds an EC2 client made on first use (never at import); tests pass their own."""

    def __init__(self, client: EC2Client | None = None) -> None:
        self._client = client

    @property
    def client(self) -> EC2Client:
        """The boto3 client, created lazily so importing a handler makes no AWS call."""
        if self._client is None:
            self._client = boto3.client("ec2")
        return self._client


class Ec2(LazyEc2Client):
    """EC2 access in the function's own region."""

    @property
    def region(self) -> str:
        """The region the calls go to, for messages that tell where something was looked for."""
        return str(self.client.meta.region_name)

    def describe_instance(self, instance_id: str) -> InstanceTypeDef | None:
        """The instance, or None when EC2 does not know the id (a malformed id counts as unknown)."""
        try:
            reservations = self.client.describe_instances(InstanceIds=[instance_id])["Reservations"]
        except ClientError as error:
            if error_code(error).startswith("InvalidInstanceID"):
                return None
            raise
        for reservation in reservations:
            for instance in reservation.get("Instances", []):
                if instance.get("InstanceId") == instance_id:
                    return instance
        return None

    def describe_volumes(self, volume_ids: list[str]) -> list[VolumeTypeDef]:
        """The volumes that exist among these ids (a volume detached meanwhile is simply absent)."""
        volumes: list[VolumeTypeDef] = []
        paginator = self.client.get_paginator("describe_volumes")
        for chunk in _chunks(volume_ids):
            for page in paginator.paginate(Filters=[{"Name": "volume-id", "Values": chunk}]):
                volumes.extend(page.get("Volumes", []))
        return volumes

    def snapshots_by_id(self, snapshot_ids: list[str]) -> list[SnapshotTypeDef]:
        """The account's snapshots among these ids; by filter: a missing one is absent, not an error."""
        snapshots: list[SnapshotTypeDef] = []
        for chunk in _chunks(snapshot_ids):
            snapshots.extend(self._describe_snapshots([{"Name": "snapshot-id", "Values": chunk}]))
        return snapshots

    def snapshots_tagged(self, tags: Mapping[str, str]) -> list[SnapshotTypeDef]:
        """The account's snapshots carrying every one of these tags, across all pages."""
        return self._describe_snapshots([{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()])

    def _describe_snapshots(self, filters: list[FilterTypeDef]) -> list[SnapshotTypeDef]:
        """Own snapshots only (never public or shared ones), every page."""
        snapshots: list[SnapshotTypeDef] = []
        paginator = self.client.get_paginator("describe_snapshots")
        for page in paginator.paginate(OwnerIds=["self"], Filters=filters):
            snapshots.extend(page.get("Snapshots", []))
        return snapshots

    def snapshot_ids_in_images(self) -> set[str]:
        """Snapshots that the account's own AMIs (disabled and deprecated included) are built from."""
        used: set[str] = set()
        paginator = self.client.get_paginator("describe_images")
        for page in paginator.paginate(Owners=["self"], IncludeDeprecated=True, IncludeDisabled=True):
            for image in page.get("Images", []):
                for mapping in image.get("BlockDeviceMappings", []):
                    snapshot_id = mapping.get("Ebs", {}).get("SnapshotId")
                    if snapshot_id:
                        used.add(snapshot_id)
        return used

    def delete_snapshot(self, snapshot_id: str) -> DeleteOutcome:
        """Delete one snapshot; one already gone is fine, one an AMI uses is reported, not raised."""
        try:
            self.client.delete_snapshot(SnapshotId=snapshot_id)
        except ClientError as error:
            code = error_code(error)
            if code == "InvalidSnapshot.NotFound":
                return "gone"
            if code == "InvalidSnapshot.InUse":
                return "in_use"
            raise
        return "deleted"
