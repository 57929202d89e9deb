"""RecordFailure: an incomplete set is removed, a completed one kept; the failure is recorded and announced."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from ec2ops_lambda.handlers import snapshot as handlers

from tests.unit.world import (
    FakeLambdaContext,
    Inbox,
    execution_arn,
    existing_snapshot_ids,
    ledger_items,
    set_snapshot_state,
)

Launch = Callable[..., str]
Taken = Callable[..., tuple[dict[str, Any], list[str]]]
Planned = Callable[..., dict[str, Any]]


def lambda_error(error_type: str, message: str) -> dict[str, str]:
    """A Lambda task's error as Step Functions catches it: the Cause is the runtime's JSON."""
    return {"Error": error_type, "Cause": json.dumps({"errorMessage": message, "errorType": error_type})}


def fail(context: FakeLambdaContext, state: Any, change_id: str = "chg-1") -> dict[str, Any]:
    return handlers.record_failure({"state": state, "execution_id": execution_arn(change_id)}, context)


@pytest.fixture
def recording(ledger_table: str, inbox: Inbox) -> Inbox:
    """The ledger table and the topic exist, as deployed."""
    return inbox


def test_an_incomplete_set_is_deleted_recorded_and_announced(
    launch: Launch, taken: Taken, ec2: Any, recording: Inbox, context: FakeLambdaContext
) -> None:
    # Given a set where one snapshot ended in error, and a hand-made snapshot of the same instance
    instance_id = launch(data_volumes_gib=(20,))
    plan, snapshot_ids = taken(instance_id)
    by_hand = ec2.create_snapshot(VolumeId=plan["volumes"][0]["volume_id"])["SnapshotId"]
    set_snapshot_state(snapshot_ids[1], "error", "Snapshot failed: volume I/O error")
    with pytest.raises(Exception) as raised:
        handlers.progress({"plan": plan, "snapshot_ids": snapshot_ids}, context)
    state = {
        "instance_id": instance_id,
        "reason": "before kernel upgrade",
        "plan": plan,
        "created": {"snapshot_ids": snapshot_ids},
        "error": lambda_error(type(raised.value).__name__, str(raised.value)),
    }
    # When RecordFailure runs
    failure = fail(context, state)
    # Then the whole incomplete set is gone, and nothing else
    assert existing_snapshot_ids(ec2) == {by_hand}
    assert sorted(failure["deleted_snapshot_ids"]) == sorted(snapshot_ids)
    # and the execution fails with the error's name and a cause that says what failed and what was cleaned up
    assert failure["error"] == "SnapshotFailed"
    assert "Snapshot failed: volume I/O error" in failure["cause"]
    assert f"web-1 ({instance_id})" in failure["cause"]
    assert "deleted the incomplete set" in failure["cause"]
    assert '"errorType"' not in failure["cause"]
    # and the ledger holds a snapshot-failed item
    items = ledger_items(instance_id)
    assert [item["kind"] for item in items] == ["snapshot-failed"]
    assert items[0]["sk"] == f"{plan['requested_at']}#snapshot-failed#chg-1"
    assert items[0]["what"] == failure["cause"]
    assert items[0]["why"] == "before kernel upgrade"
    assert items[0]["detail"]["error"]["name"] == "SnapshotFailed"
    assert sorted(items[0]["detail"]["deleted_snapshot_ids"]) == sorted(snapshot_ids)
    assert items[0]["cost_effect"]["monthly_usd_upper_bound"] == 0
    # and subscribers are told
    messages = recording.messages()
    assert len(messages) == 1
    assert messages[0]["subject"] == f"ec2ops test: snapshot of {instance_id} failed (SnapshotFailed)"
    assert failure["cause"] in messages[0]["message"]
    assert execution_arn("chg-1") in messages[0]["message"]


def test_a_timed_out_set_still_pending_is_deleted(
    launch: Launch, taken: Taken, ec2: Any, recording: Inbox, context: FakeLambdaContext
) -> None:
    plan, snapshot_ids = taken(launch())
    set_snapshot_state(snapshot_ids[0], "pending")
    progress = {"state": "pending", "snapshots": [], "total_size_gib": 8}
    state = {
        "plan": plan,
        "created": {"snapshot_ids": snapshot_ids},
        "progress": progress,
        "error": lambda_error("SnapshotTimeout", "the snapshots did not complete by the deadline"),
    }
    failure = fail(context, state)
    assert existing_snapshot_ids(ec2) == set()
    assert failure["error"] == "SnapshotTimeout"


def test_a_completed_set_is_kept_when_a_later_step_fails(
    launch: Launch, taken: Taken, ec2: Any, recording: Inbox, context: FakeLambdaContext
) -> None:
    # Given a set that completed, then pruning failed
    instance_id = launch(data_volumes_gib=(100,))
    plan, snapshot_ids = taken(instance_id)
    progress = handlers.progress({"plan": plan, "snapshot_ids": snapshot_ids}, context)
    state = {
        "plan": plan,
        "created": {"snapshot_ids": snapshot_ids},
        "progress": progress,
        "error": {"Error": "Ec2.Ec2Exception", "Cause": "Request limit exceeded. (Service: Ec2, Status Code: 503)"},
    }
    # When RecordFailure runs
    failure = fail(context, state)
    # Then the set stays: it is whole and usable
    assert existing_snapshot_ids(ec2) == set(snapshot_ids)
    assert failure["kept_snapshot_ids"] == snapshot_ids
    assert failure["deleted_snapshot_ids"] == []
    assert "failed while pruning older sets" in failure["cause"]
    assert "was kept: it is whole and usable" in failure["cause"]
    item = ledger_items(instance_id)[0]
    assert item["kind"] == "snapshot-failed"
    assert item["detail"]["kept_snapshot_ids"] == snapshot_ids
    assert item["cost_effect"]["monthly_usd_upper_bound"] > 0


def test_a_create_snapshots_error_is_recorded_with_its_sdk_cause(
    launch: Launch, planned: Planned, ec2: Any, recording: Inbox, context: FakeLambdaContext
) -> None:
    # Given CreateSnapshots failed (an SDK task: the cause is plain text, no set was created)
    instance_id = launch()
    plan = planned(instance_id, change_id="create-fault")
    cause = (
        "The maximum per volume CreateSnapshot request rate has been exceeded. (Service: Ec2, Status Code: 400, "
        "Request ID: 1a2b, Error Code: SnapshotCreationPerVolumeRateExceeded)"
    )
    state = {"plan": plan, "error": {"Error": "Ec2.Ec2Exception", "Cause": cause}}
    # When RecordFailure runs
    failure = fail(context, state, change_id="create-fault")
    # Then the cause carries the SDK's text, says where it failed, and that nothing needed cleaning
    assert failure["error"] == "Ec2.Ec2Exception"
    assert "SnapshotCreationPerVolumeRateExceeded" in failure["cause"]
    assert "failed while creating the snapshots" in failure["cause"]
    assert "Nothing was created" in failure["cause"]
    assert [item["kind"] for item in ledger_items(instance_id)] == ["snapshot-failed"]
    assert len(recording.messages()) == 1


def test_snapshots_of_the_change_are_found_by_tag_when_the_state_lost_their_ids(
    launch: Launch, taken: Taken, ec2: Any, recording: Inbox, context: FakeLambdaContext
) -> None:
    plan, snapshot_ids = taken(launch(data_volumes_gib=(10,)))
    _, other_change = taken(plan["instance_id"], "other-change")
    state = {"plan": plan, "error": {"Error": "States.Timeout", "Cause": ""}}
    failure = fail(context, state)
    assert sorted(failure["deleted_snapshot_ids"]) == sorted(snapshot_ids)
    assert existing_snapshot_ids(ec2) == set(other_change)


def test_a_snapshot_not_made_for_this_change_is_never_deleted(
    launch: Launch, taken: Taken, ec2: Any, recording: Inbox, context: FakeLambdaContext
) -> None:
    plan, snapshot_ids = taken(launch())
    by_hand = ec2.create_snapshot(VolumeId=plan["volumes"][0]["volume_id"])["SnapshotId"]
    state = {
        "plan": plan,
        "created": {"snapshot_ids": [*snapshot_ids, by_hand]},
        "error": lambda_error("SnapshotFailed", "boom"),
    }
    failure = fail(context, state)
    assert failure["deleted_snapshot_ids"] == snapshot_ids
    assert existing_snapshot_ids(ec2) == {by_hand}


@pytest.mark.parametrize(
    "state",
    [None, "garbage", {}, {"error": "not a map"}, {"plan": {"instance_id": 3}, "created": 5, "progress": []}],
    ids=["none", "text", "empty", "bad-error", "bad-plan"],
)
def test_a_malformed_state_still_gives_a_cause_and_never_raises(
    state: Any, ec2: Any, recording: Inbox, context: FakeLambdaContext
) -> None:
    failure = fail(context, state)
    assert failure["error"] == "UnknownError"
    assert failure["cause"].startswith("Snapshot of an unknown instance failed before anything was created")
    assert len(recording.messages()) == 1


def test_a_state_without_a_plan_still_names_the_instance_and_the_error(
    launch: Launch, ec2: Any, recording: Inbox, context: FakeLambdaContext
) -> None:
    instance_id = launch()
    state = {"instance_id": instance_id, "reason": "x", "error": lambda_error("NotManaged", "add the tag")}
    failure = fail(context, state)
    assert failure["cause"] == (
        f"Snapshot of {instance_id} failed before anything was created: NotManaged: add the tag. "
        "Nothing was created, so nothing needed cleaning up."
    )
    assert [item["kind"] for item in ledger_items(instance_id)] == ["snapshot-failed"]


def test_cleanup_happens_even_when_the_ledger_and_topic_are_unreachable(
    launch: Launch, taken: Taken, ec2: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a deployment whose table and topic do not exist
    monkeypatch.setenv("LEDGER_TABLE", "no-such-table")
    monkeypatch.setenv("TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:no-such-topic")
    plan, snapshot_ids = taken(launch())
    state = {"plan": plan, "created": {"snapshot_ids": snapshot_ids}, "error": lambda_error("SnapshotFailed", "x")}
    # When RecordFailure runs, then it still cleans up and returns the cause
    failure = fail(context, state)
    assert existing_snapshot_ids(ec2) == set()
    assert failure["ledger"] is None
    assert failure["notified"] is False
    assert failure["error"] == "SnapshotFailed"


def test_cleanup_happens_when_the_function_has_no_ledger_or_topic_configured(
    launch: Launch, taken: Taken, ec2: Any, context: FakeLambdaContext
) -> None:
    plan, snapshot_ids = taken(launch())
    state = {"plan": plan, "created": {"snapshot_ids": snapshot_ids}, "error": lambda_error("SnapshotFailed", "x")}
    failure = fail(context, state)
    assert existing_snapshot_ids(ec2) == set()
    assert (failure["ledger"], failure["notified"]) == (None, False)


def test_a_failed_notification_keeps_the_recorded_set_and_says_where_it_failed(
    launch: Launch, taken: Taken, ec2: Any, recording: Inbox, context: FakeLambdaContext
) -> None:
    # Given the state the state machine holds when Notify fails: the execution input, then each step's result
    instance_id = launch()
    plan, snapshot_ids = taken(instance_id)
    progress = handlers.progress({"plan": plan, "snapshot_ids": snapshot_ids}, context)
    pruned = handlers.prune({"plan": plan}, context)
    state = {
        "instance_id": instance_id,
        "reason": "before kernel upgrade",
        "plan": plan,
        "created": {"snapshot_ids": snapshot_ids},
        "progress": progress,
        "pruned": pruned,
        "result": {"status": "completed", "message": "..."},
        "error": {"Error": "SNS.SnsException", "Cause": "Topic does not exist (Service: Sns, Status Code: 404)"},
    }
    failure = fail(context, state)
    assert existing_snapshot_ids(ec2) == set(snapshot_ids)
    assert "failed while sending the notification: SNS.SnsException: Topic does not exist" in failure["cause"]
