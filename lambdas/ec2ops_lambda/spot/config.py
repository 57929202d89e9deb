"""The spot failover functions' settings, from the environment the stack sets (cdk.json `spot_*` keys)."""

from __future__ import annotations

from pydantic import Field

from ec2ops_lambda.settings import _Settings


class SpotSettings(_Settings):
    """One settings object for the spot failover functions; each reads what it needs."""

    ledger_table: str = Field(alias="LEDGER_TABLE", min_length=1)
    topic_arn: str | None = Field(default=None, alias="TOPIC_ARN")
    bad_pool_minutes: int = Field(default=60, alias="SPOT_BAD_POOL_MINUTES", ge=1, le=7 * 24 * 60)
    """How long a pool that failed a launch, was interrupted or got a rebalance recommendation is avoided."""
    launch_deadline_seconds: int = Field(default=100, alias="SPOT_LAUNCH_DEADLINE_SECONDS", ge=10, le=840)
    """How long Launch may take to get a replacement running, attempts and waiting included."""
    poll_seconds: int = Field(default=2, alias="SPOT_POLL_SECONDS", ge=1, le=30)
    """How often Launch looks at a pending replacement."""
