"""RecordFailure: a failed step after Assess is recorded, the incident released for a retry, and people told.

Best effort by design: whatever fails here is logged and skipped, so the execution still fails with the step's own
error name and cause (never this function's).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from ec2ops_lambda import clock
from ec2ops_lambda.aws.incidents import Incidents
from ec2ops_lambda.aws.ledger import Ledger, LedgerItem
from ec2ops_lambda.aws.notify import Notifier
from ec2ops_lambda.models.common import caught_error
from ec2ops_lambda.models.spot import AssessResult, LaunchResult
from ec2ops_lambda.spot.record import SUBJECT, WORKFLOW

logger = Logger(service="ec2ops-spot-failover", child=True)


def record_failure(
    assessed: AssessResult,
    launched: LaunchResult | None,
    error: Any,
    *,
    incidents: Incidents,
    ledger: Ledger,
    notifier: Notifier | None,
    execution_id: str,
) -> dict[str, str]:
    """Release the incident as failed, write a `spot-failure` item, publish; returns the error to fail with."""
    name, cause = caught_error(error)
    iid = assessed.instance_id
    incident = assessed.incident
    try:
        if incident is not None:
            incidents.failed(
                iid,
                incident.execution_id,
                phase=assessed.action,
                error=f"{name}: {cause}",
                replacement_id=launched.instance_id if launched else None,
            )
    except Exception:  # best effort: the execution must still fail with the step's own error
        logger.exception("could not mark the incident failed")
    what = f"spot {assessed.action} failed: {name}"
    if launched is not None:
        what += f"; the replacement {launched.instance_id} runs but was not promoted"
    try:
        now = clock.utcnow()
        ledger.put(
            LedgerItem(
                instance_id=iid,
                kind="spot-failure",
                change_id=incident.change_id if incident else execution_id.rsplit(":", 1)[-1],
                execution_id=execution_id,
                workflow=WORKFLOW,
                keyed_at=incident.notice_time if incident else now,
                at=now,
                what=what,
                why=cause[:2000],
                cost_effect={
                    "hourly_usd": launched.hourly_price if launched else 0,
                    "note": "a replacement left running bills until promoted or terminated" if launched else "none",
                },
                detail={
                    "error": name,
                    "cause": cause[:8000],
                    "replacement": launched.instance_id if launched else None,
                },
            )
        )
    except Exception:
        logger.exception("could not record the failure")
    if notifier is not None:
        try:
            notifier.publish(f"{SUBJECT}: {iid} FAILED", f"{what}\n\n{cause}")
        except Exception:
            logger.exception("could not publish the failure")
    return {"error": name, "cause": cause}
