"""The durable memory of bad spot pools: marks in the ledger table, each with an expiry.

Item: `pk = spot-pools`, `sk = <type>/<az>#<marked at ISO>#<change_id>`, `pool`, `instance_type`,
`availability_zone`, `reason`, `until` (ISO), `marked_by` (execution id), `expires_at` (the table's TTL, a day
after `until`, so the audit survives the mark). One partition: Choose reads every live mark in one Query.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ec2ops_lambda.aws.table import LedgerTable, plain, typed
from ec2ops_lambda.models.common import as_utc, iso
from ec2ops_lambda.spot.pool_choice import BadPoolMark, Pool

if TYPE_CHECKING:
    pass

PARTITION = "spot-pools"
AUDIT_AFTER_EXPIRY = timedelta(days=1)


class BadPools(LedgerTable):
    """Marks pools bad and reads the marks; a client is made on first use, never at import."""

    def mark(
        self, pool: Pool, *, reason: str, at: datetime, until: datetime, change_id: str, execution_id: str
    ) -> None:
        """Remember the pool as bad until `until` (a repeat of the same mark writes the same item)."""
        item = {
            "pk": PARTITION,
            "sk": f"{pool.name}#{iso(at)}#{change_id}",
            "pool": pool.name,
            "instance_type": pool.instance_type,
            "availability_zone": pool.availability_zone,
            "reason": reason[:500],
            "until": iso(until),
            "marked_at": iso(at),
            "marked_by": execution_id,
            "expires_at": int((as_utc(until) + AUDIT_AFTER_EXPIRY).timestamp()),
        }
        self.client.put_item(
            TableName=self.table_name,
            Item=typed(item),
        )

    def active(self, now: datetime) -> list[BadPoolMark]:
        """Every mark whose `until` is still ahead (the TTL deletes items late, so the time is checked here)."""
        marks: list[BadPoolMark] = []
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": PARTITION}},
            ConsistentRead=True,
        ):
            for raw in page.get("Items", []):
                item = plain(raw)
                until = datetime.fromisoformat(str(item["until"]).replace("Z", "+00:00"))
                if until > as_utc(now):
                    marks.append(
                        BadPoolMark(
                            Pool(str(item["instance_type"]), str(item["availability_zone"])),
                            str(item.get("reason", "")),
                            until,
                        )
                    )
        return marks
