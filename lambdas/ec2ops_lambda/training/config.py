"""The training run functions' settings, from the environment the stack sets (cdk.json `training_*` keys)."""

from __future__ import annotations

from pydantic import Field

from ec2ops_lambda.settings import _Settings


class TrainingSettings(_Settings):
    """One settings object for the training run functions; each reads what it needs."""

    ledger_table: str = Field(alias="LEDGER_TABLE", min_length=1)
    topic_arn: str | None = Field(default=None, alias="TOPIC_ARN")
    bucket: str = Field(alias="TRAINING_BUCKET", min_length=3)
    ami_parameter: str = Field(default="", alias="TRAINING_AMI_PARAMETER")
    instance_profile_arn: str = Field(default="", alias="TRAINING_INSTANCE_PROFILE_ARN")
    subnets: str = Field(default="", alias="TRAINING_SUBNETS")
    """`subnet-a=us-east-1a,subnet-b=us-east-1b`: the app's public subnets, one per AZ."""
    security_group: str = Field(default="", alias="TRAINING_SECURITY_GROUP")
    heartbeat_seconds: int = Field(default=60, alias="TRAINING_HEARTBEAT_SECONDS", ge=1, le=3600)
    log_upload_seconds: int = Field(default=30, alias="TRAINING_LOG_UPLOAD_SECONDS", ge=1, le=3600)
    root_volume_gib: int = Field(default=100, alias="TRAINING_ROOT_VOLUME_GIB", ge=8, le=16384)
    expiry_margin_minutes: int = Field(default=30, alias="TRAINING_EXPIRY_MARGIN_MINUTES", ge=1, le=1440)
    stale_after_minutes: int = Field(default=15, alias="TRAINING_STALE_AFTER_MINUTES", ge=1, le=1440)
    state_machine_arn: str = Field(default="", alias="TRAINING_STATE_MACHINE_ARN")

    def subnet_zones(self) -> list[tuple[str, str]]:
        """(subnet, AZ) pairs in the order they are tried."""
        pairs = []
        for item in self.subnets.split(","):
            subnet, _, zone = item.strip().partition("=")
            if subnet and zone:
                pairs.append((subnet, zone))
        return pairs
