"""What the ec2ops-spot-failover steps pass each other (docs/spot-failover.md is the user's view of it).

Assess -> {action, outcome, incident, source}; Choose -> {ranked, spot_order, on_demand_order}; Launch -> the
replacement and every attempt; Promote -> where the identity went; Record -> the workflow's result. Each step
validates what it receives, so a hand-edited redrive fails with a named field instead of acting on bad data.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ec2ops_lambda.models.common import UtcDatetime
from ec2ops_lambda.spot.pool_choice import Pool

Market = Literal["spot", "on-demand"]
Policy = Literal["replace", "standby"]
Action = Literal["failover", "prepare", "promote", "none"]
Outcome = Literal["go", "ignored", "duplicate", "noted", "standby-pending"]


class _Step(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceInstance(_Step):
    """The interrupted instance as it was when assessed: what a replacement is launched from."""

    instance_id: str
    instance_type: str
    availability_zone: str
    subnet_id: str
    vpc_id: str
    image_id: str
    architecture: str
    security_group_ids: list[str]
    instance_profile_arn: str | None = None
    key_name: str | None = None
    user_data: str | None = None
    """Base64, as DescribeInstanceAttribute returns it and RunInstances takes it."""
    tags: dict[str, str]
    market: Market
    state: str
    allocation_id: str | None = None
    """The Elastic IP to move, read while the old instance still holds it."""
    public_ip: str | None = None
    policy: Policy
    alternate_types: list[str] = Field(default_factory=list)
    ignored_alternates: list[str] = Field(default_factory=list)
    http_tokens: str | None = None

    @property
    def pool(self) -> Pool:
        """The pool the instance runs in: the one never chosen for its replacement."""
        return Pool(self.instance_type, self.availability_zone)


class Incident(_Step):
    """One interruption of one instance; the execution that holds it acts, any other signal is a duplicate."""

    instance_id: str
    execution_id: str
    change_id: str
    signal_kind: str
    signal_action: str
    notice_time: UtcDatetime
    event_id: str | None = None
    standby_id: str | None = None
    standby_launch: LaunchResult | None = None
    """How the standby being promoted was launched (by the earlier prepare execution)."""


class AssessResult(_Step):
    """What the Assess step decided, and why in words (the execution's output when there is nothing to do)."""

    action: Action
    outcome: Outcome
    message: str
    instance_id: str
    incident: Incident | None = None
    source: SourceInstance | None = None


class PoolOption(_Step):
    """A pool to try, in order, with what it would cost."""

    instance_type: str
    availability_zone: str
    subnet_id: str
    spot_price: float | None = None
    on_demand_price: float | None = None

    @property
    def name(self) -> str:
        """`m5.large/us-east-1b`."""
        return f"{self.instance_type}/{self.availability_zone}"


class ChooseResult(_Step):
    """The ranked decision (every pool, with score parts or why it was excluded) and the orders to try."""

    ranked: list[dict[str, Any]]
    spot_order: list[PoolOption]
    on_demand_order: list[PoolOption]
    interrupted_pool: str
    price_source: str
    notes: list[str] = Field(default_factory=list)


class Attempt(_Step):
    """One RunInstances try: which pool and market, and what came of it."""

    pool: str
    market: Market
    outcome: Literal["running", "pool-failed", "spot-unavailable", "throttled", "lost-at-launch", "deadline"]
    code: str | None = None
    message: str | None = None
    at: UtcDatetime


class LaunchResult(_Step):
    """The replacement running, where and at what price, and every attempt it took."""

    instance_id: str
    instance_type: str
    availability_zone: str
    market: Market
    hourly_price: float | None
    on_demand_price: float | None
    client_token: str
    launched_at: UtcDatetime
    running_at: UtcDatetime
    attempts: list[Attempt]
    fell_back_because: str | None = None


class PromoteResult(_Step):
    """Where the identity is now: `replaced` (the replacement is primary) or `standby-ready`."""

    state: Literal["replaced", "standby-ready"]
    instance_id: str
    elastic_ip: str | None = None
    allocation_id: str | None = None
    at: UtcDatetime


Incident.model_rebuild()
AssessResult.model_rebuild()
