"""The ec2ops-snapshot workflow's Lambda handlers: parse, call one logic function, return JSON for the next state."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from ec2ops_lambda import settings
from ec2ops_lambda.aws.ec2 import Ec2
from ec2ops_lambda.aws.ledger import Ledger
from ec2ops_lambda.aws.notify import Notifier
from ec2ops_lambda.models.snapshot import ProgressEvent, PruneEvent, RecordEvent
from ec2ops_lambda.snapshot import plan as plan_logic
from ec2ops_lambda.snapshot import progress as progress_logic
from ec2ops_lambda.snapshot import prune as prune_logic
from ec2ops_lambda.snapshot import record as record_logic

logger = Logger(service="ec2ops-snapshot")


@logger.inject_lambda_context(clear_state=True)
def plan(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Plan: refuse bad input or an unfit instance before anything is created."""
    config = settings.load(settings.PlanSettings)
    logger.append_keys(env=config.env)
    return plan_logic.make_plan(event, settings=config, ec2=Ec2()).model_dump(mode="json")


@logger.inject_lambda_context(clear_state=True)
def progress(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """CheckSnapshots: tell the wait loop whether the set is complete; raise when it never will be."""
    return progress_logic.check_progress(ProgressEvent.model_validate(event), ec2=Ec2()).model_dump(mode="json")


@logger.inject_lambda_context(clear_state=True)
def prune(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Prune: delete older ec2ops sets of the instance beyond retention."""
    return prune_logic.prune(PruneEvent.model_validate(event), ec2=Ec2()).model_dump(mode="json")


@logger.inject_lambda_context(clear_state=True)
def record(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Record: one ledger item, and the workflow's output."""
    config = settings.load(settings.RecordSettings)
    logger.append_keys(env=config.env)
    result = record_logic.record(RecordEvent.model_validate(event), ledger=Ledger(config.ledger_table))
    return result.model_dump(mode="json")


@logger.inject_lambda_context(clear_state=True)
def record_failure(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """RecordFailure: compensate, record and notify, then hand the Fail state its error and cause; never raises."""
    config = settings.load(settings.RecordFailureSettings)
    logger.append_keys(env=config.env)
    failure = record_logic.record_failure(
        event,
        ec2=Ec2(),
        ledger=Ledger(config.ledger_table) if config.ledger_table else None,
        notifier=Notifier(config.topic_arn) if config.topic_arn else None,
        env=config.env,
    )
    return failure.model_dump(mode="json")
