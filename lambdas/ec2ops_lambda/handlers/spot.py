"""The ec2ops-spot-failover workflow's Lambda handlers: parse, call one logic function, return JSON."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from ec2ops_lambda import clock, settings
from ec2ops_lambda.aws.bad_pools import BadPools
from ec2ops_lambda.aws.incidents import Incidents
from ec2ops_lambda.aws.ledger import Ledger
from ec2ops_lambda.aws.notify import Notifier
from ec2ops_lambda.aws.spot_ec2 import SpotEc2
from ec2ops_lambda.models.spot import AssessResult, ChooseResult, LaunchResult, PromoteResult
from ec2ops_lambda.pricing import PriceBook
from ec2ops_lambda.spot import assess as assess_logic
from ec2ops_lambda.spot import choose as choose_logic
from ec2ops_lambda.spot import failure as failure_logic
from ec2ops_lambda.spot import launch as launch_logic
from ec2ops_lambda.spot import promote as promote_logic
from ec2ops_lambda.spot import record as record_logic
from ec2ops_lambda.spot.config import SpotSettings

logger = Logger(service="ec2ops-spot-failover")


def _assessed(event: dict[str, Any]) -> AssessResult:
    """The Assess result every later step receives; it names the instance, the incident and the source."""
    assessed = AssessResult.model_validate(event["assess"])
    logger.append_keys(instance_id=assessed.instance_id, action=assessed.action)
    return assessed


def _go(assessed: AssessResult) -> tuple[Any, Any]:
    if assessed.source is None or assessed.incident is None:
        raise ValueError(f"{assessed.action} of {assessed.instance_id} needs the source instance and the incident")
    return assessed.source, assessed.incident


@logger.inject_lambda_context(clear_state=True)
def assess(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Assess: the signal, the refusals, and the incident claim (exactly one failover per incident)."""
    config = settings.load(SpotSettings)
    logger.append_keys(env=config.env)
    table = config.ledger_table
    result = assess_logic.assess(
        event.get("input"),
        assess_logic.AssessContext(
            execution_id=str(event["execution_id"]),
            change_id=str(event["change_id"]),
            ec2=SpotEc2(),
            incidents=Incidents(table),
            bad_pools=BadPools(table),
            ledger=Ledger(table),
            config=config,
        ),
    )
    logger.info("assessed", extra={"action": result.action, "outcome": result.outcome, "instance": result.instance_id})
    return result.model_dump(mode="json")


@logger.inject_lambda_context(clear_state=True)
def choose(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Choose: the candidate pools ranked, with each score part."""
    config = settings.load(SpotSettings)
    source, _incident = _go(_assessed(event))
    market = choose_logic.Market(ec2=SpotEc2(), bad_pools=BadPools(config.ledger_table), prices=PriceBook())
    return choose_logic.choose(source, market, now=clock.utcnow()).model_dump(mode="json")


@logger.inject_lambda_context(clear_state=True)
def launch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Launch: a replacement running in the best pool that has capacity, before the deadline."""
    config = settings.load(SpotSettings)
    assessed = _assessed(event)
    source, incident = _go(assessed)
    result = launch_logic.launch(
        source,
        incident,
        ChooseResult.model_validate(event["choice"]),
        role="standby" if assessed.action == "prepare" else "primary",
        ec2=SpotEc2(),
        pools=BadPools(config.ledger_table),
        deadline_seconds=config.launch_deadline_seconds,
        poll_seconds=config.poll_seconds,
        bad_pool_minutes=config.bad_pool_minutes,
    )
    return result.model_dump(mode="json")


@logger.inject_lambda_context(clear_state=True)
def promote(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Promote: the Elastic IP and role tags to the replacement, or the standby parked."""
    config = settings.load(SpotSettings)
    assessed = _assessed(event)
    source, incident = _go(assessed)
    launched = LaunchResult.model_validate(event["launch"]) if event.get("launch") else None
    result = promote_logic.promote(
        assessed.action, source, incident, launched, ec2=SpotEc2(), incidents=Incidents(config.ledger_table)
    )
    return result.model_dump(mode="json")


@logger.inject_lambda_context(clear_state=True)
def record(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Record: the switch in the ledger with prices and savings; the workflow's output and message."""
    config = settings.load(SpotSettings)
    assessed = _assessed(event)
    source, incident = _go(assessed)
    return record_logic.record(
        assessed.action,
        source,
        incident,
        ChooseResult.model_validate(event["choice"]) if event.get("choice") else None,
        LaunchResult.model_validate(event["launch"]) if event.get("launch") else None,
        PromoteResult.model_validate(event["promotion"]),
        ledger=Ledger(config.ledger_table),
        execution_id=str(event["execution_id"]),
    )


@logger.inject_lambda_context(clear_state=True)
def record_failure(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """RecordFailure: incident released as failed, a spot-failure item, a message; returns the error to fail with."""
    config = settings.load(SpotSettings)
    assessed = _assessed(event)
    return failure_logic.record_failure(
        assessed,
        LaunchResult.model_validate(event["launch"]) if event.get("launch") else None,
        event.get("error"),
        incidents=Incidents(config.ledger_table),
        ledger=Ledger(config.ledger_table),
        notifier=Notifier(config.topic_arn) if config.topic_arn else None,
        execution_id=str(event["execution_id"]),
    )
