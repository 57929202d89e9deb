"""The snapshot workflow's data: its input, and what each step hands the next through the state machine."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from ec2ops_lambda.errors import InvalidInput
from ec2ops_lambda.models.common import Tag, UtcDatetime, explain

INSTANCE_ID_PATTERN = r"^i-([0-9a-f]{8}|[0-9a-f]{17})$"
EXAMPLE_INPUT = '{"instance_id": "i-0123456789abcdef0", "reason": "before kernel upgrade"}'

InstanceId = Annotated[str, StringConstraints(pattern=INSTANCE_ID_PATTERN, strict=True)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256, strict=True)]


def _snapshot_id(value: Any) -> Any:
    """Accept CreateSnapshots' own items ({"SnapshotId": ...}) as well as bare ids."""
    if isinstance(value, dict) and "SnapshotId" in value:
        return value["SnapshotId"]
    return value


SnapshotId = Annotated[str, BeforeValidator(_snapshot_id), StringConstraints(min_length=1)]


# --- the execution input ------------------------------------------------------------------------------------


class RetainRequest(BaseModel):
    """`retain` as typed: a field left out takes the deployment's default, an explicit null means no limit."""

    model_config = ConfigDict(extra="forbid")

    count: int | None = Field(default=None, ge=1, le=1000, strict=True)
    days: int | None = Field(default=None, ge=1, le=3650, strict=True)


class SnapshotRequest(BaseModel):
    """What a user pastes in the console (docs/snapshot.md); unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    instance_id: InstanceId
    reason: Reason
    retain: RetainRequest | None = None
    exclude_boot: bool = Field(default=False, strict=True)


_REQUEST_HINTS = {
    "": f"the input must be a JSON object such as {EXAMPLE_INPUT}",
    "instance_id": "must look like i-0123456789abcdef0 ('i-' and 8 or 17 hex digits)",
    "reason": "must be text of 1 to 256 characters",
    "retain": 'must be an object such as {"count": 7, "days": 30}, or null',
}


def parse_request(raw: Any) -> SnapshotRequest:
    """The execution input as a SnapshotRequest, or InvalidInput listing every problem in plain words."""
    try:
        return SnapshotRequest.model_validate(raw)
    except ValidationError as error:
        problems = explain(error, SnapshotRequest, _REQUEST_HINTS)
        raise InvalidInput(
            "the snapshot input is not valid: "
            + "; ".join(problems)
            + f". Nothing was changed. Fix the input (e.g. {EXAMPLE_INPUT}; see docs/snapshot.md) and start again."
        ) from None


class PlanEvent(BaseModel):
    """The Plan step's payload: the raw execution input and the execution name."""

    request: Any = None
    change_id: str = Field(min_length=1, max_length=80)


# --- the plan -------------------------------------------------------------------------------------------------


class Retention(BaseModel):
    """The limits in force after defaults: None means that limit keeps nothing."""

    count: int | None
    days: int | None

    def summary(self) -> str:
        """Retention in words, for the plan and the record."""
        if self.count is None and self.days is None:
            return "keep every set: neither retain.count nor retain.days is set, so nothing is pruned"
        limits = []
        if self.count is not None:
            limits.append(f"the newest {self.count} set{'s' if self.count != 1 else ''}")
        if self.days is not None:
            limits.append(f"every set younger than {self.days} day{'s' if self.days != 1 else ''}")
        return "keep " + " and ".join(limits) + "; older ec2ops sets of this instance are deleted"


class PlannedVolume(BaseModel):
    """One EBS volume the set will contain."""

    volume_id: str
    device: str
    size_gib: int
    is_boot: bool


class SnapshotPlan(BaseModel):
    """Everything the later steps need, decided once: CreateSnapshots takes its description and tags."""

    instance_id: str
    instance_name: str | None = None
    reason: str
    change_id: str
    exclude_boot: bool
    retain: Retention
    retain_summary: str
    volumes: list[PlannedVolume]
    availability_zone: str
    description: str
    tags: list[Tag]
    deadline: UtcDatetime
    requested_at: UtcDatetime

    @property
    def label(self) -> str:
        """How messages name the instance: its Name tag when it has one, always its id."""
        return f"{self.instance_name} ({self.instance_id})" if self.instance_name else self.instance_id


class ProgressEvent(BaseModel):
    """The CheckSnapshots step's payload."""

    plan: SnapshotPlan
    snapshot_ids: list[SnapshotId] = Field(default_factory=list)


class SnapshotStatus(BaseModel):
    """One snapshot of the set as EC2 reports it."""

    snapshot_id: str
    volume_id: str
    state: str
    progress: str
    size_gib: int
    start_time: UtcDatetime | None


class Progress(BaseModel):
    """Where the set stands: `completed`, or `pending` (wait and check again)."""

    state: Literal["completed", "pending"]
    snapshots: list[SnapshotStatus]
    total_size_gib: int


class PruneEvent(BaseModel):
    """The Prune step's payload."""

    plan: SnapshotPlan


class PruneResult(BaseModel):
    """What retention did: deleted snapshots and sets, the sets that remain, snapshots kept for an AMI."""

    deleted: list[str] = Field(default_factory=list)
    deleted_sets: list[str] = Field(default_factory=list)
    kept_sets: list[str] = Field(default_factory=list)
    protected: list[str] = Field(default_factory=list)


class RecordEvent(BaseModel):
    """The Record step's payload: the whole story of a successful execution."""

    plan: SnapshotPlan
    snapshot_ids: list[SnapshotId]
    progress: Progress
    pruned: PruneResult = Field(default_factory=PruneResult)
    execution_id: str = ""


class LedgerKey(BaseModel):
    """Where an item landed in the ledger."""

    pk: str
    sk: str


class VolumeSnapshot(BaseModel):
    """One volume of the finished set and its snapshot."""

    volume_id: str
    snapshot_id: str
    size_gib: int


class SnapshotResult(BaseModel):
    """The workflow's output; `message` is what the notification says."""

    status: Literal["completed"] = "completed"
    instance_id: str
    change_id: str
    snapshot_ids: list[str]
    volumes: list[VolumeSnapshot]
    total_size_gib: int
    pruned_snapshot_ids: list[str]
    kept_sets: list[str]
    ledger: LedgerKey
    message: str


class Failure(BaseModel):
    """What RecordFailure hands the Fail state: the error name and a cause a human can act on."""

    error: str
    cause: str
    deleted_snapshot_ids: list[str] = Field(default_factory=list)
    kept_snapshot_ids: list[str] = Field(default_factory=list)
    ledger: LedgerKey | None = None
    notified: bool = False
