"""The resize workflow's data: its input, and the plan every later step follows (docs/design/resize-workflow.md)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from ec2ops_lambda.errors import InvalidInput
from ec2ops_lambda.models.common import explain, shown

INSTANCE_ID_PATTERN = r"^i-([0-9a-f]{8}|[0-9a-f]{17})$"
# family.size as EC2 spells it: c7i.8xlarge, c7i-flex.large, u-6tb1.metal, c7i.metal-24xl.
INSTANCE_TYPE_PATTERN = r"^[a-z][a-z0-9-]*\.[a-z0-9][a-z0-9-]*$"
MAX_FALLBACKS = 5
MAX_REVERT_HOURS = 8760
EXAMPLE_INPUT = (
    '{"instance_id": "i-0123456789abcdef0", "target_type": "c7i.8xlarge", "fallback_types": ["c6i.8xlarge"], '
    '"reason": "nightly build needs more cores"}'
)
TYPE_HINT = "must be an instance type such as c7i.8xlarge (family.size, lower case)"

InstanceId = Annotated[str, StringConstraints(pattern=INSTANCE_ID_PATTERN, strict=True)]
InstanceType = Annotated[str, StringConstraints(pattern=INSTANCE_TYPE_PATTERN, max_length=64, strict=True)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256, strict=True)]

_TYPE_RE = re.compile(INSTANCE_TYPE_PATTERN)


# --- the execution input ------------------------------------------------------------------------------------


class ResizeRequest(BaseModel):
    """What a user pastes in the console (docs/resize.md); unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    instance_id: InstanceId
    target_type: InstanceType
    fallback_types: list[Annotated[str, Field(strict=True)]] = Field(default_factory=list, strict=True)
    snapshot: bool = Field(default=True, strict=True)
    revert_after_hours: float | None = Field(default=None, gt=0, le=MAX_REVERT_HOURS)
    reserve_capacity: bool = Field(default=False, strict=True)
    dry_run: bool = Field(default=False, strict=True)
    reason: Reason

    @field_validator("revert_after_hours", mode="before")
    @classmethod
    def _hours_in_range(cls, value: Any) -> Any:
        """One plain message for every wrong value: JSON true, "24", 0 or 9000 (pydantic would say 8760.0)."""
        if value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_REVERT_HOURS:
            raise ValueError(f"must be a number of hours more than 0 and at most {MAX_REVERT_HOURS} (e.g. 24), or null")
        return value

    @field_validator("fallback_types")
    @classmethod
    def _fallbacks_are_distinct_types(cls, value: list[str], info: ValidationInfo) -> list[str]:
        """Each fallback is a real-looking type, listed once, and not the target (which is tried first anyway)."""
        if len(value) > MAX_FALLBACKS:
            raise ValueError(f"must list at most {MAX_FALLBACKS} types (got {len(value)})")
        for index, name in enumerate(value):
            if not _TYPE_RE.match(name) or len(name) > 64:
                raise ValueError(f"item {index} {TYPE_HINT} (got {shown(name)})")
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"must not repeat a type ({', '.join(repeated)} more than once)")
        target = info.data.get("target_type")
        if target in value:
            raise ValueError(f"must not contain the target_type {target}: the target is always tried first")
        return value


_REQUEST_HINTS = {
    "": f"the input must be a JSON object such as {EXAMPLE_INPUT}",
    "instance_id": "must look like i-0123456789abcdef0 ('i-' and 8 or 17 hex digits)",
    "target_type": TYPE_HINT,
    "reason": "must be text of 1 to 256 characters",
}


def parse_request(raw: Any) -> ResizeRequest:
    """The execution input as a ResizeRequest, or InvalidInput listing every problem in plain words."""
    try:
        return ResizeRequest.model_validate(raw)
    except ValidationError as error:
        problems = explain(error, ResizeRequest, _REQUEST_HINTS)
        raise InvalidInput(
            "the resize input is not valid: "
            + "; ".join(problems)
            + f". Nothing was changed. Fix the input (e.g. {EXAMPLE_INPUT}; see docs/resize.md) and start again."
        ) from None


class ResizePlanEvent(BaseModel):
    """The Plan step's payload: the raw execution input, the execution name and the execution ARN."""

    request: Any = None
    change_id: str = Field(min_length=1, max_length=80)
    execution_id: str = Field(min_length=1, max_length=2048)


# --- the plan -------------------------------------------------------------------------------------------------


NumberT = TypeVar("NumberT", int, float)


class Change(BaseModel, Generic[NumberT]):
    """A before/after pair; `from` is a Python keyword, so the field is `from_` and travels as `from`."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True, validate_by_alias=True)

    from_: NumberT = Field(alias="from")
    to: NumberT


PlanStatus = Literal["go", "unchanged", "planned"]
PriceSource = Literal["price-list", "bundled-table"]


class ResizePlan(BaseModel):
    """Everything the later steps need, decided once by the Plan step (the contract's `$.plan`)."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True, validate_by_alias=True)

    status: PlanStatus
    instance_id: str
    instance_name: str | None = None
    change_id: str
    execution_id: str
    reason: str
    from_type: str
    target_type: str
    candidates: list[str]
    was_running: bool
    availability_zone: str
    snapshot: bool
    reserve_capacity: bool
    revert_after_hours: float | None = None
    prices: dict[str, float | None]
    price_source: PriceSource
    hourly_cost_delta: float | None
    vcpus: Change[int]
    memory_gib: Change[float]
    public_ipv4_changes: bool
    expected_downtime_seconds: int
    summary: str
    snapshot_reason: str  # what the nested ec2ops-snapshot records: within its 256-character limit

    @property
    def label(self) -> str:
        """How messages name the instance: its Name tag when it has one, always its id."""
        return f"{self.instance_name} ({self.instance_id})" if self.instance_name else self.instance_id
