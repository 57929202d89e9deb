"""moto gaps of `.waitForTaskToken` tasks and the training AMI parameter, each shown on moto directly:
`sfn_send_task_failure_drops_cause`, `sfn_heartbeat_timeout_reported_as_timeout`, `public_ami_parameters_missing`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ec2ops.local import moto_gaps
from ec2ops.local.cloud import MOTO_CONFIG

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/probe"
DLAMI = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
AL2023 = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"


@pytest.fixture
def patched() -> Iterator[None]:
    with mock_aws(config=MOTO_CONFIG), ExitStack() as stack:
        moto_gaps.sfn_send_task_failure_drops_cause(stack)
        moto_gaps.sfn_heartbeat_timeout_reported_as_timeout(stack)
        yield


def waiting_execution(heartbeat_seconds: int) -> tuple[Any, str, str]:
    """An execution waiting for its task token (delivered through SQS); returns (sfn, execution arn, token)."""
    sqs = boto3.client("sqs", region_name=REGION)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    queue = sqs.create_queue(QueueName="tokens")["QueueUrl"]
    definition = {
        "StartAt": "Wait",
        "States": {
            "Wait": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token"}},
                "HeartbeatSeconds": heartbeat_seconds,
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(name="probe", definition=json.dumps(definition), roleArn=ROLE)
    arn = sfn.start_execution(stateMachineArn=machine["stateMachineArn"])["executionArn"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue).get("Messages", [])
        if messages:
            return sfn, arn, json.loads(messages[0]["Body"])["token"]
        time.sleep(0.05)
    raise AssertionError("no task token was sent")


def final(sfn: Any, arn: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError("the execution did not end")


def test_a_task_failure_keeps_its_cause(patched: None) -> None:
    sfn, arn, token = waiting_execution(heartbeat_seconds=60)
    time.sleep(0.2)  # the task listens for its token just after sending it
    sfn.send_task_failure(taskToken=token, error="TrainingFailed", cause="training command exited with code 3")
    described = final(sfn, arn)
    assert (described["status"], described["error"]) == ("FAILED", "TrainingFailed")
    assert described["cause"] == "training command exited with code 3"


def test_a_missed_heartbeat_is_states_heartbeat_timeout(patched: None) -> None:
    sfn, arn, _token = waiting_execution(heartbeat_seconds=1)
    described = final(sfn, arn)
    assert (described["status"], described["error"]) == ("FAILED", "States.HeartbeatTimeout")


def test_the_training_ami_parameter_stands_in_for_amazon_linux() -> None:
    with mock_aws():
        ssm = boto3.client("ssm", region_name=REGION)
        assert moto_gaps.public_ami_parameters_missing("123456789012", REGION, [DLAMI], AL2023) == [DLAMI]
        assert (
            ssm.get_parameter(Name=DLAMI)["Parameter"]["Value"] == ssm.get_parameter(Name=AL2023)["Parameter"]["Value"]
        )
        assert moto_gaps.public_ami_parameters_missing("123456789012", REGION, [DLAMI], AL2023) == []
