"""The ledger: one DynamoDB table, items per instance sorted by time, the audit trail every workflow writes.

Schema (shared by all workflows):
  pk           `instance#<instance_id>`
  sk           `<ISO-8601 UTC with ms>#<kind>#<change_id>` (the time is when the change was requested, so a
               retried Lambda computes the same key and the conditional put catches the repeat)
  kind, instance_id, change_id, execution_id, workflow, at (when recorded), what, why,
  cost_effect  map, `monthly_usd_upper_bound` (Decimal) and a note
  detail       map, workflow specific
  expires_at   optional, epoch seconds, the table's TTL attribute
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ec2ops_lambda.aws.ec2 import error_code
from ec2ops_lambda.aws.table import LedgerTable, plain, typed
from ec2ops_lambda.errors import LedgerConflict
from ec2ops_lambda.models.common import iso

if TYPE_CHECKING:
    pass

SNAPSHOT_USD_PER_GB_MONTH = Decimal("0.05")
"""EBS snapshot storage, standard tier (us-east-1 list price); an upper bound, snapshots are incremental."""


def snapshot_cost_effect(total_gib: int) -> dict[str, Any]:
    """The most a set can add to the monthly bill: every GiB stored in full (the first snapshot of a volume)."""
    upper = (Decimal(total_gib) * SNAPSHOT_USD_PER_GB_MONTH).quantize(Decimal("0.01"))
    return {
        "monthly_usd_upper_bound": upper,
        "basis": f"{total_gib} GiB x {SNAPSHOT_USD_PER_GB_MONTH} USD/GB-month (EBS snapshot, standard tier)",
        "note": "upper bound: EBS snapshots are incremental, so a set after the first usually costs much less; "
        "deleting an old set frees only the blocks no other snapshot shares",
    }


def partition_key(instance_id: str) -> str:
    """The partition of one instance's history."""
    return f"instance#{instance_id}"


def sort_key(at: datetime, kind: str, change_id: str) -> str:
    """Sorts an instance's items by time, then kind; unique per change and kind."""
    return f"{iso(at)}#{kind}#{change_id}"


@dataclass(frozen=True)
class LedgerItem:
    """One thing that happened to an instance: what, when, why, and what it costs."""

    instance_id: str
    kind: str
    change_id: str
    execution_id: str
    workflow: str
    keyed_at: datetime
    at: datetime
    what: str
    why: str
    cost_effect: Mapping[str, Any]
    detail: Mapping[str, Any] = field(default_factory=dict)
    expires_at: int | None = None
    partition: str | None = None
    """Another partition than the instance's: a training run's items live under `run#<run_id>`."""

    @property
    def pk(self) -> str:
        """Partition key."""
        return self.partition or partition_key(self.instance_id)

    @property
    def sk(self) -> str:
        """Sort key, from the change's time so a retry writes the same key."""
        return sort_key(self.keyed_at, self.kind, self.change_id)

    def attributes(self) -> dict[str, Any]:
        """The item as plain Python values with Decimal numbers, ready for DynamoDB."""
        item: dict[str, Any] = {
            "pk": self.pk,
            "sk": self.sk,
            "kind": self.kind,
            "instance_id": self.instance_id,
            "change_id": self.change_id,
            "execution_id": self.execution_id,
            "workflow": self.workflow,
            "at": iso(self.at),
            "what": self.what,
            "why": self.why,
            "cost_effect": dynamo_value(self.cost_effect),
            "detail": dynamo_value(self.detail),
        }
        if self.expires_at is not None:
            item["expires_at"] = self.expires_at
        return item


def dynamo_value(value: Any) -> Any:
    """A value DynamoDB accepts: floats as Decimal, datetimes as ISO text, tuples and sets as lists."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int, Decimal)):
        return value
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Mapping):
        return {str(key): dynamo_value(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [dynamo_value(inner) for inner in value]
    return str(value)


class Ledger(LedgerTable):
    """Writes ledger items; a client is made on first use, never at import."""

    def put(self, item: LedgerItem) -> tuple[str, str]:
        """Write the item once: a retry of the same execution finds its own item and succeeds; anything else raises."""
        attributes = typed(item.attributes())
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=attributes,  # type: ignore[arg-type]
                ConditionExpression="attribute_not_exists(sk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
            existing: dict[str, Any] = dict(error.response.get("Item") or {})  # type: ignore[call-overload]
            written_by = plain(existing).get("execution_id")
            if written_by != item.execution_id:
                raise LedgerConflict(
                    f"the ledger already holds {item.pk} / {item.sk}, written by {written_by or 'an unknown execution'}"
                    f" (this is {item.execution_id or 'an unnamed execution'}): nothing was overwritten; look at both"
                    " executions before starting again"
                ) from None
        return item.pk, item.sk

    def items(self, instance_id: str, *, partition: str | None = None) -> list[dict[str, Any]]:
        """An instance's items (or another partition's), oldest first (for reports, cost records and tests)."""
        found: list[dict[str, Any]] = []
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": partition or partition_key(instance_id)}},
        ):
            found.extend(plain(raw) for raw in page.get("Items", []))
        return found
