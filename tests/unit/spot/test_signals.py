"""The spot failover's signals: the published event samples, the manual input, the incident and dedup keys."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ec2ops_lambda.errors import InvalidInput
from ec2ops_lambda.spot.signals import (
    ManualRequest,
    RebalanceRecommendation,
    Signal,
    SpotInterruptionWarning,
    dedup_key,
    incident_key,
    parse_signal,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "aws-events"
SAMPLE_ID = "i-1234567890abcdef0"
NTH_ID = "i-0b662ef9931388ba0"


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def warning(action: str = "terminate", **top: Any) -> dict[str, Any]:
    event = sample("spot-interruption-warning.json")
    event["detail"]["instance-action"] = action
    event.update(top)
    return event


def rejected(raw: Any) -> str:
    with pytest.raises(InvalidInput) as caught:
        parse_signal(raw)
    return str(caught.value)


# --- the published samples (the nth-* ones are plain EventBridge events too, not SQS-wrapped messages) ---------


@pytest.mark.parametrize(
    ("name", "kind", "instance_id", "action", "notice_time"),
    [
        ("spot-interruption-warning.json", "interruption-warning", SAMPLE_ID, "unknown", None),
        ("rebalance-recommendation.json", "rebalance-recommendation", SAMPLE_ID, "prepare", None),
        (
            "nth-spot-interruption-warning.json",
            "interruption-warning",
            NTH_ID,
            "terminate",
            datetime(1970, 1, 1, tzinfo=UTC),
        ),
        (
            "nth-rebalance-recommendation.json",
            "rebalance-recommendation",
            NTH_ID,
            "prepare",
            datetime(2020, 10, 26, 14, 14, 14, tzinfo=UTC),
        ),
    ],
)
def test_published_samples_parse(
    name: str, kind: str, instance_id: str, action: str, notice_time: datetime | None
) -> None:
    raw = sample(name)
    signal = parse_signal(raw)
    assert signal.kind == kind
    assert signal.instance_id == instance_id
    assert signal.action == action
    assert signal.notice_time == notice_time
    assert signal.event_id == raw["id"]
    assert signal.detail_type == raw["detail-type"]


def test_every_spot_sample_in_the_fixtures_is_covered() -> None:
    spot_types = {"EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation"}
    for path in sorted(FIXTURES.glob("*.json")):
        raw = json.loads(path.read_text())
        if isinstance(raw, dict) and raw.get("detail-type") in spot_types:
            assert parse_signal(raw).instance_id.startswith("i-"), path.name


def test_models_keep_fields_aws_adds() -> None:
    event = warning("stop", **{"new-field": 1})
    event["detail"]["extra"] = "x"
    model = SpotInterruptionWarning.model_validate(event)
    assert model.detail.instance_action == "stop"
    assert RebalanceRecommendation.model_validate(sample("rebalance-recommendation.json")).time is None


@pytest.mark.parametrize("action", ["terminate", "stop", "hibernate"])
def test_warning_actions(action: str) -> None:
    assert parse_signal(warning(action)).action == action


def test_placeholder_action_is_unknown_and_placeholder_time_is_none() -> None:
    signal = parse_signal(sample("spot-interruption-warning.json"))
    assert signal.action == "unknown"
    assert signal.notice_time is None


def test_real_iso_time() -> None:
    signal = parse_signal(warning(time="2025-06-30T12:00:00Z"))
    assert signal.notice_time == datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
    assert signal.notice_time.tzinfo is not None


# --- manual input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["prepare", "promote", "failover"])
def test_manual_input(action: str) -> None:
    signal = parse_signal({"instance_id": SAMPLE_ID, "action": action})
    assert signal == Signal("manual", SAMPLE_ID, action, None, None, None)  # type: ignore[arg-type]
    assert ManualRequest(instance_id=SAMPLE_ID, action="failover").action == "failover"


# --- keys ---------------------------------------------------------------------------------------------------


def test_duplicate_delivery_shares_dedup_key() -> None:
    first = parse_signal(warning("terminate"))
    again = parse_signal(copy.deepcopy(warning("terminate")))
    assert dedup_key(first) == dedup_key(again)
    other = parse_signal(warning("terminate", id="87654321-4321-4321-4321-210987654321"))
    assert dedup_key(other) != dedup_key(first)


def test_manual_duplicates_share_dedup_key() -> None:
    one = parse_signal({"instance_id": SAMPLE_ID, "action": "failover"})
    two = parse_signal({"instance_id": SAMPLE_ID, "action": "failover"})
    assert dedup_key(one) == dedup_key(two)
    assert dedup_key(one) != dedup_key(parse_signal({"instance_id": SAMPLE_ID, "action": "prepare"}))


def test_rebalance_warning_and_manual_share_incident_key() -> None:
    rebalance = parse_signal(sample("rebalance-recommendation.json"))
    warn = parse_signal(sample("spot-interruption-warning.json"))
    manual = parse_signal({"instance_id": SAMPLE_ID, "action": "failover"})
    assert incident_key(rebalance) == incident_key(warn) == incident_key(manual) == f"spot-incident#{SAMPLE_ID}"
    # the samples share one event id: they are still not duplicates of each other
    assert dedup_key(rebalance) != dedup_key(warn)
    assert incident_key(parse_signal(sample("nth-spot-interruption-warning.json"))) != incident_key(warn)


# --- malformed input ----------------------------------------------------------------------------------------


def test_missing_detail() -> None:
    event = warning()
    del event["detail"]
    assert "detail: is required" in rejected(event)


def test_missing_instance_id() -> None:
    event = sample("rebalance-recommendation.json")
    del event["detail"]["instance-id"]
    assert "detail.instance-id: is required" in rejected(event)


def test_malformed_instance_id() -> None:
    event = warning()
    event["detail"]["instance-id"] = "abc"
    message = rejected(event)
    assert "detail.instance-id" in message
    assert "'abc'" in message


def test_unknown_detail_type() -> None:
    message = rejected(sample("instance-state-change.json"))
    assert "unknown detail-type 'EC2 Instance State-change Notification'" in message


def test_missing_detail_type() -> None:
    event = warning()
    del event["detail-type"]
    assert "detail-type: is required" in rejected(event)


def test_unknown_warning_action() -> None:
    message = rejected(warning("explode"))
    assert "detail.instance-action: must be one of terminate, stop, hibernate" in message
    assert "'explode'" in message


def test_wrong_source() -> None:
    assert "source: must be one of aws.ec2" in rejected(warning(source="aws.custom"))


def test_manual_extra_field() -> None:
    message = rejected({"instance_id": SAMPLE_ID, "action": "failover", "force": True})
    assert "unknown field 'force'" in message


def test_manual_unknown_action_and_bad_id() -> None:
    message = rejected({"instance_id": "abc", "action": "explode"})
    assert "instance_id: must look like i-0123456789abcdef0" in message
    assert "action: must be one of prepare, promote, failover" in message


def test_not_an_object() -> None:
    assert "must be a JSON object" in rejected(["not", "an", "event"])
