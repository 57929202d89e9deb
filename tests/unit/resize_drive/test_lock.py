"""The per-instance lock in the ledger table: one execution at a time, named when it refuses another."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from ec2ops_lambda import clock
from ec2ops_lambda.aws.lock import Lock
from ec2ops_lambda.errors import InstanceLocked

from tests.unit.world import REGION

INSTANCE = "i-0123456789abcdef0"
FIRST = "arn:aws:states:us-east-1:123456789012:execution:ec2ops-resize:first"
SECOND = "arn:aws:states:us-east-1:123456789012:execution:ec2ops-resize:second"
TAKEN_AT = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def lock(ledger_table: str, monkeypatch: pytest.MonkeyPatch) -> Lock:
    monkeypatch.setattr(clock, "utcnow", lambda: TAKEN_AT)
    return Lock(ledger_table, boto3.client("dynamodb", region_name=REGION))


def _item(table: str) -> dict[str, Any] | None:
    key = {"pk": f"lock#{INSTANCE}", "sk": "lock"}
    item: dict[str, Any] | None = (
        boto3.resource("dynamodb", region_name=REGION).Table(table).get_item(Key=key).get("Item")
    )
    return item


def test_acquire_writes_the_lock_item(lock: Lock, ledger_table: str) -> None:
    status = lock.acquire(INSTANCE, FIRST, "resize")
    assert status.as_dict() == {"held": True, "holder": FIRST}
    item = _item(ledger_table)
    assert item is not None
    assert item["holder"] == FIRST
    assert item["workflow"] == "resize"
    assert item["acquired_at"] == "2025-06-02T08:00:00.000Z"
    assert item["expires_at"] == int((TAKEN_AT + timedelta(hours=48)).timestamp())


def test_second_execution_is_refused_naming_the_first(lock: Lock) -> None:
    lock.acquire(INSTANCE, FIRST, "resize")
    with pytest.raises(InstanceLocked) as refused:
        lock.acquire(INSTANCE, SECOND, "resize")
    message = str(refused.value)
    assert FIRST in message
    assert "resize" in message
    assert "2025-06-02T08:00:00.000Z" in message
    assert "nothing was touched" in message


def test_the_holder_may_acquire_again(lock: Lock) -> None:
    lock.acquire(INSTANCE, FIRST, "resize")
    assert lock.acquire(INSTANCE, FIRST, "resize").held


def test_an_expired_lock_is_free(lock: Lock, monkeypatch: pytest.MonkeyPatch) -> None:
    lock.acquire(INSTANCE, FIRST, "resize")
    monkeypatch.setattr(clock, "utcnow", lambda: TAKEN_AT + timedelta(hours=49))
    assert lock.acquire(INSTANCE, SECOND, "spot-failover").holder == SECOND


def test_release_by_the_holder_frees_it(lock: Lock, ledger_table: str) -> None:
    lock.acquire(INSTANCE, FIRST, "resize")
    assert lock.release(INSTANCE, FIRST).as_dict() == {"held": True, "holder": FIRST}
    assert _item(ledger_table) is None
    assert lock.acquire(INSTANCE, SECOND, "resize").held


def test_release_by_another_execution_is_a_no_op(lock: Lock, ledger_table: str) -> None:
    lock.acquire(INSTANCE, FIRST, "resize")
    assert lock.release(INSTANCE, SECOND).as_dict() == {"held": False, "holder": FIRST}
    item = _item(ledger_table)
    assert item is not None and item["holder"] == FIRST


def test_release_of_a_free_lock_is_a_no_op(lock: Lock) -> None:
    assert lock.release(INSTANCE, FIRST).as_dict() == {"held": False, "holder": ""}
