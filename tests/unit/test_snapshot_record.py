"""Record: one ledger item per completed set, and the workflow output a user reads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from ec2ops_lambda import clock
from ec2ops_lambda.errors import ConfigurationError, LedgerConflict
from ec2ops_lambda.handlers import snapshot as handlers

from tests.unit.world import FakeLambdaContext, execution_arn, ledger_items, set_started

Launch = Callable[..., str]
Taken = Callable[..., tuple[dict[str, Any], list[str]]]

PLANNED_AT = datetime(2025, 3, 1, 9, 30, 15, 123000, tzinfo=UTC)
RECORDED_AT = datetime(2025, 3, 1, 9, 33, 0, tzinfo=UTC)


@pytest.fixture
def finished(
    launch: Launch, taken: Taken, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The Record payload of an execution that snapshotted root + data volume and pruned one older set."""
    instance_id = launch(data_volumes_gib=(100,))
    _, old = taken(instance_id, "older", retain={"count": 1, "days": None})
    set_started(old, PLANNED_AT - timedelta(days=3))
    monkeypatch.setattr(clock, "utcnow", lambda: PLANNED_AT)
    plan, snapshot_ids = taken(instance_id, "snap-happy", retain={"count": 1, "days": None})
    set_started(snapshot_ids, PLANNED_AT)
    monkeypatch.setattr(clock, "utcnow", lambda: RECORDED_AT)
    progress = handlers.progress({"plan": plan, "snapshot_ids": snapshot_ids}, context)
    pruned = handlers.prune({"plan": plan}, context)
    return {
        "plan": plan,
        "snapshot_ids": snapshot_ids,
        "progress": progress,
        "pruned": pruned,
        "execution_id": execution_arn("snap-happy"),
    }


def test_record_writes_one_ledger_item_that_says_what_when_why_and_cost(
    finished: dict[str, Any], ledger_table: str, context: FakeLambdaContext
) -> None:
    # When a completed execution is recorded
    handlers.record(finished, context)
    # Then the instance's history holds one item, keyed by the time of the request
    plan = finished["plan"]
    items = ledger_items(plan["instance_id"])
    assert len(items) == 1
    item = items[0]
    assert item["pk"] == f"instance#{plan['instance_id']}"
    assert item["sk"] == "2025-03-01T09:30:15.123Z#snapshot#snap-happy"
    assert item["kind"] == "snapshot"
    assert item["workflow"] == "snapshot"
    assert item["instance_id"] == plan["instance_id"]
    assert item["change_id"] == "snap-happy"
    assert item["execution_id"] == finished["execution_id"]
    assert item["at"] == "2025-03-01T09:33:00.000Z"
    assert item["why"] == "before kernel upgrade"
    assert plan["instance_id"] in item["what"]
    # and its cost effect is the full size at the snapshot price, an upper bound
    assert item["cost_effect"]["monthly_usd_upper_bound"] == Decimal("5.40")
    assert "incremental" in item["cost_effect"]["note"]
    # and its detail lists the set and what retention did
    detail = item["detail"]
    assert sorted(detail["snapshot_ids"]) == sorted(finished["snapshot_ids"])
    assert sorted(v["size_gib"] for v in detail["volumes"]) == [8, 100]
    assert detail["total_size_gib"] == 108
    assert sorted(detail["pruned_snapshot_ids"]) == sorted(finished["pruned"]["deleted"])
    assert detail["pruned_sets"] == ["older"]
    assert detail["retain"] == {"count": 1, "days": None}


def test_record_returns_the_workflow_output_with_a_plain_message(
    finished: dict[str, Any], ledger_table: str, context: FakeLambdaContext
) -> None:
    output = handlers.record(finished, context)
    plan = finished["plan"]
    assert output["status"] == "completed"
    assert output["instance_id"] == plan["instance_id"]
    assert output["change_id"] == "snap-happy"
    assert output["snapshot_ids"] == finished["snapshot_ids"]
    assert {(v["snapshot_id"], v["size_gib"]) for v in output["volumes"]} == {
        (s["snapshot_id"], s["size_gib"]) for s in finished["progress"]["snapshots"]
    }
    assert output["total_size_gib"] == 108
    assert output["pruned_snapshot_ids"] == finished["pruned"]["deleted"]
    assert output["kept_sets"] == ["snap-happy"]
    assert output["ledger"] == {
        "pk": f"instance#{plan['instance_id']}",
        "sk": "2025-03-01T09:30:15.123Z#snapshot#snap-happy",
    }
    first, second = output["message"].split("\n")
    assert first.startswith(f"Snapshot set snap-happy of web-1 ({plan['instance_id']}) completed: 2 volumes, 108 GiB")
    assert "Reason: before kernel upgrade." in first
    assert second == "Retention (count 1): deleted 2 snapshots of 1 older set (older); 1 set kept."


def test_a_retried_record_does_not_write_twice(
    finished: dict[str, Any], ledger_table: str, context: FakeLambdaContext
) -> None:
    first = handlers.record(finished, context)
    again = handlers.record(finished, context)
    assert again["ledger"] == first["ledger"]
    assert len(ledger_items(finished["plan"]["instance_id"])) == 1


def test_record_refuses_to_overwrite_another_executions_item(
    finished: dict[str, Any], ledger_table: str, context: FakeLambdaContext
) -> None:
    handlers.record(finished, context)
    with pytest.raises(LedgerConflict, match="nothing was overwritten"):
        handlers.record({**finished, "execution_id": execution_arn("someone-else")}, context)
    assert ledger_items(finished["plan"]["instance_id"])[0]["execution_id"] == finished["execution_id"]


def test_record_without_a_ledger_table_is_a_configuration_error(
    finished: dict[str, Any], context: FakeLambdaContext
) -> None:
    with pytest.raises(ConfigurationError, match="LEDGER_TABLE: is required"):
        handlers.record(finished, context)
