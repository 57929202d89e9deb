"""Plan step: every refusal happens here, before anything is created; the plan fixes what CreateSnapshots gets."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from ec2ops_lambda import clock
from ec2ops_lambda.aws.ec2 import Ec2
from ec2ops_lambda.errors import InstanceNotFound, InvalidInput, NoVolumes
from ec2ops_lambda.models.common import Tag, iso
from ec2ops_lambda.models.snapshot import (
    PlanEvent,
    PlannedVolume,
    Retention,
    SnapshotPlan,
    SnapshotRequest,
    parse_request,
)
from ec2ops_lambda.opt_in import require_instance, require_managed
from ec2ops_lambda.settings import PlanSettings
from ec2ops_lambda.snapshot.retention import CHANGE_TAG, CREATED_BY_TAG, CREATED_BY_VALUE, INSTANCE_TAG

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import InstanceTypeDef

logger = Logger(service="ec2ops-snapshot", child=True)

REASON_TAG = "ec2ops:reason"
WORKFLOW_TAG = "ec2ops:workflow"
WORKFLOW = "snapshot"
GONE_STATES = ("shutting-down", "terminated")
DESCRIPTION_LIMIT = 255
TAG_VALUE_LIMIT = 256


def parse_plan_event(event: Any) -> tuple[SnapshotRequest, str]:
    """The request and the change id from the Plan payload; a bad payload is InvalidInput too."""
    if not isinstance(event, dict) or "change_id" not in event:
        raise InvalidInput(
            "the Plan step got no change_id (the execution name): the state machine must pass "
            '{"request": <execution input>, "change_id": <execution name>}'
        )
    try:
        payload = PlanEvent.model_validate(event)
    except ValueError:
        raise InvalidInput(
            f"the change id (execution name) must be 1 to 80 characters (got {event.get('change_id')!r})"
        ) from None
    return parse_request(payload.request), payload.change_id


def retention_for(request: SnapshotRequest, settings: PlanSettings) -> Retention:
    """A limit the request leaves out takes the deployment default; an explicit null stays null."""
    given = request.retain.model_fields_set if request.retain is not None else set()
    count = request.retain.count if request.retain is not None and "count" in given else settings.retain_count
    days = request.retain.days if request.retain is not None and "days" in given else settings.retain_days
    return Retention(count=count, days=days)


def _check_instance(
    instance: InstanceTypeDef | None, instance_id: str, region: str
) -> tuple[InstanceTypeDef, dict[str, str]]:
    """Refuse a missing, terminated or unmanaged instance; returns it with its tags."""
    found = require_instance(instance, instance_id, region)
    state = found.get("State", {}).get("Name", "unknown")
    if state in GONE_STATES:
        raise InstanceNotFound(
            f"instance {instance_id} is {state}: its volumes are gone or going, so there is nothing to snapshot. "
            "Nothing was changed."
        )
    return found, require_managed(found, instance_id, "snapshot")


def _volumes(ec2: Ec2, instance: InstanceTypeDef, request: SnapshotRequest) -> list[PlannedVolume]:
    """The attached EBS volumes the set will hold, root first; NoVolumes when none is left."""
    instance_id = request.instance_id
    root = instance.get("RootDeviceName")
    attached = [
        (mapping.get("DeviceName", ""), mapping["Ebs"]["VolumeId"])
        for mapping in instance.get("BlockDeviceMappings", [])
        if "Ebs" in mapping and mapping["Ebs"].get("VolumeId")
    ]
    sizes = {volume["VolumeId"]: volume.get("Size", 0) for volume in ec2.describe_volumes([vid for _, vid in attached])}
    volumes = [
        PlannedVolume(volume_id=vid, device=device, size_gib=sizes[vid], is_boot=device == root)
        for device, vid in attached
        if vid in sizes
    ]
    if not volumes:
        raise NoVolumes(
            f"instance {instance_id} has no EBS volume attached: there is nothing to snapshot. Nothing was changed."
        )
    chosen = [volume for volume in volumes if not (request.exclude_boot and volume.is_boot)]
    if not chosen:
        raise NoVolumes(
            f"instance {instance_id} has only its root volume ({volumes[0].volume_id} on {volumes[0].device}) and "
            "exclude_boot is true: there is nothing to snapshot. Set exclude_boot to false, or attach a data volume. "
            "Nothing was changed."
        )
    return sorted(chosen, key=lambda volume: (not volume.is_boot, volume.device))


def snapshot_tags(request: SnapshotRequest, change_id: str, instance_name: str | None) -> list[Tag]:
    """The tags CreateSnapshots puts on every snapshot of the set; pruning finds sets by them."""
    name = f"ec2ops {instance_name or request.instance_id} {change_id}"
    return [
        Tag(Key=CREATED_BY_TAG, Value=CREATED_BY_VALUE),
        Tag(Key=INSTANCE_TAG, Value=request.instance_id),
        Tag(Key=CHANGE_TAG, Value=change_id[:TAG_VALUE_LIMIT]),
        Tag(Key=REASON_TAG, Value=request.reason[:TAG_VALUE_LIMIT]),
        Tag(Key=WORKFLOW_TAG, Value=WORKFLOW),
        Tag(Key="Name", Value=name[:TAG_VALUE_LIMIT]),
    ]


def make_plan(event: Any, *, settings: PlanSettings, ec2: Ec2) -> SnapshotPlan:
    """Validate the input and the instance, then fix the set's volumes, tags, retention and deadline."""
    request, change_id = parse_plan_event(event)
    logger.append_keys(instance_id=request.instance_id, change_id=change_id)
    instance, tags = _check_instance(ec2.describe_instance(request.instance_id), request.instance_id, ec2.region)
    volumes = _volumes(ec2, instance, request)
    retain = retention_for(request, settings)
    now = clock.utcnow()
    instance_name = tags.get("Name") or None
    plan = SnapshotPlan(
        instance_id=request.instance_id,
        instance_name=instance_name,
        reason=request.reason,
        change_id=change_id,
        exclude_boot=request.exclude_boot,
        retain=retain,
        retain_summary=retain.summary(),
        volumes=volumes,
        availability_zone=instance.get("Placement", {}).get("AvailabilityZone", ""),
        description=f"ec2ops snapshot of {request.instance_id} ({change_id}): {request.reason}"[:DESCRIPTION_LIMIT],
        tags=snapshot_tags(request, change_id, instance_name),
        deadline=now + timedelta(minutes=settings.timeout_minutes),
        requested_at=now,
    )
    logger.info(
        "snapshot planned",
        extra={
            "volumes": [v.volume_id for v in volumes],
            "retain": retain.model_dump(),
            "deadline": iso(plan.deadline),
        },
    )
    return plan
