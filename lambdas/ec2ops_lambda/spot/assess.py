"""Assess: what one signal means for one instance, decided once per incident (docs/spot-failover.md, "Signals").

Refusals come first and touch nothing: an event about an instance ec2ops may not act on is recorded as ignored
and ends the execution successfully (AWS sends events for every spot instance of the account); the same problem in
a manual input is an error, since a person asked for it. Then the incident item (aws/incidents.py) decides, by
conditional writes, whether this execution acts; every other signal of the incident is recorded as a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ec2ops_lambda import clock
from ec2ops_lambda.aws.bad_pools import BadPools
from ec2ops_lambda.aws.incidents import Incidents
from ec2ops_lambda.aws.ledger import Ledger, LedgerItem
from ec2ops_lambda.aws.spot_ec2 import SpotEc2
from ec2ops_lambda.errors import Ec2OpsError, InstanceNotFound, NoStandby, NotManaged, UnsupportedInstance
from ec2ops_lambda.models.common import iso, tags_dict
from ec2ops_lambda.models.spot import AssessResult, Incident, LaunchResult, SourceInstance
from ec2ops_lambda.opt_in import MANAGED_TAG, MANAGED_VALUE
from ec2ops_lambda.spot.candidates import ALTERNATES_TAG, parse_alternates
from ec2ops_lambda.spot.config import SpotSettings
from ec2ops_lambda.spot.pool_choice import Pool
from ec2ops_lambda.spot.record import WORKFLOW
from ec2ops_lambda.spot.signals import Signal, parse_signal

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import InstanceTypeDef

POLICY_TAG = "ec2ops:failover"
ENVIRONMENT_TAG = "ec2ops:environment"
_CLAIM_ROUNDS = 4
"""Each round reads the incident after a lost conditional write; another signal can move it only a few times."""


@dataclass(frozen=True)
class AssessContext:
    """Who is asking: this execution, and the AWS access it uses."""

    execution_id: str
    change_id: str
    ec2: SpotEc2
    incidents: Incidents
    bad_pools: BadPools
    ledger: Ledger
    config: SpotSettings


def _refusal(signal: Signal, instance: InstanceTypeDef | None, env: str, region: str) -> Ec2OpsError | None:
    """Why ec2ops must not act on this instance, as the error a manual input would get; None when it may."""
    iid = signal.instance_id
    if instance is None:
        return InstanceNotFound(f"instance {iid} does not exist in {region}: nothing was launched.")
    tags = tags_dict(instance.get("Tags"))
    if tags.get(MANAGED_TAG) != MANAGED_VALUE:
        return NotManaged(
            f"instance {iid} is not managed by ec2ops (it lacks {MANAGED_TAG}={MANAGED_VALUE}): nothing was launched."
        )
    owner = tags.get(ENVIRONMENT_TAG)
    if owner and owner != env:
        return NotManaged(
            f"instance {iid} belongs to the ec2ops environment {owner!r}, not {env!r}: that deployment handles it. "
            "Nothing was launched."
        )
    policy = tags.get(POLICY_TAG)
    if policy not in ("replace", "standby"):
        has = f"its {POLICY_TAG} tag is {policy!r}" if policy is not None else f"it has no {POLICY_TAG} tag"
        return NotManaged(
            f"spot failover is off for instance {iid} ({has}): tag it {POLICY_TAG}=replace or {POLICY_TAG}=standby "
            "to opt in. Nothing was launched."
        )
    if instance.get("InstanceLifecycle") != "spot":
        return UnsupportedInstance(
            f"instance {iid} is an on-demand instance: spot failover replaces spot instances only. "
            "Nothing was launched."
        )
    return None


def _source(instance: InstanceTypeDef, ec2: SpotEc2) -> SourceInstance:
    """The launch configuration a replacement copies, and the Elastic IP to move, read while the instance holds it."""
    iid = str(instance["InstanceId"])
    tags = tags_dict(instance.get("Tags"))
    alternates, ignored = parse_alternates(tags.get(ALTERNATES_TAG), str(instance["InstanceType"]))
    eip = ec2.elastic_ip(iid)
    return SourceInstance(
        instance_id=iid,
        instance_type=str(instance["InstanceType"]),
        availability_zone=str(instance.get("Placement", {}).get("AvailabilityZone", "")),
        subnet_id=str(instance.get("SubnetId", "")),
        vpc_id=str(instance.get("VpcId", "")),
        image_id=str(instance.get("ImageId", "")),
        architecture=str(instance.get("Architecture", "x86_64")),
        security_group_ids=[
            str(group["GroupId"]) for group in instance.get("SecurityGroups", []) if "GroupId" in group
        ],
        instance_profile_arn=instance.get("IamInstanceProfile", {}).get("Arn"),
        key_name=instance.get("KeyName"),
        user_data=ec2.user_data(iid),
        tags={key: value for key, value in tags.items() if not key.startswith("aws:")},
        market="spot" if instance.get("InstanceLifecycle") == "spot" else "on-demand",
        state=str(instance.get("State", {}).get("Name", "unknown")),
        allocation_id=eip[0] if eip else None,
        public_ip=eip[1] if eip else instance.get("PublicIpAddress"),
        policy="standby" if tags.get(POLICY_TAG) == "standby" else "replace",
        alternate_types=alternates,
        ignored_alternates=ignored,
        http_tokens=instance.get("MetadataOptions", {}).get("HttpTokens"),
    )


def _signal_summary(signal: Signal, context: AssessContext, notice: Any) -> dict[str, Any]:
    return {
        "kind": signal.kind,
        "action": signal.action,
        "event_id": signal.event_id,
        "detail_type": signal.detail_type,
        "notice_time": iso(notice),
        "execution_id": context.execution_id,
    }


def _record(
    context: AssessContext, signal: Signal, notice: Any, outcome: str, what: str, detail: dict[str, Any] | None = None
) -> None:
    """One `spot-signal` item per signal: the audit of every event, acted on or not."""
    context.ledger.put(
        LedgerItem(
            instance_id=signal.instance_id,
            kind="spot-signal",
            change_id=context.change_id,
            execution_id=context.execution_id,
            workflow=WORKFLOW,
            keyed_at=notice,
            at=clock.utcnow(),
            what=what,
            why=f"{signal.kind} ({signal.action})" + (f", event {signal.event_id}" if signal.event_id else ""),
            cost_effect={"hourly_usd_delta": 0, "note": "nothing launched by this signal"}
            if outcome != "go"
            else {"note": "the switch record carries the cost effect"},
            detail={"outcome": outcome, "signal": _signal_summary(signal, context, notice), **(detail or {})},
        )
    )


def _incident(context: AssessContext, signal: Signal, notice: Any, standby: dict[str, Any] | None = None) -> Incident:
    standby_launch = LaunchResult.model_validate(standby["launch"]) if standby and standby.get("launch") else None
    return Incident(
        instance_id=signal.instance_id,
        execution_id=context.execution_id,
        change_id=context.change_id,
        signal_kind=signal.kind,
        signal_action=signal.action,
        notice_time=notice,
        event_id=signal.event_id,
        standby_id=str(standby["standby_id"]) if standby and standby.get("standby_id") else None,
        standby_launch=standby_launch,
    )


def assess(raw: Any, context: AssessContext) -> AssessResult:
    """Parse the signal, refuse what ec2ops must not touch, then claim the incident or record a duplicate."""
    signal = parse_signal(raw)
    now = clock.utcnow()
    notice = signal.notice_time or now
    instance = context.ec2.describe_instance(signal.instance_id)
    refusal = _refusal(signal, instance, context.config.env, context.ec2.region)
    if refusal is not None:
        if signal.kind == "manual":
            raise refusal
        message = f"ignored: {refusal}"
        _record(context, signal, notice, "ignored", message, {"reason": type(refusal).__name__})
        return AssessResult(action="none", outcome="ignored", message=message, instance_id=signal.instance_id)
    assert instance is not None  # _refusal returns InstanceNotFound otherwise
    policy = tags_dict(instance.get("Tags")).get(POLICY_TAG)
    summary = _signal_summary(signal, context, notice)
    pool_reason = None
    if signal.kind == "interruption-warning":
        pool_reason = f"interrupted ({signal.action}) at {iso(notice)}"
    elif signal.kind == "rebalance-recommendation":
        pool_reason = f"rebalance recommendation at {iso(notice)}"
    if pool_reason is not None:
        context.bad_pools.mark(
            _pool_of(instance),
            reason=pool_reason,
            at=notice,
            until=notice + timedelta(minutes=context.config.bad_pool_minutes),
            change_id=context.change_id,
            execution_id=context.execution_id,
        )

    if signal.kind == "rebalance-recommendation" and policy == "replace":
        message = (
            f"noted: rebalance recommendation for {signal.instance_id} (policy replace acts on the interruption "
            f"warning; its pool is avoided for {context.config.bad_pool_minutes} min)"
        )
        _record(context, signal, notice, "noted", message)
        return AssessResult(action="none", outcome="noted", message=message, instance_id=signal.instance_id)
    if signal.action == "promote":
        return _promote(signal, notice, instance, context)
    wants = "preparing" if signal.action == "prepare" else "failing-over"
    return _claim(signal, notice, instance, context, wants, summary)


def _pool_of(instance: InstanceTypeDef) -> Pool:
    return Pool(str(instance["InstanceType"]), str(instance.get("Placement", {}).get("AvailabilityZone", "")))


def _promote(signal: Signal, notice: Any, instance: InstanceTypeDef, context: AssessContext) -> AssessResult:
    """Manual promote: only a standby that is ready; anything else is NoStandby, with what the incident holds."""
    standby_id = context.incidents.start_promotion(signal.instance_id, context.execution_id, context.change_id)
    if standby_id is None:
        item = context.incidents.get(signal.instance_id)
        state = f"its incident is {item['state']!r}" if item else "it has no incident"
        raise NoStandby(
            f"there is no prepared standby to promote for {signal.instance_id} ({state}): start "
            '{"instance_id": "' + signal.instance_id + '", "action": "prepare"} first, or "failover". '
            "Nothing was changed."
        )
    item = context.incidents.get(signal.instance_id) or {}
    message = f"promote: standby {standby_id} takes over from {signal.instance_id}"
    _record(context, signal, notice, "go", message, {"standby_id": standby_id})
    return AssessResult(
        action="promote",
        outcome="go",
        message=message,
        instance_id=signal.instance_id,
        incident=_incident(context, signal, notice, item.get("standby")),
        source=_source(instance, context.ec2),
    )


def _claim(
    signal: Signal,
    notice: Any,
    instance: InstanceTypeDef,
    context: AssessContext,
    wants: str,
    summary: dict[str, Any],
) -> AssessResult:
    """Claim the incident for `wants` (failing-over or preparing), or find out what holds it."""
    iid = signal.instance_id
    manual = signal.kind == "manual"
    reclaim = manual
    for _ in range(_CLAIM_ROUNDS):
        if context.incidents.claim(
            iid,
            "preparing" if wants == "preparing" else "failing-over",
            execution_id=context.execution_id,
            change_id=context.change_id,
            signal=summary,
            reclaim_failed=reclaim,
        ):
            action = "prepare" if wants == "preparing" else "failover"
            message = f"{action}: {signal.kind} ({signal.action}) for {iid}; this execution acts on the incident"
            _record(context, signal, notice, "go", message)
            return AssessResult(
                action=action,  # type: ignore[arg-type]
                outcome="go",
                message=message,
                instance_id=iid,
                incident=_incident(context, signal, notice),
                source=_source(instance, context.ec2),
            )
        item = context.incidents.get(iid)
        if item is None:
            continue
        state = str(item.get("state"))
        if state == "failed" and (manual or (wants == "failing-over" and not item.get("replacement_id"))):
            reclaim = True
            continue
        if wants == "failing-over" and state == "preparing":
            if context.incidents.note_warning(iid, summary):
                message = (
                    f"standby pending: a standby for {iid} is being prepared by {item.get('holder')}; it is promoted "
                    "as soon as it runs"
                )
                _record(context, signal, notice, "standby-pending", message, {"holder": item.get("holder")})
                return AssessResult(action="none", outcome="standby-pending", message=message, instance_id=iid)
            continue
        if wants == "failing-over" and state == "standby-ready":
            standby_id = context.incidents.start_promotion(iid, context.execution_id, context.change_id)
            if standby_id is None:
                continue
            context.incidents.note_signal(iid, summary)
            message = f"promote: standby {standby_id} takes over from {iid} on the {signal.kind}"
            _record(context, signal, notice, "go", message, {"standby_id": standby_id})
            fresh = context.incidents.get(iid) or {}
            return AssessResult(
                action="promote",
                outcome="go",
                message=message,
                instance_id=iid,
                incident=_incident(context, signal, notice, fresh.get("standby")),
                source=_source(instance, context.ec2),
            )
        context.incidents.note_signal(iid, summary)
        message = (
            f"duplicate: the incident of {iid} is already {state} (execution {item.get('holder')}); "
            "nothing more is launched"
        )
        _record(context, signal, notice, "duplicate", message, {"incident_state": state, "holder": item.get("holder")})
        return AssessResult(action="none", outcome="duplicate", message=message, instance_id=iid)
    raise RuntimeError(f"the incident of {iid} kept changing while this signal was assessed; start again")
