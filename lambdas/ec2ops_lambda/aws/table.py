"""What every class that reads or writes the ledger table shares: its name, a client made on first use (never at
import), and the conversion between DynamoDB's typed attributes and plain Python values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def typed(item: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values (Decimal numbers) as DynamoDB attribute values."""
    return {key: _SERIALIZER.serialize(value) for key, value in item.items()}


def plain(raw: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values as plain Python values."""
    return {key: _DESERIALIZER.deserialize(value) for key, value in raw.items()}


class LedgerTable:
    """One DynamoDB table, the ledger; tests pass their own client."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        """The boto3 client, created lazily."""
        if self._client is None:
            self._client = boto3.client("dynamodb")
        return self._client
