"""Plan step: every refusal happens here, before the instance is touched; the plan fixes what the drive loop does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from ec2ops_lambda.aws.ec2 import Ec2
from ec2ops_lambda.aws.ec2_types import Ec2Types
from ec2ops_lambda.errors import (
    IncompatibleType,
    InvalidInput,
    InvalidInstanceState,
    StopProtected,
    TypeNotOffered,
    UnknownInstanceType,
    UnsupportedInstance,
)
from ec2ops_lambda.models.resize import Change, PlanStatus, ResizePlan, ResizePlanEvent, ResizeRequest, parse_request
from ec2ops_lambda.opt_in import require_instance, require_managed
from ec2ops_lambda.pricing import BUNDLED_TABLE_REGION, PriceBook, Prices
from ec2ops_lambda.resize.compatibility import instance_facts, mismatches

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import InstanceTypeDef, InstanceTypeInfoTypeDef

logger = Logger(service="ec2ops-resize", child=True)

AUTO_SCALING_TAG = "aws:autoscaling:groupName"
RESIZABLE_STATES = ("running", "stopped")

# Expected downtime of a running instance (shared/notes/ec2-failures.md, "Timing"): a stop takes tens of seconds
# to minutes, a start from stopped about 21 s, and the drive loop waits for both status checks to pass.
STOP_SECONDS = 60
START_SECONDS = 25
STATUS_CHECK_SECONDS = 60
MIB_PER_GIB = 1024
SNAPSHOT_REASON_LIMIT = 256  # ec2ops-snapshot refuses a longer reason


def parse_plan_event(event: Any) -> tuple[ResizeRequest, str, str]:
    """The request, the change id and the execution id from the Plan payload; a bad payload is InvalidInput too."""
    if not isinstance(event, dict) or "change_id" not in event or "execution_id" not in event:
        raise InvalidInput(
            "the Plan step got no change_id or execution_id: the state machine must pass "
            '{"request": <execution input>, "change_id": $$.Execution.Name, "execution_id": $$.Execution.Id}'
        )
    try:
        payload = ResizePlanEvent.model_validate(event)
    except ValueError:
        raise InvalidInput(
            f"the change id (execution name) must be 1 to 80 characters and the execution id not empty "
            f"(got {event.get('change_id')!r} and {event.get('execution_id')!r})"
        ) from None
    return parse_request(payload.request), payload.change_id, payload.execution_id


def _label(instance_id: str, name: str | None) -> str:
    """How messages name the instance: its Name tag when it has one, always its id."""
    return f"{name} ({instance_id})" if name else instance_id


# --- the instance itself ---------------------------------------------------------------------------------------


def _check_instance(
    instance: InstanceTypeDef | None, instance_id: str, region: str
) -> tuple[InstanceTypeDef, dict[str, str]]:
    """Refuse a missing, unmanaged or transitional instance; returns it with its tags."""
    instance = require_instance(instance, instance_id, region)
    tags = require_managed(instance, instance_id, "resize")
    state = instance.get("State", {}).get("Name", "unknown")
    if state not in RESIZABLE_STATES:
        advice = (
            "it is going away, so there is nothing to resize"
            if state in ("shutting-down", "terminated")
            else "wait until it is running or stopped, then start again"
        )
        raise InvalidInstanceState(
            f"instance {instance_id} is {state}: only a running or stopped instance can be resized; {advice}. "
            "Nothing was changed."
        )
    return instance, tags


def _check_resizable_in_place(instance: InstanceTypeDef, instance_id: str, tags: Mapping[str, str]) -> None:
    """Refuse what a stop would lose or that something else owns: Auto Scaling members, instance-store roots, spot."""
    group = tags.get(AUTO_SCALING_TAG)
    if group is not None:
        raise UnsupportedInstance(
            f"instance {instance_id} belongs to the Auto Scaling group {group!r}: a stopped member is replaced by its "
            "group, so it cannot be resized in place. Change the instance type in the group's launch template and "
            "start an instance refresh instead. Nothing was changed."
        )
    root = instance.get("RootDeviceType", "ebs")
    if root != "ebs":
        raise UnsupportedInstance(
            f"instance {instance_id} has an {root} root device: it cannot be stopped, so its type cannot be changed "
            "in place. Launch a new instance of the type you want instead. Nothing was changed."
        )
    if instance.get("InstanceLifecycle") == "spot":
        raise UnsupportedInstance(
            f"instance {instance_id} is a spot instance: spot capacity is replaced by ec2ops-spot-failover, not "
            "resized. Start ec2ops-spot-failover with the types you want instead. Nothing was changed."
        )


def _check_stop_protection(types: Ec2Types, instance_id: str) -> None:
    """A running instance with disableApiStop would refuse the stop: refuse now, while it is still running."""
    if types.stop_protected(instance_id):
        raise StopProtected(
            f"instance {instance_id} has stop protection on (disableApiStop), and a resize must stop it: turn it off "
            f"(aws ec2 modify-instance-attribute --instance-id {instance_id} --no-disable-api-stop) and start "
            "again, or resize it while it is stopped. Nothing was changed."
        )


# --- the candidate types ---------------------------------------------------------------------------------------


def _role(request: ResizeRequest, instance_type: str) -> str:
    """`target type X` or `fallback type Y`, so a refusal says which one of the list is wrong."""
    return f"target type {instance_type}" if instance_type == request.target_type else f"fallback type {instance_type}"


def _refuse_current_type_as_fallback(request: ResizeRequest, from_type: str) -> None:
    """A fallback equal to the current type would report a resize that changed nothing."""
    if from_type in request.fallback_types:
        raise InvalidInput(
            f"the resize input is not valid: fallback_types lists {from_type}, the instance's current type. Remove "
            f"it: when no candidate can start, ec2ops rolls back to {from_type} anyway. Nothing was changed."
        )


def _check_candidates(
    request: ResizeRequest,
    instance: InstanceTypeDef,
    label: str,
    zone: str,
    infos: Mapping[str, InstanceTypeInfoTypeDef],
    offered: set[str],
    region: str,
) -> None:
    """Each candidate in order: known to EC2, offered in the instance's AZ, and able to run this instance."""
    facts = instance_facts(instance, infos[instance["InstanceType"]])
    for candidate in [request.target_type, *request.fallback_types]:
        role = _role(request, candidate)
        if candidate not in infos:
            raise UnknownInstanceType(
                f"{role} is not an instance type EC2 knows in {region}: check its spelling (e.g. c7i.8xlarge), or "
                "list the types with `aws ec2 describe-instance-types`. Nothing was changed."
            )
        if candidate not in offered:
            raise TypeNotOffered(
                f"{role} is not offered in {zone}, the Availability Zone of {label}: pick a type offered there "
                "(aws ec2 describe-instance-type-offerings --location-type availability-zone --filters "
                f"Name=location,Values={zone}). Nothing was changed."
            )
        problems = mismatches(facts, infos[candidate])
        if problems:
            raise IncompatibleType(
                f"{label} cannot run as {role}: "
                + "; and ".join(problems)
                + ". Pick another type. Nothing was changed."
            )


