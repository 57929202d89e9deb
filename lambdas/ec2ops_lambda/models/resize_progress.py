"""The resize drive loop's data: the part of the plan it reads, its progress between calls, and the result."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ec2ops_lambda.models.common import UtcDatetime

Phase = Literal[
    "reserve",
    "stop",
    "wait_stopped",
    "modify",
    "start",
    "wait_running",
    "verify",
    "rollback_stop",
    "rollback_wait_stopped",
    "rollback_modify",
    "rollback_start",
    "rollback_wait_running",
    "rollback_verify",
    "done",
]
Outcome = Literal["resized", "rolled_back", "rollback_failed", "aborted"]
ResultError = Literal["ResizeRolledBack", "RollbackFailed", "CapacityUnavailable"]


class DrivePlan(BaseModel):
    """The fields of the plan (models/resize.py) that drive and finish read; the rest passes by unread."""

    model_config = ConfigDict(extra="ignore")

    instance_id: str = Field(min_length=1)
    instance_name: str | None = None
    change_id: str = Field(min_length=1)
    execution_id: str = ""
    reason: str = ""
    from_type: str = Field(min_length=1)
    target_type: str = Field(min_length=1)
    candidates: list[str] = Field(min_length=1)
    was_running: bool
    availability_zone: str = Field(min_length=1)
    reserve_capacity: bool = False
    revert_after_hours: float | None = None
    prices: dict[str, float | None] = Field(default_factory=dict)
    hourly_cost_delta: float | None = None

    @property
    def label(self) -> str:
        """How messages name the instance: its Name tag when it has one, always its id."""
        return f"{self.instance_name} ({self.instance_id})" if self.instance_name else self.instance_id


class Tried(BaseModel):
    """One candidate type and what became of it, so the record shows why a fallback was used."""

    type: str
    result: str
    detail: str = ""


class FirstFailure(BaseModel):
    """The failure that turned the resize back: later ones are only events, so the cause stays readable."""

    error: str
    cause: str


class Progress(BaseModel):
    """Where the phase machine stands between two drive calls; the state machine carries it unread."""

    phase: Phase
    done: bool = False
    outcome: Outcome | None = None
    candidate_index: int = Field(default=0, ge=0)
    current_type: str
    tried: list[Tried] = Field(default_factory=list)
    first_failure: FirstFailure | None = None
    reservation_id: str | None = None
    reserved_type: str | None = None
    stop_requested_at: UtcDatetime | None = None
    running_at: UtcDatetime | None = None
    phase_deadline: UtcDatetime | None = None
    rollback_attempts: int = Field(default=0, ge=0)
    events: list[str] = Field(default_factory=list)


class Fault(BaseModel):
    """What the state machine's catch put in `$.fault`: Step Functions' own field names."""

    model_config = ConfigDict(extra="ignore")

    Error: str = "UnknownError"
    Cause: Any = None


class DriveEvent(BaseModel):
    """The drive step's payload."""

    plan: DrivePlan
    progress: Progress | None = None
    fault: Fault | None = None


class LockEvent(BaseModel):
    """The lock step's payload."""

    action: Literal["acquire", "release"]
    instance_id: str = Field(min_length=1)
    execution_id: str = Field(min_length=1)
    workflow: str = Field(default="resize", min_length=1)


class FinishEvent(BaseModel):
    """The finish step's payload; `snapshot` is the nested snapshot execution's output, if one ran."""

    plan: DrivePlan
    progress: Progress
    snapshot: Any = None
    execution_id: str = ""


class LedgerKey(BaseModel):
    """Where the ledger item is, so a user can look it up."""

    pk: str
    sk: str


class ResizeResult(BaseModel):
    """The workflow's output and the notification's text; error and cause feed the Fail state."""

    status: Outcome
    error: ResultError | None = None
    cause: str | None = None
    instance_id: str
    change_id: str
    from_type: str
    to_type: str
    snapshot_ids: list[str] = Field(default_factory=list)
    downtime_seconds: float | None = None
    hourly_cost_delta: float | None = None
    revert_at: UtcDatetime | None = None
    ledger: LedgerKey | None = None
    message: str
