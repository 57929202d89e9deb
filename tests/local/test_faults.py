"""An injected fault reaches whoever makes the call: a test, a state machine's SDK task, a Lambda."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from ec2ops.local import LocalCloud


def test_injected_fault_reaches_a_state_machine_sdk_task_with_the_aws_error_name(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large")
    cloud.inject_fault("ec2", "StopInstances", "IncorrectInstanceState")
    result = cloud.run("probe-stop", {"instance_id": iid})
    assert result.status == "SUCCEEDED"
    assert result.output["caught"] == "Ec2.Ec2Exception"
    assert "IncorrectInstanceState" in result.output["cause"]
    assert cloud.instance(iid)["State"]["Name"] == "running"


def test_injected_fault_reaches_a_lambda_which_raises_a_named_error_the_machine_catches(
    cloud: LocalCloud,
) -> None:
    iid = cloud.launch_instance("t3.large")
    cloud.ec2.stop_instances(InstanceIds=[iid])
    cloud.clock.advance(minutes=2)
    cloud.inject_fault("ec2", "StartInstances", "InsufficientInstanceCapacity")
    refused = cloud.run("probe-start", {"instance_id": iid})
    started = cloud.run("probe-start", {"instance_id": iid})
    assert refused.output == {"caught": "CapacityUnavailable"}
    assert refused.counts.lambda_invocations == {"probe-start": 1}
    assert started.output["started"] == iid
    assert started.output["marker"] == "from-template"  # the function's environment from the template


def test_a_fault_fires_exactly_the_number_of_times_asked(cloud: LocalCloud) -> None:
    cloud.inject_fault("ec2", "DescribeVpcs", "UnauthorizedOperation", times=2)
    for _ in range(2):
        with pytest.raises(ClientError) as error:
            cloud.client("ec2").describe_vpcs()
        assert error.value.response["Error"]["Code"] == "UnauthorizedOperation"
    cloud.ec2.describe_vpcs()
    assert cloud.faults.pending() == 0


def test_throttling_is_retried_by_the_sdk_as_on_aws(cloud: LocalCloud) -> None:
    cloud.inject_fault("ec2", "DescribeVpcs", "RequestLimitExceeded", times=2)
    cloud.ec2.describe_vpcs()  # botocore retries throttling errors by itself
    assert cloud.faults.fired == [("ec2", "DescribeVpcs", "RequestLimitExceeded")] * 2
    assert cloud.counter.total["ec2:DescribeVpcs"] == 3


def test_faults_speak_each_service_protocol(cloud: LocalCloud) -> None:
    cloud.inject_fault("dynamodb", "ListTables", "ValidationException")
    cloud.inject_fault("s3", "ListBuckets", "AccessDenied")
    cloud.inject_fault("sns", "ListTopics", "AuthorizationError")
    for call, code in (
        (cloud.ddb.list_tables, "ValidationException"),
        (cloud.s3.list_buckets, "AccessDenied"),
        (cloud.sns.list_topics, "AuthorizationError"),
    ):
        with pytest.raises(ClientError) as error:
            call()
        assert error.value.response["Error"]["Code"] == code


def test_a_fault_for_an_operation_that_does_not_exist_is_refused_at_once(cloud: LocalCloud) -> None:
    with pytest.raises(ValueError, match="has no operation 'StartInstance'"):
        cloud.inject_fault("ec2", "StartInstance", "InsufficientInstanceCapacity")


def test_a_fault_can_let_some_calls_through_first(cloud: LocalCloud) -> None:
    cloud.inject_fault("ec2", "DescribeVpcs", "UnauthorizedOperation", after=2)
    cloud.ec2.describe_vpcs()
    cloud.ec2.describe_vpcs()
    with pytest.raises(ClientError):
        cloud.ec2.describe_vpcs()
    cloud.ec2.describe_vpcs()