def _described(types: Ec2Types, names: list[str], from_type: str, region: str) -> dict[str, InstanceTypeInfoTypeDef]:
    """DescribeInstanceTypes for the current type and the candidates; the current type must be known."""
    infos = types.describe_instance_types([from_type, *names])
    if from_type not in infos:
        raise UnknownInstanceType(
            f"EC2 does not describe the instance's current type {from_type} in {region}, so ec2ops cannot check what "
            "the new type must match. Resize it by hand. Nothing was changed."
        )
    return infos


# --- what the plan tells the user ------------------------------------------------------------------------------


def _vcpus(info: InstanceTypeInfoTypeDef) -> int:
    """Default vCPUs of a type."""
    return int(info.get("VCpuInfo", {}).get("DefaultVCpus", 0))


def _memory_gib(info: InstanceTypeInfoTypeDef) -> float:
    """Memory of a type in GiB."""
    return int(info.get("MemoryInfo", {}).get("SizeInMiB", 0)) / MIB_PER_GIB


def _public_ipv4_changes(types: Ec2Types, instance: InstanceTypeDef, instance_id: str, running: bool) -> bool:
    """A running instance's public IPv4 is released on stop unless it is an Elastic IP."""
    public_ip = instance.get("PublicIpAddress")
    if not running or not public_ip:
        return False
    return public_ip not in types.elastic_ips(instance_id)


def _money(price: float) -> str:
    """USD per hour as the console shows it."""
    return f"${price:.4f}/h"


def _number(value: float) -> str:
    """32.0 as 32, 0.5 as 0.5."""
    return f"{value:g}"


def _price_words(prices: Prices, from_type: str, target_type: str, region: str) -> str:
    """Before and after prices and the difference; says which price is unknown and why."""
    before, after = prices.by_type.get(from_type), prices.by_type.get(target_type)
    unknown = [name for name, price in ((from_type, before), (target_type, after)) if price is None]
    if before is not None and after is not None:
        delta = after - before
        words = f"{_money(before)} -> {_money(after)} ({'+' if delta >= 0 else '-'}{_money(abs(delta))})"
    else:
        where = "the AWS Price List" if prices.source == "price-list" else "the bundled price table"
        known = ", ".join(
            f"{name} {_money(price)}"
            for name, price in ((from_type, before), (target_type, after))
            if price is not None
        )
        words = f"price of {' and '.join(unknown)} unknown (not in {where})" + (f", {known}" if known else "")
    if prices.source == "bundled-table" and region != BUNDLED_TABLE_REGION:
        words += f" (approximate: {BUNDLED_TABLE_REGION} list prices from the bundled table)"
    return words


def _downtime_words(seconds: int) -> str:
    """Seconds as the nearest half minute."""
    if seconds == 0:
        return "no downtime (it is stopped)"
    return f"about {_number(round(seconds / 30) / 2)} min of downtime"


