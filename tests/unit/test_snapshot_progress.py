"""CheckSnapshots: completed, still pending, ended in error, or past the plan's deadline."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from ec2ops_lambda import clock
from ec2ops_lambda.errors import SnapshotFailed, SnapshotTimeout
from ec2ops_lambda.handlers import snapshot as handlers

from tests.unit.world import FakeLambdaContext, set_snapshot_state

Launch = Callable[..., str]
Taken = Callable[..., tuple[dict[str, Any], list[str]]]


@pytest.fixture
def root_and_data(launch: Launch, taken: Taken) -> tuple[dict[str, Any], list[str]]:
    """A plan and its set: an 8 GiB root and a 100 GiB data volume."""
    return taken(launch(data_volumes_gib=(100,)))


def check(context: FakeLambdaContext, plan: dict[str, Any], snapshot_ids: list[Any]) -> dict[str, Any]:
    return handlers.progress({"plan": plan, "snapshot_ids": snapshot_ids}, context)


def after_deadline(plan: dict[str, Any], minutes: float) -> datetime:
    return datetime.fromisoformat(plan["deadline"]) + timedelta(minutes=minutes)


def test_progress_reports_completed_with_every_snapshot(
    root_and_data: tuple[dict[str, Any], list[str]], context: FakeLambdaContext
) -> None:
    plan, snapshot_ids = root_and_data
    result = check(context, plan, snapshot_ids)
    assert result["state"] == "completed"
    assert [s["snapshot_id"] for s in result["snapshots"]] == snapshot_ids
    assert sorted(s["size_gib"] for s in result["snapshots"]) == [8, 100]
    assert {s["volume_id"] for s in result["snapshots"]} == {v["volume_id"] for v in plan["volumes"]}
    assert all(s["state"] == "completed" and s["start_time"].endswith("Z") for s in result["snapshots"])
    assert result["total_size_gib"] == 108


def test_progress_reports_pending_while_a_snapshot_is_still_being_taken(
    root_and_data: tuple[dict[str, Any], list[str]], context: FakeLambdaContext
) -> None:
    plan, snapshot_ids = root_and_data
    set_snapshot_state(snapshot_ids[1], "pending")
    result = check(context, plan, snapshot_ids)
    assert result["state"] == "pending"
    assert [s["state"] for s in result["snapshots"]] == ["completed", "pending"]
    assert result["total_size_gib"] == 108


def test_progress_fails_naming_the_snapshot_its_volume_and_ec2s_reason(
    root_and_data: tuple[dict[str, Any], list[str]], context: FakeLambdaContext
) -> None:
    plan, snapshot_ids = root_and_data
    set_snapshot_state(snapshot_ids[0], "error", "Snapshot failed: volume I/O error")
    volume_id = next(v["volume_id"] for v in plan["volumes"] if v["is_boot"])
    with pytest.raises(SnapshotFailed) as failed:
        check(context, plan, snapshot_ids)
    message = str(failed.value)
    assert f"snapshot {snapshot_ids[0]} of volume {volume_id} ended in state 'error'" in message
    assert "Snapshot failed: volume I/O error" in message


def test_progress_times_out_once_past_the_deadline(
    root_and_data: tuple[dict[str, Any], list[str]],
    context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan, snapshot_ids = root_and_data
    set_snapshot_state(snapshot_ids[1], "pending")
    monkeypatch.setattr(clock, "utcnow", lambda: after_deadline(plan, 1))
    with pytest.raises(SnapshotTimeout) as late:
        check(context, plan, snapshot_ids)
    assert f"did not complete by the deadline {plan['deadline']}" in str(late.value)
    assert snapshot_ids[1] in str(late.value)


def test_progress_still_waits_just_before_the_deadline(
    root_and_data: tuple[dict[str, Any], list[str]],
    context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan, snapshot_ids = root_and_data
    set_snapshot_state(snapshot_ids[1], "pending")
    monkeypatch.setattr(clock, "utcnow", lambda: after_deadline(plan, -1))
    assert check(context, plan, snapshot_ids)["state"] == "pending"


def test_a_set_that_completed_late_is_still_completed(
    root_and_data: tuple[dict[str, Any], list[str]],
    context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan, snapshot_ids = root_and_data
    monkeypatch.setattr(clock, "utcnow", lambda: after_deadline(plan, 30))
    assert check(context, plan, snapshot_ids)["state"] == "completed"


def test_progress_fails_when_there_is_no_snapshot_to_wait_for(
    root_and_data: tuple[dict[str, Any], list[str]], context: FakeLambdaContext
) -> None:
    plan, _ = root_and_data
    with pytest.raises(SnapshotFailed, match="CreateSnapshots returned no snapshot"):
        check(context, plan, [])


def test_progress_fails_when_a_snapshot_vanished(
    root_and_data: tuple[dict[str, Any], list[str]], context: FakeLambdaContext, ec2: Any
) -> None:
    plan, snapshot_ids = root_and_data
    ec2.delete_snapshot(SnapshotId=snapshot_ids[0])
    with pytest.raises(SnapshotFailed, match=f"snapshot {snapshot_ids[0]} of web-1 .* no longer exists"):
        check(context, plan, snapshot_ids)


def test_progress_accepts_create_snapshots_items_as_they_come(
    root_and_data: tuple[dict[str, Any], list[str]], context: FakeLambdaContext
) -> None:
    plan, snapshot_ids = root_and_data
    result = check(context, plan, [{"SnapshotId": snapshot_id} for snapshot_id in snapshot_ids])
    assert [s["snapshot_id"] for s in result["snapshots"]] == snapshot_ids
