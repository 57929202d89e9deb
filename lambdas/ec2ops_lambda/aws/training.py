"""The AWS calls of the training run workflow, behind one small class: EC2, S3 and SSM, each made on first use."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import ClientError

from ec2ops_lambda.aws.ec2 import LazyEc2Client, error_code
from ec2ops_lambda.errors import ConfigurationError

RUN_TAG = "ec2ops:run-id"
EXPIRES_TAG = "ec2ops:expires-at"
LIVE_STATES = ("pending", "running", "stopping", "stopped")


class TrainingAws(LazyEc2Client):
    """EC2 for the instances, S3 for the state file and scripts, SSM for the AMI."""

    def __init__(self, ec2: Any | None = None, s3: Any | None = None, ssm: Any | None = None) -> None:
        super().__init__(ec2)
        self._s3 = s3
        self._ssm = ssm

    @property
    def s3(self) -> Any:
        """The S3 client, created lazily."""
        if self._s3 is None:
            self._s3 = boto3.client("s3")
        return self._s3

    @property
    def ssm(self) -> Any:
        """The SSM client, created lazily."""
        if self._ssm is None:
            self._ssm = boto3.client("ssm")
        return self._ssm

    # --- plan ---------------------------------------------------------------------------------------------------
    def architectures(self, instance_type: str) -> set[str] | None:
        """The type's CPU architectures, or None when EC2 does not know the type."""
        try:
            answer = self.client.describe_instance_types(InstanceTypes=[instance_type])  # type: ignore[list-item]
        except ClientError as error:
            if error_code(error) == "InvalidInstanceType":
                return None
            raise
        for info in answer.get("InstanceTypes", []):
            return set(info.get("ProcessorInfo", {}).get("SupportedArchitectures", []))
        return None

    def offered_zones(self, instance_type: str, zones: Iterable[str]) -> set[str]:
        """The AZs among `zones` where EC2 offers the type."""
        answer = self.client.describe_instance_type_offerings(
            LocationType="availability-zone",
            Filters=[
                {"Name": "location", "Values": sorted(zones)},
                {"Name": "instance-type", "Values": [instance_type]},
            ],
        )
        return {str(item["Location"]) for item in answer.get("InstanceTypeOfferings", [])}

    def parameter(self, name: str) -> str:
        """An SSM parameter's value; a missing one is a ConfigurationError naming it."""
        try:
            return str(self.ssm.get_parameter(Name=name)["Parameter"]["Value"])
        except ClientError as error:
            if error_code(error) == "ParameterNotFound":
                raise ConfigurationError(
                    f"the training AMI parameter {name} does not exist in this region: set training_ami_parameter "
                    "in cdk.json to an SSM parameter holding an AMI id, and redeploy"
                ) from None
            raise

    def image(self, image_id: str) -> dict[str, Any] | None:
        """The AMI, or None when it does not exist (any more)."""
        try:
            images = self.client.describe_images(ImageIds=[image_id]).get("Images", [])
        except ClientError as error:
            if error_code(error).startswith("InvalidAMIID"):
                return None
            raise
        return dict(images[0]) if images else None

    def spot_price(self, instance_type: str, zone: str, now: datetime) -> float | None:
        """The newest Linux spot price of the pool in the last hours, or None."""
        answer = self.client.describe_spot_price_history(
            InstanceTypes=[instance_type],  # type: ignore[list-item]
            AvailabilityZone=zone,
            ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
            StartTime=now - timedelta(hours=3),
            EndTime=now,
        )
        entries = [e for e in answer.get("SpotPriceHistory", []) if e.get("AvailabilityZone") == zone]
        if not entries:
            return None
        newest = max(entries, key=lambda e: e.get("Timestamp") or now)
        return float(newest["SpotPrice"])

    # --- launch -------------------------------------------------------------------------------------------------
    def run_instance(self, request: dict[str, Any]) -> dict[str, Any]:
        """RunInstances for one instance; the instance as EC2 described it."""
        return dict(self.client.run_instances(**request)["Instances"][0])

    def put_object(self, key: str, body: bytes, bucket: str) -> None:
        """One object, SSE-S3 as the bucket's default."""
        self.s3.put_object(Bucket=bucket, Key=key, Body=body)

    # --- cleanup ------------------------------------------------------------------------------------------------
    def run_instances_of(self, run_id: str) -> list[dict[str, Any]]:
        """Every instance tagged with the run id, whatever its state."""
        found: list[dict[str, Any]] = []
        paginator = self.client.get_paginator("describe_instances")
        for page in paginator.paginate(Filters=[{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}]):
            for reservation in page.get("Reservations", []):
                found.extend(dict(instance) for instance in reservation.get("Instances", []))
        return found

    def training_instances(self) -> list[dict[str, Any]]:
        """Every live instance carrying a run id (for the sweeper)."""
        found: list[dict[str, Any]] = []
        paginator = self.client.get_paginator("describe_instances")
        for page in paginator.paginate(
            Filters=[
                {"Name": "tag-key", "Values": [RUN_TAG]},
                {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
            ]
        ):
            for reservation in page.get("Reservations", []):
                found.extend(dict(instance) for instance in reservation.get("Instances", []))
        return found

    def terminate(self, instance_ids: list[str]) -> None:
        """TerminateInstances; instances already gone are fine."""
        if not instance_ids:
            return
        try:
            self.client.terminate_instances(InstanceIds=instance_ids)
        except ClientError as error:
            if not error_code(error).startswith("InvalidInstanceID"):
                raise

    def state_file_envs(self, bucket: str) -> list[str]:
        """Envs that have a state file (`<env>/system-state.json`), i.e. a run holding the lock."""
        envs: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Delimiter="/"):
            for prefix in page.get("CommonPrefixes", []):
                env = str(prefix["Prefix"]).rstrip("/")
                if env == "cached-datasets":
                    continue
                try:
                    self.s3.head_object(Bucket=bucket, Key=f"{env}/system-state.json")
                except ClientError as error:
                    if error_code(error) in ("404", "NoSuchKey", "NotFound"):
                        continue
                    raise
                envs.append(env)
        return envs