def _summary(
    request: ResizeRequest,
    *,
    status: PlanStatus,
    label: str,
    from_type: str,
    vcpus: Change[int],
    memory: Change[float],
    prices: Prices,
    region: str,
    downtime: int,
    ip_changes: bool,
    has_public_ip: bool,
) -> str:
    """The plan in plain words, for the console, the dry run and the notification."""
    if status == "unchanged":
        return f"{label} is already {from_type}: nothing to do. Nothing was changed."
    parts = [
        f"{from_type} -> {request.target_type}: {vcpus.from_} -> {vcpus.to} vCPUs, "
        f"{_number(memory.from_)} -> {_number(memory.to)} GiB, "
        + _price_words(prices, from_type, request.target_type, region),
        _downtime_words(downtime),
    ]
    if ip_changes:
        parts.append("its public IPv4 address will change (no Elastic IP)")
    elif has_public_ip and downtime:
        parts.append("its Elastic IP stays")
    parts.append(f"fallbacks: {', '.join(request.fallback_types)}" if request.fallback_types else "no fallbacks")
    if request.snapshot:
        parts.append("a snapshot of its volumes first")
    if request.revert_after_hours is not None:
        parts.append(f"back to {from_type} after {_number(request.revert_after_hours)} h")
    if vcpus.to > vcpus.from_:
        parts.append(
            f"{vcpus.to - vcpus.from_} more vCPUs must fit the account's running On-Demand vCPU quota "
            "(Service Quotas console, Amazon EC2)"
        )
    text = f"Resize {label} " + "; ".join(parts) + "."
    return f"Dry run, nothing was changed: {text}" if status == "planned" else text


# --- the step ----------------------------------------------------------------------------------------------------


def make_plan(event: Any, *, ec2: Ec2, types: Ec2Types, prices: PriceBook) -> ResizePlan:
    """Refuse bad input, an unfit instance or an unfit candidate; else fix prices, downtime and the summary."""
    request, change_id, execution_id = parse_plan_event(event)
    instance_id = request.instance_id
    logger.append_keys(instance_id=instance_id, change_id=change_id)
    region = ec2.region
    instance, tags = _check_instance(ec2.describe_instance(instance_id), instance_id, region)
    _check_resizable_in_place(instance, instance_id, tags)
    name = tags.get("Name") or None
    label = _label(instance_id, name)
    from_type = instance["InstanceType"]
    zone = instance.get("Placement", {}).get("AvailabilityZone", "")
    running = instance.get("State", {}).get("Name") == "running"

    candidates = [request.target_type, *request.fallback_types]
    status: PlanStatus
    if request.target_type == from_type:
        status = "unchanged"
        infos = _described(types, [], from_type, region)
        ip_changes, downtime = False, 0
    else:
        status = "planned" if request.dry_run else "go"
        _refuse_current_type_as_fallback(request, from_type)
        if running:
            _check_stop_protection(types, instance_id)
        infos = _described(types, candidates, from_type, region)
        offered = types.offered_in_zone([candidate for candidate in candidates if candidate in infos], zone)
        _check_candidates(request, instance, label, zone, infos, offered, region)
        ip_changes = _public_ipv4_changes(types, instance, instance_id, running)
        downtime = STOP_SECONDS + START_SECONDS + STATUS_CHECK_SECONDS if running else 0

    priced = prices.on_demand([from_type] if status == "unchanged" else [from_type, *candidates], region)
    before, after = priced.by_type.get(from_type), priced.by_type.get(request.target_type)
    delta = round(after - before, 6) if before is not None and after is not None else None
    target_info = infos.get(request.target_type, infos[from_type])
    vcpus = Change[int](from_=_vcpus(infos[from_type]), to=_vcpus(target_info))
    memory = Change[float](from_=_memory_gib(infos[from_type]), to=_memory_gib(target_info))
    plan = ResizePlan(
        status=status,
        instance_id=instance_id,
        instance_name=name,
        change_id=change_id,
        execution_id=execution_id,
        reason=request.reason,
        from_type=from_type,
        target_type=request.target_type,
        candidates=candidates,
        was_running=running,
        availability_zone=zone,
        snapshot=request.snapshot,
        reserve_capacity=request.reserve_capacity,
        revert_after_hours=request.revert_after_hours,
        prices=priced.by_type,
        price_source=priced.source,
        hourly_cost_delta=0.0 if status == "unchanged" else delta,
        vcpus=vcpus,
        memory_gib=memory,
        public_ipv4_changes=ip_changes,
        expected_downtime_seconds=downtime,
        snapshot_reason=f"before resize {change_id}: {request.reason}"[:SNAPSHOT_REASON_LIMIT],
        summary=_summary(
            request,
            status=status,
            label=label,
            from_type=from_type,
            vcpus=vcpus,
            memory=memory,
            prices=priced,
            region=region,
            downtime=downtime,
            ip_changes=ip_changes,
            has_public_ip=bool(instance.get("PublicIpAddress")),
        ),
    )
    logger.info(
        "resize planned",
        extra={"status": status, "from_type": from_type, "candidates": plan.candidates, "prices": plan.prices},
    )
    return plan
