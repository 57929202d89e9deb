"""The app's configuration: the `ec2ops` key of the cdk.json context, validated once at synth."""

from __future__ import annotations

import re
from typing import Annotated, Any, Self

from constructs import Construct
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stacks import constants as c


class ConfigError(ValueError):
    """A bad `ec2ops` context: the message names the key and says what is allowed."""


def _bounded(bounds: tuple[int, int]) -> Any:
    low, high = bounds
    return Field(ge=low, le=high, strict=True)


class Ec2OpsConfig(BaseModel):
    """Every setting the stacks read; unknown keys are refused so a typo cannot silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    environment: Annotated[str, Field(pattern=c.ENVIRONMENT_PATTERN)] = "dev"
    region: Annotated[str, Field(pattern=c.REGION_PATTERN)] = "us-east-1"
    availability_zones: tuple[str, ...] = ("us-east-1a", "us-east-1b")
    snapshot_poll_seconds: Annotated[int, _bounded(c.SNAPSHOT_POLL_SECONDS)] = 15
    snapshot_timeout_minutes: Annotated[int, _bounded(c.SNAPSHOT_TIMEOUT_MINUTES)] = 60
    snapshot_retain_count: Annotated[int, _bounded(c.SNAPSHOT_RETAIN_COUNT)] = 7
    snapshot_retain_days: Annotated[int, _bounded(c.SNAPSHOT_RETAIN_DAYS)] = 30
    resize_poll_seconds: Annotated[int, _bounded(c.RESIZE_POLL_SECONDS)] = 10
    resize_stop_timeout_minutes: Annotated[int, _bounded(c.RESIZE_STOP_TIMEOUT_MINUTES)] = 10
    resize_start_timeout_minutes: Annotated[int, _bounded(c.RESIZE_START_TIMEOUT_MINUTES)] = 10
    resize_status_check_timeout_minutes: Annotated[int, _bounded(c.RESIZE_STATUS_CHECK_TIMEOUT_MINUTES)] = 15
    resize_rollback_attempts: Annotated[int, _bounded(c.RESIZE_ROLLBACK_ATTEMPTS)] = 5
    spot_bad_pool_minutes: Annotated[int, _bounded(c.SPOT_BAD_POOL_MINUTES)] = 60
    spot_launch_deadline_seconds: Annotated[int, _bounded(c.SPOT_LAUNCH_DEADLINE_SECONDS)] = 100
    spot_poll_seconds: Annotated[int, _bounded(c.SPOT_POLL_SECONDS)] = 2
    training_ami_parameter: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_./-]{1,1010}$")] = (
        c.TRAINING_DEFAULT_AMI_PARAMETER
    )
    training_heartbeat_seconds: Annotated[int, _bounded(c.TRAINING_HEARTBEAT_SECONDS)] = 60
    training_heartbeat_timeout_seconds: Annotated[int, _bounded(c.TRAINING_HEARTBEAT_TIMEOUT_SECONDS)] = 300
    training_root_volume_gib: Annotated[int, _bounded(c.TRAINING_ROOT_VOLUME_GIB)] = 100
    training_sweep_minutes: Annotated[int, _bounded(c.TRAINING_SWEEP_MINUTES)] = 5
    training_stale_after_minutes: Annotated[int, _bounded(c.TRAINING_STALE_AFTER_MINUTES)] = 15
    log_retention_days: Annotated[int, Field(strict=True)] = 30
    powertools_layer_version: Annotated[int, Field(ge=1, strict=True)] = 27
    enable_alarms: Annotated[bool, Field(strict=True)] = False
    enable_kms_key: Annotated[bool, Field(strict=True)] = False

    @field_validator("log_retention_days")
    @classmethod
    def _cloudwatch_allows(cls, value: int) -> int:
        if value not in c.LOG_RETENTION_DAYS:
            allowed = ", ".join(str(days) for days in c.LOG_RETENTION_DAYS)
            raise ValueError(f"{value} is not a CloudWatch Logs retention period; use one of {allowed}")
        return value

    @field_validator("availability_zones", mode="before")
    @classmethod
    def _az_list(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple) or not all(isinstance(az, str) for az in value):
            raise ValueError('must be a list of availability zone names, e.g. ["us-east-1a", "us-east-1b"]')
        if not 1 <= len(value) <= c.MAX_AVAILABILITY_ZONES:
            raise ValueError(f"must name 1 to {c.MAX_AVAILABILITY_ZONES} availability zones, got {len(value)}")
        if len(set(value)) != len(value):
            raise ValueError(f"names an availability zone twice: {list(value)}")
        return tuple(value)

    @model_validator(mode="after")
    def _heartbeats_fit_their_timeout(self) -> Self:
        if self.training_heartbeat_timeout_seconds < 2 * self.training_heartbeat_seconds:
            raise ValueError(
                f"training_heartbeat_timeout_seconds: must be at least twice training_heartbeat_seconds "
                f"({self.training_heartbeat_seconds}), so one late heartbeat does not fail a healthy run"
            )
        return self

    @model_validator(mode="after")
    def _zones_in_region(self) -> Self:
        outside = [az for az in self.availability_zones if not re.fullmatch(rf"{re.escape(self.region)}[a-z]", az)]
        if outside:
            raise ValueError(f"availability_zones: {outside} are not zones of region {self.region!r}")
        return self

    @property
    def powertools_layer_arn(self) -> str:
        """The AWS-managed public Powertools layer in this region (it carries pydantic)."""
        return (
            f"arn:aws:lambda:{self.region}:{c.POWERTOOLS_ACCOUNT}:layer:"
            f"{c.POWERTOOLS_LAYER_NAME}:{self.powertools_layer_version}"
        )

    @property
    def stack_name(self) -> str:
        return f"{c.APP_NAME}-{self.environment}"

    @classmethod
    def parse(cls, raw: Any) -> Ec2OpsConfig:
        """Validate the raw context value; every problem is reported with the key it belongs to."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"cdk.json context {c.CONTEXT_KEY!r} must be an object, got {type(raw).__name__}")
        try:
            return cls.model_validate(raw)
        except ValidationError as error:
            raise ConfigError(_describe(error, raw)) from None

    @classmethod
    def from_scope(cls, scope: Construct) -> Ec2OpsConfig:
        """The config of the app that `scope` belongs to (context key `ec2ops`)."""
        return cls.parse(scope.node.try_get_context(c.CONTEXT_KEY))


def _describe(error: ValidationError, raw: dict[str, Any]) -> str:
    problems = []
    allowed = ", ".join(Ec2OpsConfig.model_fields)
    for item in error.errors():
        key = str(item["loc"][0]) if item["loc"] else ""
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key {key!r} (allowed keys: {allowed})")
            continue
        message = item["msg"].removeprefix("Value error, ")
        if not key:  # a check across keys names its key first: "availability_zones: ..."
            key, _, message = message.partition(": ")
        got = f" (got {raw[key]!r})" if key in raw else ""
        problems.append(f"key {key!r}: {message}{got}")
    return f"invalid cdk.json context {c.CONTEXT_KEY!r}: " + "; ".join(problems)
