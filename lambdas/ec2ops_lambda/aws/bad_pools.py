"""The durable memory of bad spot pools: marks in the ledger table, each with an expiry.

Item: `pk = spot-pools`, `sk = <type>/<az>#<marked at ISO>#<change_id>`, `pool`, `instance_type`,
`availability_zone`, `reason`, `until` (ISO), `marked_by` (execution id), `expires_at` (the table's TTL, a day
after `until`, so the audit survives the mark). One partition: Choose reads every live mark in one Query.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from ec2ops_lambda.models.common import as_utc, iso
from ec2ops_lambda.spot.pool_choice import BadPoolMark, Pool

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PARTITION = "spot-pools"
AUDIT_AFTER_EXPIRY = timedelta(days=1)


class BadPools:
    """Marks pools bad and reads the marks; a client is made on first use, never at import."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client
        self._serializer = TypeSerializer()
        self._deserializer = TypeDeserializer()

    @property
    def client(self) -> DynamoDBClient:
        """The boto3 client, created lazily."""
        if self._client is None:
            self._client = boto3.client("dynamodb")
        return self._client

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
            Item={key: self._serializer.serialize(value) for key, value in item.items()},  # type: ignore[misc]
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
                item = {key: self._deserializer.deserialize(value) for key, value in raw.items()}  # type: ignore[arg-type]
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
