"""Handlers of the probe app that tests/local synthesizes to exercise ec2ops.local itself."""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.exceptions import ClientError


class CapacityUnavailable(Exception):
    """Raised when EC2 answers InsufficientInstanceCapacity, so the state machine can catch it by name."""


def start_instance(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ec2 = boto3.client("ec2")
    try:
        ec2.start_instances(InstanceIds=[event["instance_id"]])
    except ClientError as error:
        if error.response["Error"]["Code"] == "InsufficientInstanceCapacity":
            raise CapacityUnavailable(error.response["Error"]["Message"]) from error
        raise
    return {"started": event["instance_id"], "marker": os.environ.get("PROBE_MARKER", "")}


def record_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A rule's Lambda target (or a task waiting for its token): returns what it was given."""
    return {"received": event}


class EventRefused(Exception):
    """Raised by a rule target that fails, so that the emulator's record of failed deliveries can be tested."""


def refuse_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise EventRefused(f"refused {event.get('detail-type', 'an event')}")
