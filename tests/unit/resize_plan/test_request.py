"""The execution input: what is accepted, and every refusal in plain words."""

from __future__ import annotations

from typing import Any

import pytest
from ec2ops_lambda.errors import InvalidInput
from ec2ops_lambda.models.resize import ResizeRequest, parse_request

BASE = {"instance_id": "i-0123456789abcdef0", "target_type": "c7i.8xlarge", "reason": "phase 2"}


def test_defaults() -> None:
    request = parse_request(BASE)
    assert request == ResizeRequest(
        instance_id="i-0123456789abcdef0",
        target_type="c7i.8xlarge",
        fallback_types=[],
        snapshot=True,
        revert_after_hours=None,
        reserve_capacity=False,
        dry_run=False,
        reason="phase 2",
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"target_type": "c7i-flex.large"},
        {"target_type": "u-6tb1.metal"},
        {"target_type": "c7i.metal-24xl"},
        {"fallback_types": ["c6i.8xlarge", "m7i.8xlarge", "c6a.8xlarge", "c5.9xlarge", "m6i.8xlarge"]},
        {"revert_after_hours": 0.5},
        {"revert_after_hours": 8760},
        {"revert_after_hours": None},
        {"instance_id": "i-01234567", "reason": "  padded  "},
    ],
)
def test_accepted(fields: dict[str, Any]) -> None:
    parse_request(BASE | fields)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"instance_id": "i-xyz"}, "instance_id: must look like i-0123456789abcdef0"),
        ({"target_type": "C7I.8XLARGE"}, "target_type: must be an instance type such as c7i.8xlarge"),
        ({"target_type": "c7i"}, "target_type: must be an instance type such as c7i.8xlarge (family.size"),
        ({"fallback_types": "c6i.8xlarge"}, "fallback_types: must be a list"),
        ({"fallback_types": ["c6i.8xlarge", 5]}, "fallback_types.1: must be text (got 5)"),
        ({"fallback_types": ["c6i.8xlarge", "big one"]}, "fallback_types: item 1 must be an instance type"),
        ({"fallback_types": ["a.large"] * 2}, "fallback_types: must not repeat a type (a.large more than once)"),
        ({"fallback_types": ["c7i.8xlarge"]}, "fallback_types: must not contain the target_type c7i.8xlarge"),
        ({"fallback_types": [f"m{i}.large" for i in range(6)]}, "fallback_types: must list at most 5 types (got 6)"),
        ({"snapshot": "yes"}, "snapshot: must be true or false (got 'yes')"),
        ({"dry_run": 1}, "dry_run: must be true or false (got 1)"),
        ({"reserve_capacity": None}, "reserve_capacity: must be true or false (got null)"),
        (
            {"revert_after_hours": 0},
            "revert_after_hours: must be a number of hours more than 0 and at most 8760 (e.g. 24), or null (got 0)",
        ),
        (
            {"revert_after_hours": -1},
            "revert_after_hours: must be a number of hours more than 0 and at most 8760 (e.g. 24), or null (got -1)",
        ),
        (
            {"revert_after_hours": 8761},
            "revert_after_hours: must be a number of hours more than 0 and at most 8760 (e.g. 24), or null (got 8761)",
        ),
        ({"revert_after_hours": "24"}, "revert_after_hours: must be a number of hours more than 0 and at most 8760"),
        ({"revert_after_hours": True}, "revert_after_hours: must be a number of hours more than 0 and at most 8760"),
        ({"revert_after_hours": float("nan")}, "revert_after_hours: must be a number of hours more than 0"),
        ({"reason": " "}, "reason: must not be empty"),
        ({"reason": "x" * 257}, "reason: must be at most 256 characters (got 257)"),
        ({"revert_after": 5}, "unknown field 'revert_after' (allowed: instance_id, target_type, fallback_types"),
    ],
)
def test_refused_in_plain_words(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidInput) as refusal:
        parse_request(BASE | fields)
    message = str(refusal.value)
    assert says in message
    assert message.startswith("the resize input is not valid: ")
    assert "Nothing was changed." in message


def test_missing_fields_are_all_listed() -> None:
    with pytest.raises(InvalidInput) as refusal:
        parse_request({})
    assert "instance_id: is required; target_type: is required; reason: is required" in str(refusal.value)


def test_not_an_object() -> None:
    with pytest.raises(InvalidInput, match="the input must be a JSON object such as"):
        parse_request(["i-0123456789abcdef0"])
