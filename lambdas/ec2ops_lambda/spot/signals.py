"""What starts a spot failover: the two EventBridge events and the console's manual input, as one `Signal`.

Pure: no AWS call, no clock. The events are modelled as AWS sends them (hyphenated keys, fields AWS may add are
kept, not refused); the manual input is refused on any unknown field, like every other console input. Both
signals are best effort (docs/spot-failover.md, notes "Signals"): either can be missing, duplicated, or arrive
together, so the Assess step keys its work on `incident_key` (one incident = one failover) and drops exact
redeliveries on `dedup_key`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ec2ops_lambda.errors import InvalidInput
from ec2ops_lambda.models.common import UtcDatetime, explain, shown
from ec2ops_lambda.models.snapshot import InstanceId

WARNING_DETAIL_TYPE = "EC2 Spot Instance Interruption Warning"
REBALANCE_DETAIL_TYPE = "EC2 Instance Rebalance Recommendation"
EVENT_SOURCE = "aws.ec2"
TIME_PLACEHOLDER = "yyyy-mm-ddThh:mm:ssZ"
"""The published samples' `time`: no time at all, so the caller uses its own clock."""
ACTION_PLACEHOLDER = "action"
"""The published warning sample's `instance-action`: accepted, recorded as `unknown`."""

WARNING_ACTIONS = ("terminate", "stop", "hibernate")
MANUAL_ACTIONS = ("prepare", "promote", "failover")
EXAMPLE_MANUAL = '{"instance_id": "i-0123456789abcdef0", "action": "failover"}'

SignalKind = Literal["interruption-warning", "rebalance-recommendation", "manual"]
SignalAction = Literal["terminate", "stop", "hibernate", "unknown", "prepare", "promote", "failover"]
WarningAction = Literal["terminate", "stop", "hibernate", "unknown"]
ManualAction = Literal["prepare", "promote", "failover"]


def _one_of(choices: tuple[str, ...], placeholder: str | None = None) -> Callable[[Any], Any]:
    """A before-validator that names the allowed values (pydantic's literal error reads poorly in a console)."""

    def check(value: Any) -> Any:
        if placeholder is not None and value == placeholder:
            return "unknown"
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return check


def _time_or_placeholder(value: Any) -> Any:
    """The sample's placeholder time means 'not given'."""
    return None if value == TIME_PLACEHOLDER else value


NoticeTime = Annotated[UtcDatetime | None, BeforeValidator(_time_or_placeholder)]


# --- the EventBridge events ---------------------------------------------------------------------------------


class _Event(BaseModel):
    """The EventBridge envelope shared by both events; top-level fields AWS adds are allowed."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    version: str = "0"
    id: str = Field(min_length=1)
    detail_type: str = Field(alias="detail-type")
    source: Annotated[Literal["aws.ec2"], BeforeValidator(_one_of((EVENT_SOURCE,)))]
    account: str | None = None
    time: NoticeTime = None
    region: str | None = None
    resources: list[str] = Field(default_factory=list)


class SpotInterruptionDetail(BaseModel):
    """`detail` of the two-minute warning; `instance-action` is `unknown` for the sample's placeholder."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    instance_id: InstanceId = Field(alias="instance-id")
    instance_action: Annotated[WarningAction, BeforeValidator(_one_of(WARNING_ACTIONS, ACTION_PLACEHOLDER))] = Field(
        alias="instance-action"
    )


class RebalanceDetail(BaseModel):
    """`detail` of the rebalance recommendation."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    instance_id: InstanceId = Field(alias="instance-id")


class SpotInterruptionWarning(_Event):
    """`EC2 Spot Instance Interruption Warning` from aws.ec2: the instance goes in about two minutes."""

    detail_type: Literal["EC2 Spot Instance Interruption Warning"] = Field(alias="detail-type")
    detail: SpotInterruptionDetail


class RebalanceRecommendation(_Event):
    """`EC2 Instance Rebalance Recommendation` from aws.ec2: the instance is at elevated risk of interruption."""

    detail_type: Literal["EC2 Instance Rebalance Recommendation"] = Field(alias="detail-type")
    detail: RebalanceDetail


# --- the console's manual input -----------------------------------------------------------------------------


class ManualRequest(BaseModel):
    """What a user pastes in the console; unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_id: InstanceId
    action: Annotated[ManualAction, BeforeValidator(_one_of(MANUAL_ACTIONS))]


