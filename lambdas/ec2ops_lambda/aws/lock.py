"""One lock per instance in the ledger table, so two ec2ops executions never change the same instance at once.

Item: `pk = lock#<instance_id>`, `sk = lock`, `holder` (execution id), `workflow`, `acquired_at` (ISO),
`expires_at` (epoch seconds, the table's TTL attribute, acquired + 48 h). Any workflow may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ec2ops_lambda import clock
from ec2ops_lambda.aws.ec2 import error_code
from ec2ops_lambda.aws.table import LedgerTable, plain
from ec2ops_lambda.errors import InstanceLocked
from ec2ops_lambda.models.common import iso

if TYPE_CHECKING:
    pass

LOCK_LIFETIME = timedelta(hours=48)
"""Longer than any workflow runs; a lock its execution never released frees itself after this."""

_CONFLICT = "ConditionalCheckFailedException"


def lock_key(instance_id: str) -> dict[str, Any]:
    """The lock item's key, in the table's own partition so it never mixes with an instance's history."""
    return {"pk": {"S": f"lock#{instance_id}"}, "sk": {"S": "lock"}}


@dataclass(frozen=True)
class LockStatus:
    """After acquire: held by me. After release: whether I held it (and so freed it); holder: who held it."""

    held: bool
    holder: str

    def as_dict(self) -> dict[str, Any]:
        """The lock step's output."""
        return {"held": self.held, "holder": self.holder}


class Lock(LedgerTable):
    """Acquire and release instance locks; a client is made on first use, never at import."""

    def acquire(self, instance_id: str, execution_id: str, workflow: str) -> LockStatus:
        """Take the lock, or take it again (a retried step); held by another execution raises InstanceLocked."""
        now = clock.utcnow()
        expires = now + LOCK_LIFETIME
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={
                    **lock_key(instance_id),
                    "holder": {"S": execution_id},
                    "workflow": {"S": workflow},
                    "acquired_at": {"S": iso(now)},
                    "expires_at": {"N": str(int(expires.timestamp()))},
                },
                # An expired lock counts as free: DynamoDB's TTL deletes items up to days after they expire.
                ConditionExpression="attribute_not_exists(pk) OR holder = :me OR expires_at < :now",
                ExpressionAttributeValues={":me": {"S": execution_id}, ":now": {"N": str(int(now.timestamp()))}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error_code(error) != _CONFLICT:
                raise
            held = self._old_item(error)
            raise InstanceLocked(self._locked_message(instance_id, held)) from None
        return LockStatus(held=True, holder=execution_id)

    def release(self, instance_id: str, execution_id: str) -> LockStatus:
        """Free the lock if this execution holds it; held by another or by nobody is nothing to do."""
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key=lock_key(instance_id),
                ConditionExpression="holder = :me",
                ExpressionAttributeValues={":me": {"S": execution_id}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error_code(error) != _CONFLICT:
                raise
            return LockStatus(held=False, holder=str(self._old_item(error).get("holder", "")))
        return LockStatus(held=True, holder=execution_id)

    def _old_item(self, error: ClientError) -> dict[str, Any]:
        """The item that made the condition fail, as plain values ({} when there was none)."""
        raw: dict[str, Any] = dict(error.response.get("Item") or {})  # type: ignore[call-overload]
        return plain(raw)

    @staticmethod
    def _locked_message(instance_id: str, held: dict[str, Any]) -> str:
        """Who holds the lock, since when, and what the user can do."""
        holder = held.get("holder") or "an unknown execution"
        workflow = held.get("workflow") or "unknown"
        since = held.get("acquired_at") or "an unknown time"
        return (
            f"{instance_id} is locked by the ec2ops {workflow} execution {holder} since {since}: nothing was touched. "
            "Wait for that execution to end and start again; if it no longer runs, delete the ledger item "
            f"pk=lock#{instance_id}, sk=lock (it also expires by itself 48 hours after it was taken)."
        )
