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