_HINTS = {
    "detail": "must be a JSON object with the instance-id",
    "detail.instance-id": "must look like i-0123456789abcdef0 ('i-' and 8 or 17 hex digits)",
    "instance_id": "must look like i-0123456789abcdef0 ('i-' and 8 or 17 hex digits)",
}


# --- the signal ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signal:
    """One reason to act on one instance, whatever carried it."""

    kind: SignalKind
    instance_id: str
    action: SignalAction
    """warning: terminate/stop/hibernate/unknown; rebalance: prepare; manual: prepare/promote/failover."""
    notice_time: datetime | None
    """The event's `time` (UTC); None for the placeholder and for manual input: the caller uses its clock."""
    event_id: str | None
    """The EventBridge event id; None for manual input."""
    detail_type: str | None
    """The event's `detail-type` as received; None for manual input."""


def _invalid(what: str, problems: list[str], fix: str) -> InvalidInput:
    return InvalidInput(f"the {what} is not valid: " + "; ".join(problems) + f". Nothing was launched. {fix}")


M = TypeVar("M", bound=BaseModel)


def _validate(model: type[M], raw: dict[str, Any], what: str, fix: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise _invalid(what, explain(error, model, _HINTS), fix) from None


def parse_signal(raw: Any) -> Signal:
    """An EventBridge event or the manual input as a Signal, or InvalidInput naming every problem in plain words."""
    if not isinstance(raw, dict):
        raise _invalid(
            "spot failover input",
            [f"input: must be a JSON object (got {shown(raw)})"],
            f"Send an EC2 spot event or a manual input such as {EXAMPLE_MANUAL}.",
        )
    if not ({"detail-type", "detail", "source"} & raw.keys()):
        manual = _validate(
            ManualRequest, raw, "manual spot failover input", f"Fix the input (e.g. {EXAMPLE_MANUAL}) and start again."
        )
        return Signal("manual", manual.instance_id, manual.action, None, None, None)

    fix = "Only the aws.ec2 spot interruption warning and rebalance recommendation start a spot failover."
    detail_type = raw.get("detail-type")
    if detail_type == WARNING_DETAIL_TYPE:
        warning = _validate(SpotInterruptionWarning, raw, "spot interruption warning event", fix)
        return Signal(
            "interruption-warning",
            warning.detail.instance_id,
            warning.detail.instance_action,
            warning.time,
            warning.id,
            warning.detail_type,
        )
    if detail_type == REBALANCE_DETAIL_TYPE:
        rebalance = _validate(RebalanceRecommendation, raw, "rebalance recommendation event", fix)
        return Signal(
            "rebalance-recommendation",
            rebalance.detail.instance_id,
            "prepare",
            rebalance.time,
            rebalance.id,
            rebalance.detail_type,
        )
    problem = (
        "detail-type: is required"
        if detail_type is None
        else f"unknown detail-type {shown(detail_type)} (expected {WARNING_DETAIL_TYPE!r} or {REBALANCE_DETAIL_TYPE!r})"
    )
    raise _invalid("spot event", [problem], fix)


def incident_key(signal: Signal) -> str:
    """The key under which one interruption incident gets exactly one failover.

    It depends only on the instance: a spot instance is interrupted at most once (after the warning it is
    stopped, hibernated or terminated, and a replacement is a new instance with a new id), so every signal about
    the same instance - the warning delivered twice, a rebalance followed by the warning, a manual failover -
    belongs to the same incident. A `stop`/`hibernate` instance that is started again and later interrupted again
    shares the key; the ledger's incident record (with its outcome) is what tells that case apart.
    """
    return f"spot-incident#{signal.instance_id}"


def dedup_key(signal: Signal) -> str:
    """The key of an exact duplicate: the same EventBridge event redelivered, or the same manual request again.

    Events carry their kind and instance as well as their id: the published samples share one id across the
    warning and the rebalance, and they must not swallow each other.
    """
    if signal.event_id is None:
        return f"manual#{signal.instance_id}#{signal.action}"
    return f"event#{signal.kind}#{signal.instance_id}#{signal.event_id}"
