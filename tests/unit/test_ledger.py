"""The ledger's shared schema: keys that sort by time, values DynamoDB accepts, one write per change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from ec2ops_lambda.aws.ledger import Ledger, LedgerItem, dynamo_value, snapshot_cost_effect, sort_key
from ec2ops_lambda.errors import LedgerConflict

AT = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def item(execution_id: str = "exec-1", **changes: object) -> LedgerItem:
    fields: dict[str, object] = {
        "instance_id": "i-0123456789abcdef0",
        "kind": "snapshot",
        "change_id": "chg-1",
        "execution_id": execution_id,
        "workflow": "snapshot",
        "keyed_at": AT,
        "at": AT,
        "what": "a set of 2 volumes",
        "why": "testing",
        "cost_effect": snapshot_cost_effect(10),
        "detail": {"ratio": 0.25, "when": AT, "ids": ("snap-1",), "nothing": None},
        **changes,
    }
    return LedgerItem(**fields)  # type: ignore[arg-type]


def test_sort_keys_are_fixed_width_utc_with_milliseconds() -> None:
    in_paris = AT.astimezone(timezone(timedelta(hours=1)))
    assert sort_key(in_paris, "snapshot", "chg-1") == "2025-01-02T03:04:05.678Z#snapshot#chg-1"
    assert sort_key(AT.replace(microsecond=0), "snapshot", "x") == "2025-01-02T03:04:05.000Z#snapshot#x"


def test_values_become_what_dynamodb_accepts() -> None:
    assert dynamo_value({"a": 0.1, "b": [1, (2.5,)], "c": AT, "d": True}) == {
        "a": Decimal("0.1"),
        "b": [1, [Decimal("2.5")]],
        "c": "2025-01-02T03:04:05.678Z",
        "d": True,
    }


def test_the_cost_effect_of_a_set_is_an_upper_bound_at_the_snapshot_price() -> None:
    effect = snapshot_cost_effect(108)
    assert effect["monthly_usd_upper_bound"] == Decimal("5.40")
    assert "108 GiB" in effect["basis"]


def test_an_item_is_written_once_and_a_retry_of_the_same_execution_is_harmless(ledger_table: str) -> None:
    ledger = Ledger(ledger_table)
    assert ledger.put(item()) == ("instance#i-0123456789abcdef0", "2025-01-02T03:04:05.678Z#snapshot#chg-1")
    ledger.put(item(at=AT + timedelta(seconds=5)))
    stored = ledger.items("i-0123456789abcdef0")
    assert len(stored) == 1
    assert stored[0]["detail"]["ratio"] == Decimal("0.25")
    assert stored[0]["detail"]["nothing"] is None
    assert "expires_at" not in stored[0]


def test_another_execution_cannot_overwrite_an_item(ledger_table: str) -> None:
    ledger = Ledger(ledger_table)
    ledger.put(item())
    with pytest.raises(LedgerConflict, match="written by exec-1 \\(this is exec-2\\)"):
        ledger.put(item(execution_id="exec-2"))


def test_an_item_with_a_ttl_carries_expires_at(ledger_table: str) -> None:
    ledger = Ledger(ledger_table)
    ledger.put(item(kind="bad-pool", expires_at=1_800_000_000))
    assert ledger.items("i-0123456789abcdef0")[0]["expires_at"] == 1_800_000_000
