"""One incident item per interrupted instance in the ledger table: the claim that makes a failover happen once.

Item: `pk = spot-incident#<instance_id>`, `sk = incident`, `state`, `holder` (the execution acting on it),
`change_id`, `signals` (every signal seen, for the audit), `standby_id`, `replacement_id`, `warning_at`,
`failed_phase`, `error`, `updated_at`, `expires_at` (TTL: 7 days after the last change).

States and the only moves (each a conditional write, so two executions never both win):

    (none) | failed* -> failing-over          a warning or manual failover claims it
    (none) | failed* -> preparing             a rebalance (standby policy) or manual prepare claims it
    preparing        -> preparing + warning_at   a warning while the standby launches: it promotes when ready
    preparing        -> standby-ready         the standby runs (no warning yet)
    preparing        -> promoting             the standby runs and a warning came meanwhile
    standby-ready    -> promoting             the warning (or manual promote) claims the promotion
    failing-over | promoting -> replaced      the replacement is primary
    any held state   -> failed                (by its holder) the step failed; the incident may be claimed again

*A failed incident is claimed again by a manual input, or by a warning when the failure left no replacement
running (`replacement_id` unset): one that did is reported, never doubled.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from ec2ops_lambda import clock
from ec2ops_lambda.aws.ec2 import error_code
from ec2ops_lambda.aws.ledger import dynamo_value
from ec2ops_lambda.aws.table import LedgerTable, plain, typed
from ec2ops_lambda.models.common import iso

if TYPE_CHECKING:
    pass

IncidentState = Literal["failing-over", "preparing", "standby-ready", "promoting", "replaced", "failed"]
INCIDENT_LIFETIME = timedelta(days=7)
"""Longer than any signal of one interruption can arrive late; the TTL then forgets the incident."""
_CONFLICT = "ConditionalCheckFailedException"


def incident_key(instance_id: str) -> dict[str, Any]:
    """The incident item's key, in its own partition so it never mixes with the instance's history."""
    return {"pk": {"S": f"spot-incident#{instance_id}"}, "sk": {"S": "incident"}}


class Incidents(LedgerTable):
    """Reads and moves incident items; a client is made on first use, never at import."""

    def get(self, instance_id: str) -> dict[str, Any] | None:
        """The incident as plain values, read consistently, or None."""
        answer = self.client.get_item(TableName=self.table_name, Key=incident_key(instance_id), ConsistentRead=True)
        raw = answer.get("Item")
        if not raw:
            return None
        return plain(raw)

    def claim(
        self,
        instance_id: str,
        state: Literal["failing-over", "preparing"],
        *,
        execution_id: str,
        change_id: str,
        signal: dict[str, Any],
        reclaim_failed: bool,
    ) -> bool:
        """Create the incident held by this execution; True when this execution now holds it (also on a retry)."""
        now = clock.utcnow()
        item = {
            "pk": f"spot-incident#{instance_id}",
            "sk": "incident",
            "state": state,
            "holder": execution_id,
            "change_id": change_id,
            "signals": [dynamo_value(signal)],
            "created_at": iso(now),
            "updated_at": iso(now),
            "expires_at": int((now + INCIDENT_LIFETIME).timestamp()),
        }
        condition = "attribute_not_exists(pk) OR holder = :me"
        values: dict[str, Any] = {":me": execution_id}
        if reclaim_failed:
            condition += " OR #state = :failed"
            values[":failed"] = "failed"
        return self._put(item, condition, values)

    def note_signal(self, instance_id: str, signal: dict[str, Any]) -> None:
        """Append a signal to the incident's audit list (duplicates included); never fails the caller's decision."""
        self._update(
            instance_id,
            "SET signals = list_append(if_not_exists(signals, :empty), :signal), updated_at = :now",
            None,
            {":signal": [dynamo_value(signal)], ":empty": []},
        )

    def note_warning(self, instance_id: str, signal: dict[str, Any]) -> bool:
        """A warning while a standby is being prepared: remembered, so the standby is promoted when it runs."""
        return self._update(
            instance_id,
            "SET warning_at = :now, signals = list_append(signals, :signal), updated_at = :now",
            "#state = :preparing",
            {":signal": [dynamo_value(signal)], ":preparing": "preparing"},
        )

    def standby_ready(
        self, instance_id: str, execution_id: str, standby_id: str, launch: dict[str, Any]
    ) -> Literal["ready", "promote"]:
        """The standby runs: `ready` to wait for the warning, or `promote` when the warning came meanwhile. How it
        was launched is kept, so the execution that promotes it can record the switch."""
        standby = {"standby_id": standby_id, "launch": launch}
        ready = self._update(
            instance_id,
            "SET #state = :ready, standby_id = :id, standby = :standby, updated_at = :now",
            "#state = :preparing AND holder = :me AND attribute_not_exists(warning_at)",
            {
                ":ready": "standby-ready",
                ":id": standby_id,
                ":standby": standby,
                ":preparing": "preparing",
                ":me": execution_id,
            },
        )
        if ready:
            return "ready"
        promoting = self._update(
            instance_id,
            "SET #state = :promoting, standby_id = :id, standby = :standby, updated_at = :now",
            "#state = :preparing AND holder = :me",
            {
                ":promoting": "promoting",
                ":id": standby_id,
                ":standby": standby,
                ":preparing": "preparing",
                ":me": execution_id,
            },
        )
        if not promoting:
            raise RuntimeError(f"the incident of {instance_id} is no longer held by {execution_id}")
        return "promote"

    def start_promotion(self, instance_id: str, execution_id: str, change_id: str) -> str | None:
        """standby-ready -> promoting, held by this execution; the standby's id, or None when there is none ready."""
        moved = self._update(
            instance_id,
            "SET #state = :promoting, holder = :me, change_id = :change, updated_at = :now",
            "#state = :ready OR (#state = :promoting AND holder = :me)",
            {":promoting": "promoting", ":ready": "standby-ready", ":me": execution_id, ":change": change_id},
        )
        if not moved:
            return None
        item = self.get(instance_id) or {}
        standby = item.get("standby_id")
        return str(standby) if standby else None

    def replaced(self, instance_id: str, execution_id: str, replacement_id: str) -> None:
        """The replacement is primary: the incident is done; later signals are duplicates."""
        self._update(
            instance_id,
            "SET #state = :replaced, replacement_id = :new, updated_at = :now",
            "holder = :me",
            {":replaced": "replaced", ":new": replacement_id, ":me": execution_id},
        )

    def failed(
        self, instance_id: str, execution_id: str, *, phase: str, error: str, replacement_id: str | None
    ) -> bool:
        """The holder's step failed: the incident may be claimed again (see the module docstring)."""
        values: dict[str, Any] = {":failed": "failed", ":phase": phase, ":error": error[:1000], ":me": execution_id}
        expression = "SET #state = :failed, failed_phase = :phase, #error = :error, updated_at = :now"
        if replacement_id:
            expression += ", replacement_id = :new"
            values[":new"] = replacement_id
        return self._update(instance_id, expression, "holder = :me", values, names={"#error": "error"})

    # --- plumbing -----------------------------------------------------------------------------------------------
    def _put(self, item: dict[str, Any], condition: str, values: dict[str, Any]) -> bool:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Item": {key: self._serialize(value) for key, value in item.items()},
            "ConditionExpression": condition,
            "ExpressionAttributeValues": {key: self._serialize(value) for key, value in values.items()},
        }
        if "#state" in condition:
            kwargs["ExpressionAttributeNames"] = {"#state": "state"}
        try:
            self.client.put_item(**kwargs)
        except ClientError as error:
            if error_code(error) == _CONFLICT:
                return False
            raise
        return True

    def _update(
        self,
        instance_id: str,
        expression: str,
        condition: str | None,
        values: dict[str, Any],
        *,
        names: dict[str, str] | None = None,
    ) -> bool:
        now = clock.utcnow()
        all_values = {
            **values,
            ":now": iso(now),
            ":expires": int((now + INCIDENT_LIFETIME).timestamp()),
        }
        expression += ", expires_at = :expires"
        all_names = {**(names or {})}
        text = expression + " " + (condition or "")
        if "#state" in text:
            all_names["#state"] = "state"
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": incident_key(instance_id),
            "UpdateExpression": expression,
            "ExpressionAttributeValues": {key: self._serialize(value) for key, value in all_values.items()},
            "ConditionExpression": "attribute_exists(pk)" + (f" AND ({condition})" if condition else ""),
        }
        if all_names:
            kwargs["ExpressionAttributeNames"] = all_names
        try:
            self.client.update_item(**kwargs)
        except ClientError as error:
            if error_code(error) == _CONFLICT:
                return False
            raise
        return True

    @staticmethod
    def _serialize(value: Any) -> Any:
        return typed({"v": dynamo_value(value)})["v"]
