"""The ec2ops-training-run workflow's Lambda handlers: parse, call one logic function, return JSON."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from ec2ops_run_state import RunStateStore

from ec2ops_lambda import clock, settings
from ec2ops_lambda.aws.ledger import Ledger
from ec2ops_lambda.aws.training import TrainingAws
from ec2ops_lambda.training import close as close_logic
from ec2ops_lambda.training import start as start_logic
from ec2ops_lambda.training import sweep as sweep_logic
from ec2ops_lambda.training.config import TrainingSettings

logger = Logger(service="ec2ops-training-run")


def _store(aws: TrainingAws, config: TrainingSettings, env: str) -> RunStateStore:
    """The env's state file, on the clock the handler runs with (the emulator patches clock.utcnow)."""
    return RunStateStore(aws.s3, config.bucket, env, clock=clock.utcnow)


def _context(event: dict[str, Any]) -> tuple[TrainingSettings, TrainingAws, dict[str, Any]]:
    config = settings.load(TrainingSettings)
    run_plan = dict(event["plan"])
    logger.append_keys(env=run_plan["env"], run_id=run_plan["run_id"])
    return config, TrainingAws(), run_plan


@logger.inject_lambda_context(clear_state=True)
def plan(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Plan: validate the input against EC2, resolve the AMI; nothing is created."""
    config = settings.load(TrainingSettings)
    return start_logic.plan(
        event.get("request"),
        execution_id=str(event["execution_id"]),
        aws=TrainingAws(),
        config=config,
        now=clock.utcnow(),
    )


@logger.inject_lambda_context(clear_state=True)
def acquire(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Acquire: create the env's state file, or RunActive naming the run that holds it."""
    config, aws, run_plan = _context(event)
    return start_logic.acquire(
        run_plan,
        execution_id=str(event["execution_id"]),
        store=_store(aws, config, run_plan["env"]),
        aws=aws,
        bucket=config.bucket,
    )


@logger.inject_lambda_context(clear_state=True)
def launch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Launch: the instance, with the task token in its user data; the state machine waits for the instance."""
    config, aws, run_plan = _context(event)
    return start_logic.launch(
        run_plan,
        int(event["attempt"]),
        str(event["task_token"]),
        aws=aws,
        store=_store(aws, config, run_plan["env"]),
        ledger=Ledger(config.ledger_table),
        config=config,
        execution_id=str(event["execution_id"]),
        now=clock.utcnow(),
    )


def _close(event: dict[str, Any], closing: close_logic.Closing) -> dict[str, Any]:
    config, aws, run_plan = _context(event)
    return close_logic.close_run(
        run_plan["env"],
        run_plan["run_id"],
        closing,
        aws=aws,
        store=_store(aws, config, run_plan["env"]),
        ledger=Ledger(config.ledger_table),
        execution_id=str(event["execution_id"]),
        now=clock.utcnow(),
    )


@logger.inject_lambda_context(clear_state=True)
def finish(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Finish: the instance reported success; results_sync -> cleanup, archive, cost."""
    return _close(event, close_logic.Closing("succeeded"))


@logger.inject_lambda_context(clear_state=True)
def cleanup(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Cleanup: a failed step, a missed heartbeat, a timeout or no resume left; the run is closed as failed."""
    return _close(
        event, close_logic.closing_for(event.get("error"), resumes_exhausted=bool(event.get("resumes_exhausted")))
    )


@logger.inject_lambda_context(clear_state=True)
def reap(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The execution status change rule: close the run of an execution stopped, timed out or failed."""
    config = settings.load(TrainingSettings)
    aws = TrainingAws()
    return sweep_logic.reap(
        event,
        aws=aws,
        store_for=lambda env: _store(aws, config, env),
        ledger=Ledger(config.ledger_table),
        now=clock.utcnow(),
    )


@logger.inject_lambda_context(clear_state=True)
def sweep(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The schedule: expired instances terminated, stale locks broken."""
    config = settings.load(TrainingSettings)
    aws = TrainingAws()
    result = sweep_logic.sweep(
        aws=aws,
        store_for=lambda env: _store(aws, config, env),
        ledger=Ledger(config.ledger_table),
        config=config,
        now=clock.utcnow(),
    )
    logger.info("swept", extra=result)
    return result
