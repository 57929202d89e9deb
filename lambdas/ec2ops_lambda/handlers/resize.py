"""The ec2ops-resize workflow's Lambda handlers (lock, drive, finish): parse, call one logic function, return JSON."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from ec2ops_lambda import settings
from ec2ops_lambda.aws.capacity import Ec2Capacity
from ec2ops_lambda.aws.instances import Ec2Instances
from ec2ops_lambda.aws.ledger import Ledger
from ec2ops_lambda.aws.lock import Lock
from ec2ops_lambda.models.resize_progress import DriveEvent, FinishEvent, LockEvent
from ec2ops_lambda.resize import drive as drive_logic
from ec2ops_lambda.resize import finish as finish_logic
from ec2ops_lambda.resize.revert import RevertSchedules

logger = Logger(service="ec2ops-resize")


@logger.inject_lambda_context(clear_state=True)
def lock(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lock: one execution per instance; acquire raises InstanceLocked naming the holder, release never refuses."""
    config = settings.load(finish_logic.LockSettings)
    logger.append_keys(env=config.env)
    request = LockEvent.model_validate(event)
    logger.append_keys(instance_id=request.instance_id, action=request.action)
    table = Lock(config.ledger_table)
    if request.action == "acquire":
        status = table.acquire(request.instance_id, request.execution_id, request.workflow)
    else:
        status = table.release(request.instance_id, request.execution_id)
    return status.as_dict()


@logger.inject_lambda_context(clear_state=True)
def drive(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Drive: one step of the stop / modify / start / verify / rollback phase machine."""
    config = settings.load(drive_logic.DriveSettings)
    logger.append_keys(env=config.env)
    request = DriveEvent.model_validate(event)
    logger.append_keys(instance_id=request.plan.instance_id, change_id=request.plan.change_id)
    progress = drive_logic.drive(request, instances=Ec2Instances(), capacity=Ec2Capacity(), config=config)
    return progress.model_dump(mode="json")


@logger.inject_lambda_context(clear_state=True)
def finish(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Finish: cancel the reservation, schedule the revert, record, release the lock; the workflow's result."""
    config = settings.load(finish_logic.FinishSettings)
    logger.append_keys(env=config.env)
    request = FinishEvent.model_validate(event)
    logger.append_keys(instance_id=request.plan.instance_id, change_id=request.plan.change_id)
    result = finish_logic.finish(
        request,
        instances=Ec2Instances(),
        capacity=Ec2Capacity(),
        ledger=Ledger(config.ledger_table),
        lock=Lock(config.ledger_table),
        schedules=RevertSchedules(config.schedule_group),
        config=config,
    )
    return result.model_dump(mode="json")
