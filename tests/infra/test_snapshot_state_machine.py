"""The synthesized ec2ops-snapshot state machine and its Lambdas, as docs/snapshot.md describes them."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from stacks import constants as c
from stacks.workflows.common import LAMBDA_TRANSIENT_ERRORS
from tests.infra import iam_helpers as iam
from tests.infra.synth import Synthesized

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]

CAUGHT_TASKS = ("CreateSnapshots", "CheckSnapshots", "Prune", "Record", "Notify")
LAMBDA_TASKS = {
    "Plan": "plan",
    "CheckSnapshots": "progress",
    "Prune": "prune",
    "Record": "record",
    "RecordFailure": "record-failure",
}


@pytest.fixture(scope="module")
def machine(default_app: Synthesized) -> dict[str, Any]:
    (resource,) = [
        r
        for r in iam.state_machines(default_app.template).values()
        if r["Properties"]["StateMachineName"] == c.SNAPSHOT_STATE_MACHINE
    ]
    return resource


@pytest.fixture(scope="module")
def states(machine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(iam.iter_states(iam.definition(machine)))


def test_it_is_a_standard_state_machine_named_ec2ops_snapshot_with_logs_and_tracing(default_app: Synthesized) -> None:
    default_app.assertions.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineName": "ec2ops-snapshot",
            "StateMachineType": "STANDARD",
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": Match.object_like({"Level": "ALL", "IncludeExecutionData": True}),
        },
    )


def test_the_definition_runs_plan_create_poll_prune_record_notify(machine: dict[str, Any]) -> None:
    definition = iam.definition(machine)
    states = definition["States"]
    assert definition["StartAt"] == "Plan"
    assert [states[s]["Next"] for s in ("Plan", "CreateSnapshots", "WaitForSnapshots", "CheckSnapshots")] == [
        "CreateSnapshots",
        "WaitForSnapshots",
        "CheckSnapshots",
        "SnapshotsCompleted?",
    ]
    choice = states["SnapshotsCompleted?"]
    assert choice["Choices"] == [{"Variable": "$.progress.state", "StringEquals": "completed", "Next": "Prune"}]
    assert choice["Default"] == "WaitForSnapshots"
    assert [states[s]["Next"] for s in ("Prune", "Record", "Notify")] == ["Record", "Notify", "Done"]
    assert states["Done"] == {"Type": "Succeed", "OutputPath": "$.result"}
    # JSONPath only: the emulator cannot run JSONata or variables
    text = str(definition)
    assert "JSONata" not in text and "'Assign'" not in text


def test_plan_keeps_the_input_and_adds_the_plan(states: dict[str, dict[str, Any]]) -> None:
    plan = states["Plan"]
    assert plan["Parameters"] == {"request.$": "$", "change_id.$": "$$.Execution.Name"}
    assert plan["ResultPath"] == "$.plan"
    assert "ResultSelector" not in plan and "OutputPath" not in plan
    # a refusal is neither caught nor retried: the execution fails with the Lambda's error name
    assert "Catch" not in plan


def test_create_snapshots_is_one_tagged_multi_volume_sdk_call(
    states: dict[str, dict[str, Any]], default_app: Synthesized
) -> None:
    create = states["CreateSnapshots"]
    assert create["Resource"].endswith(":states:::aws-sdk:ec2:createSnapshots")
    assert create["Parameters"] == {
        "InstanceSpecification": {"InstanceId.$": "$.plan.instance_id", "ExcludeBootVolume.$": "$.plan.exclude_boot"},
        "Description.$": "$.plan.description",
        "TagSpecifications": [{"ResourceType": "snapshot", "Tags.$": "$.plan.tags"}],
    }
    assert create["ResultSelector"] == {"snapshot_ids.$": "$.Snapshots[*].SnapshotId"}
    assert create["ResultPath"] == "$.created"
    assert states["WaitForSnapshots"]["Seconds"] == default_app.config.snapshot_poll_seconds


def test_lambda_tasks_pass_the_documented_payloads(states: dict[str, dict[str, Any]]) -> None:
    assert states["CheckSnapshots"]["Parameters"] == {"plan.$": "$.plan", "snapshot_ids.$": "$.created.snapshot_ids"}
    assert states["CheckSnapshots"]["ResultPath"] == "$.progress"
    assert states["Prune"]["Parameters"] == {"plan.$": "$.plan"}
    assert states["Prune"]["ResultPath"] == "$.pruned"
    assert states["Record"]["Parameters"] == {
        "plan.$": "$.plan",
        "snapshot_ids.$": "$.created.snapshot_ids",
        "progress.$": "$.progress",
        "pruned.$": "$.pruned",
        "execution_id.$": "$$.Execution.Id",
    }
    assert states["Record"]["ResultPath"] == "$.result"
    assert states["RecordFailure"]["Parameters"] == {"state.$": "$", "execution_id.$": "$$.Execution.Id"}
    assert states["RecordFailure"]["ResultPath"] == "$.failure"


def test_lambda_tasks_retry_only_transient_lambda_service_errors(
    states: dict[str, dict[str, Any]], default_app: Synthesized
) -> None:
    functions = set(default_app.resources("AWS::Lambda::Function"))
    for state in LAMBDA_TASKS:
        # payload_response_only: the task's result is the function's return value itself
        assert iam.lambda_target(states[state]["Resource"], functions), state
        retried = [error for retry in states[state].get("Retry", []) for error in retry["ErrorEquals"]]
        assert sorted(retried) == sorted(LAMBDA_TRANSIENT_ERRORS), state


def test_every_failure_after_plan_records_it_and_fails_with_its_name(states: dict[str, dict[str, Any]]) -> None:
    for state in CAUGHT_TASKS:
        assert states[state]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}
        ], state
    assert states["RecordFailure"]["Next"] == "SnapshotFailedState"
    assert "Catch" not in states["RecordFailure"]
    assert states["SnapshotFailedState"] == {
        "Type": "Fail",
        "ErrorPath": "$.failure.error",
        "CausePath": "$.failure.cause",
    }


def test_notify_publishes_the_record_message_to_the_topic(states: dict[str, dict[str, Any]]) -> None:
    notify = states["Notify"]
    assert notify["Resource"].endswith(":states:::sns:publish")
    assert notify["Parameters"]["Message.$"] == "$.result.message"
    assert notify["Parameters"]["Subject"] == "ec2ops snapshot completed"
    assert notify["ResultPath"] is None


@pytest.mark.parametrize(("short", "handler"), list(c.SNAPSHOT_FUNCTIONS.items()))
def test_each_lambda_has_its_handler_settings_and_environment(
    default_app: Synthesized, short: str, handler: str
) -> None:
    config = default_app.config
    default_app.assertions.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": f"ec2ops-snapshot-{short}",
            "Handler": handler,
            "Runtime": "python3.13",
            "Architectures": ["x86_64"],
            "MemorySize": 256,
            "Timeout": 60,
            "Layers": [config.powertools_layer_arn],
            "Environment": {
                "Variables": {
                    "EC2OPS_ENV": config.environment,
                    "LEDGER_TABLE": {"Ref": Match.string_like_regexp("StorageLedger")},
                    "TOPIC_ARN": {"Ref": Match.string_like_regexp("OrchestrationTopic")},
                    "POWERTOOLS_SERVICE_NAME": "ec2ops",
                    "POWERTOOLS_LOG_LEVEL": "INFO",
                    "SNAPSHOT_RETAIN_COUNT": str(config.snapshot_retain_count),
                    "SNAPSHOT_RETAIN_DAYS": str(config.snapshot_retain_days),
                    "SNAPSHOT_TIMEOUT_MINUTES": str(config.snapshot_timeout_minutes),
                }
            },
        },
    )


def test_all_functions_share_one_code_asset(default_app: Synthesized) -> None:
    keys = {json_key(r["Properties"]["Code"]) for r in default_app.resources("AWS::Lambda::Function").values()}
    assert len(keys) == 1


def test_each_function_logs_to_its_own_group_with_the_configured_retention(default_app: Synthesized) -> None:
    groups = default_app.resources("AWS::Logs::LogGroup")
    for resource in default_app.resources("AWS::Lambda::Function").values():
        group = groups[resource["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]]["Properties"]
        assert group["LogGroupName"] == f"/aws/lambda/{resource['Properties']['FunctionName']}"
        assert group["RetentionInDays"] == default_app.config.log_retention_days


def json_key(code: dict[str, Any]) -> str:
    return str(code.get("S3Key"))
