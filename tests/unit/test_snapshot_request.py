"""The execution input: what is accepted, and how each mistake is explained to the person who typed it."""

from __future__ import annotations

from typing import Any

import pytest
from ec2ops_lambda.errors import InvalidInput
from ec2ops_lambda.models.snapshot import parse_request

VALID = {"instance_id": "i-0123456789abcdef0", "reason": "before kernel upgrade"}


def test_the_documented_example_is_accepted() -> None:
    request = parse_request({**VALID, "retain": {"count": 7, "days": 30}, "exclude_boot": False})
    assert request.instance_id == "i-0123456789abcdef0"
    assert request.retain is not None and (request.retain.count, request.retain.days) == (7, 30)


def test_a_short_instance_id_and_a_padded_reason_are_accepted() -> None:
    request = parse_request({"instance_id": "i-0123abcd", "reason": "  nightly  "})
    assert request.reason == "nightly"
    assert request.exclude_boot is False
    assert request.retain is None


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        (
            {"instance_id": "abc"},
            "instance_id: must look like i-0123456789abcdef0 ('i-' and 8 or 17 hex digits) (got 'abc')",
        ),
        ({"instance_id": "i-0123456789ABCDEF0"}, "instance_id: must look like i-0123456789abcdef0"),
        (
            {"instance_id": 12345},
            "instance_id: must look like i-0123456789abcdef0 ('i-' and 8 or 17 hex digits) (got 12345)",
        ),
        ({"foo": 1}, "unknown field 'foo' (allowed: instance_id, reason, retain, exclude_boot)"),
        ({"retain": {"cnt": 3}}, "unknown field 'retain.cnt' (allowed: count, days)"),
        ({"reason": ""}, "reason: must not be empty"),
        ({"reason": "   "}, "reason: must not be empty"),
        ({"reason": "x" * 257}, "reason: must be at most 256 characters (got 257)"),
        ({"retain": {"count": 0}}, "retain.count: must be at least 1 (got 0)"),
        ({"retain": {"count": 1001}}, "retain.count: must be at most 1000 (got 1001)"),
        ({"retain": {"count": "7"}}, "retain.count: must be a whole number (got '7')"),
        ({"retain": {"count": 2.5}}, "retain.count: must be a whole number (got 2.5)"),
        ({"retain": {"days": 0}}, "retain.days: must be at least 1 (got 0)"),
        ({"retain": {"days": -3}}, "retain.days: must be at least 1 (got -3)"),
        ({"retain": {"days": 3651}}, "retain.days: must be at most 3650 (got 3651)"),
        ({"retain": 7}, 'retain: must be an object such as {"count": 7, "days": 30}, or null (got 7)'),
        ({"exclude_boot": "yes"}, "exclude_boot: must be true or false (got 'yes')"),
    ],
)
def test_a_bad_field_is_refused_with_its_name_and_what_is_wrong(changes: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_request({**VALID, **changes})
    assert says in str(refused.value)
    assert "Nothing was changed" in str(refused.value)


def test_a_missing_field_is_named() -> None:
    with pytest.raises(InvalidInput, match="instance_id: is required"):
        parse_request({"reason": "x"})


@pytest.mark.parametrize("raw", [None, [], "i-0123456789abcdef0"])
def test_an_input_that_is_not_an_object_shows_an_example(raw: Any) -> None:
    with pytest.raises(InvalidInput, match=r"the input must be a JSON object such as \{\"instance_id\""):
        parse_request(raw)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_request({"instance_id": "abc", "reason": "", "retain": {"count": 0, "days": 0}, "foo": True})
    message = str(refused.value)
    for field in ("instance_id:", "reason:", "retain.count:", "retain.days:", "unknown field 'foo'"):
        assert field in message
