"""Prune step: delete the instance's older ec2ops snapshot sets that retention no longer keeps."""

from __future__ import annotations

from aws_lambda_powertools import Logger

from ec2ops_lambda import clock
from ec2ops_lambda.aws.ec2 import Ec2
from ec2ops_lambda.models.snapshot import PruneEvent, PruneResult
from ec2ops_lambda.snapshot import retention

logger = Logger(service="ec2ops-snapshot", child=True)


def prune(event: PruneEvent, *, ec2: Ec2) -> PruneResult:
    """Apply the plan's retention to the instance's ec2ops sets; hand-made snapshots are never even listed."""
    plan = event.plan
    logger.append_keys(instance_id=plan.instance_id, change_id=plan.change_id)
    snapshots = ec2.snapshots_tagged(
        {retention.CREATED_BY_TAG: retention.CREATED_BY_VALUE, retention.INSTANCE_TAG: plan.instance_id}
    )
    sets = retention.group_sets(snapshots, instance_id=plan.instance_id, used_by_images=ec2.snapshot_ids_in_images())
    decision = retention.choose(
        sets,
        count=plan.retain.count,
        days=plan.retain.days,
        now=clock.utcnow(),
        always_keep={plan.change_id},
    )
    result = PruneResult(
        kept_sets=[s.change_id for s in decision.keep],
        protected=[snapshot_id for s in decision.protected for snapshot_id in s.snapshot_ids],
    )
    for doomed in decision.delete:
        in_use = []
        for snapshot_id in doomed.snapshot_ids:
            outcome = ec2.delete_snapshot(snapshot_id)
            if outcome == "in_use":
                in_use.append(snapshot_id)
            elif outcome == "deleted":
                result.deleted.append(snapshot_id)
        if in_use:
            # An AMI registered since we looked: what is left of the set stays, and says why.
            logger.warning("snapshot in use by an AMI, kept", extra={"set": doomed.change_id, "snapshots": in_use})
            result.protected.extend(in_use)
            result.kept_sets.append(doomed.change_id)
        else:
            result.deleted_sets.append(doomed.change_id)
    result.kept_sets.extend(s.change_id for s in decision.protected)
    created = {s.change_id: s.created for s in sets}
    result.kept_sets.sort(key=lambda change_id: created[change_id], reverse=True)
    logger.info(
        "retention applied",
        extra={"retain": plan.retain.model_dump(), **result.model_dump()},
    )
    return result
