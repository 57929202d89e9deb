"""Promote: make the replacement the instance others reach (its Elastic IP and role tags), or park a standby.

- failover: the new instance becomes primary at once.
- prepare: the standby is parked (`standby-ready`) unless a warning came while it launched; then it is promoted now.
- promote: a standby prepared earlier becomes primary, with no launch; it must be running.
The old instance is tagged `ec2ops:role=interrupted` and `ec2ops:replaced-by`; when it is already gone, that is fine.
"""

from __future__ import annotations

from typing import Protocol

from botocore.exceptions import ClientError

from ec2ops_lambda import clock
from ec2ops_lambda.aws.ec2 import error_code
from ec2ops_lambda.aws.incidents import Incidents
from ec2ops_lambda.aws.spot_ec2 import Observed
from ec2ops_lambda.errors import PromotionFailed
from ec2ops_lambda.models.common import iso
from ec2ops_lambda.models.spot import Action, Incident, LaunchResult, PromoteResult, SourceInstance
from ec2ops_lambda.spot.launch import INTERRUPTED_AT_TAG, REPLACED_BY_TAG, ROLE_TAG


class PromoteEc2(Protocol):
    """The EC2 calls Promote makes (SpotEc2 on AWS)."""

    def observe(self, instance_id: str) -> Observed: ...

    def set_tags(self, instance_id: str, tags: dict[str, str]) -> None: ...

    def move_elastic_ip(self, allocation_id: str, instance_id: str) -> str: ...


def _move_identity(source: SourceInstance, incident: Incident, new_id: str, ec2: PromoteEc2) -> PromoteResult:
    elastic_ip = None
    if source.allocation_id:
        try:
            elastic_ip = ec2.move_elastic_ip(source.allocation_id, new_id)
        except ClientError as error:
            raise PromotionFailed(
                f"the replacement {new_id} runs, but the Elastic IP {source.allocation_id} ({source.public_ip}) could "
                f"not be moved to it ({error_code(error)}): associate it by hand (aws ec2 associate-address "
                f"--allocation-id {source.allocation_id} --instance-id {new_id} --allow-reassociation)."
            ) from None
    ec2.set_tags(new_id, {ROLE_TAG: "primary"})
    try:
        ec2.set_tags(
            source.instance_id,
            {ROLE_TAG: "interrupted", REPLACED_BY_TAG: new_id, INTERRUPTED_AT_TAG: iso(incident.notice_time)},
        )
    except ClientError as error:
        if not error_code(error).startswith("InvalidInstanceID"):
            raise
    return PromoteResult(
        state="replaced",
        instance_id=new_id,
        elastic_ip=elastic_ip,
        allocation_id=source.allocation_id,
        at=clock.utcnow(),
    )


def promote(
    action: Action,
    source: SourceInstance,
    incident: Incident,
    launched: LaunchResult | None,
    *,
    ec2: PromoteEc2,
    incidents: Incidents,
) -> PromoteResult:
    """Move the identity (or park the standby) and settle the incident."""
    if action == "promote":
        new_id = incident.standby_id
        if not new_id:
            raise PromotionFailed(f"the incident of {source.instance_id} names no standby to promote")
        seen = ec2.observe(new_id)
        if seen.state != "running":
            raise PromotionFailed(
                f"the standby {new_id} is {seen.state} ({seen.reason_code}), not running: nothing was moved. Start "
                f'{{"instance_id": "{source.instance_id}", "action": "failover"}} for a new replacement.'
            )
    else:
        if launched is None:
            raise PromotionFailed(f"{action} of {source.instance_id} reached Promote without a launched instance")
        new_id = launched.instance_id
        if action == "prepare":
            verdict = incidents.standby_ready(
                source.instance_id, incident.execution_id, new_id, launched.model_dump(mode="json")
            )
            if verdict == "ready":
                return PromoteResult(state="standby-ready", instance_id=new_id, at=clock.utcnow())
    result = _move_identity(source, incident, new_id, ec2)
    incidents.replaced(source.instance_id, incident.execution_id, new_id)
    return result
