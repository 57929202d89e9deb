"""The synthesized ec2ops-resize state machine, its Lambdas and the revert schedule's role, as
docs/design/resize-workflow.md describes them."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from stacks import constants as c
from stacks.config import Ec2OpsConfig
from stacks.workflows.common import LAMBDA_TRANSIENT_ERRORS
from stacks.workflows.resize import JSON_NULL, state_machine_timeout
from tests.infra import iam_helpers as iam
from tests.infra.synth import Synthesized

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]

LAMBDA_TASKS = {
    "Plan": "plan",
    "Lock": "lock",
    "Drive": "drive",
    "Recover": "drive",
    "Finish": "finish",
    "ReleaseLockAfterSnapshot": "lock",
    "ReleaseLockAfterFault": "lock",
    "ReleaseLockAfterFinish": "lock",
}
# Release the lock, then fail with this error and the cause found at this path.
RELEASES = {
    "ReleaseLockAfterSnapshot": ("SnapshotFailed", "$.error.Cause"),
    "ReleaseLockAfterFault": ("RollbackFailed", "$.fault.Cause"),
    "ReleaseLockAfterFinish": ("ResizeFailed", "$.error.Cause"),
}
DRIVE_PAYLOAD = {"plan.$": "$.plan", "progress.$": "$.progress", "fault.$": "$.fault"}
RESIZE_ARN = f"arn:aws:states:us-east-1:<AWS::AccountId>:stateMachine:{c.RESIZE_STATE_MACHINE}"


@pytest.fixture(scope="module")
def machine(default_app: Synthesized) -> dict[str, Any]:
    (resource,) = [
        r
        for r in iam.state_machines(default_app.template).values()
        if r["Properties"]["StateMachineName"] == c.RESIZE_STATE_MACHINE
    ]
    return resource


@pytest.fixture(scope="module")
def states(machine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(iam.iter_states(iam.definition(machine)))


@pytest.fixture(scope="module")
def functions(default_app: Synthesized) -> dict[str, str]:
    """Short name -> logical id of the resize Lambdas."""
    return {
        resource["Properties"]["FunctionName"].removeprefix(f"{c.RESIZE_STATE_MACHINE}-"): logical
        for logical, resource in default_app.resources("AWS::Lambda::Function").items()
        if resource["Properties"]["FunctionName"].startswith(f"{c.RESIZE_STATE_MACHINE}-")
    }


@pytest.fixture(scope="module")
def scheduler_role(default_app: Synthesized) -> str:
    (logical,) = [
        logical
        for logical, role in default_app.resources("AWS::IAM::Role").items()
        if "scheduler.amazonaws.com" in str(role["Properties"]["AssumeRolePolicyDocument"])
    ]
    return logical


def test_it_is_a_standard_state_machine_named_ec2ops_resize_with_logs_tracing_and_a_backstop(
    default_app: Synthesized, machine: dict[str, Any]
) -> None:
    default_app.assertions.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineName": "ec2ops-resize",
            "StateMachineType": "STANDARD",
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": Match.object_like({"Level": "ALL", "IncludeExecutionData": True}),
        },
    )
    config = default_app.config
    phases_minutes = (
        config.resize_stop_timeout_minutes
        + config.resize_start_timeout_minutes
        + config.resize_status_check_timeout_minutes
    )
    timeout = iam.definition(machine)["TimeoutSeconds"]
    assert timeout == state_machine_timeout(config).to_seconds()
    # well above one pass through every phase plus the nested snapshot's own backstop
    assert timeout > (phases_minutes + config.snapshot_timeout_minutes + c.STATE_MACHINE_TIMEOUT_MARGIN_MINUTES) * 60


def test_the_backstop_grows_with_every_phase_timeout() -> None:
    base = state_machine_timeout(Ec2OpsConfig.parse({})).to_seconds()
    for key in (
        "resize_stop_timeout_minutes",
        "resize_start_timeout_minutes",
        "resize_status_check_timeout_minutes",
        "resize_rollback_attempts",
        "snapshot_timeout_minutes",
    ):
        assert state_machine_timeout(Ec2OpsConfig.parse({key: 20})).to_seconds() != base, key
    longest = {
        "resize_stop_timeout_minutes": 60,
        "resize_start_timeout_minutes": 60,
        "resize_status_check_timeout_minutes": 60,
        "resize_rollback_attempts": 20,
        "snapshot_timeout_minutes": 1440,
    }
    # Standard workflows run up to a year: even the largest config stays far below it
    assert state_machine_timeout(Ec2OpsConfig.parse(longest)).to_minutes() < 30 * 24 * 60


def test_the_definition_is_the_documented_diagram(machine: dict[str, Any]) -> None:
    definition = iam.definition(machine)
    states = definition["States"]
    assert definition["StartAt"] == "Plan"
    following = {name: state.get("Next") for name, state in states.items()}
    assert following == {
        "Plan": "Go?",
        "Go?": None,
        "ShapeOutput": "Done",
        "Done": None,
        "Lock": "Snapshot?",
        "Snapshot?": None,
        "Snapshot": "InitProgress",
        "NoSnapshot": "InitProgress",
        "ReleaseLockAfterSnapshot": "SnapshotFailed",
        "SnapshotFailed": None,
        "InitProgress": "Drive",
        "Drive": "Done?",
        "Recover": "ClearFault",
        "ClearFault": "Done?",
        "ReleaseLockAfterFault": "RollbackFailed",
        "RollbackFailed": None,
        "Done?": None,
        "WaitPoll": "Drive",
        "Finish": "Notify",
        "ReleaseLockAfterFinish": "ResizeFailed",
        "ResizeFailed": None,
        "Notify": "Outcome?",
        "Outcome?": None,
        "Resized": None,
        "NotResized": None,
    }
    # JSONPath only: the emulator cannot run JSONata or variables
    text = str(definition)
    assert "JSONata" not in text and "'Assign'" not in text and "QueryLanguage" not in text


def test_plan_gets_the_input_and_the_execution_and_is_never_caught(states: dict[str, dict[str, Any]]) -> None:
    plan = states["Plan"]
    assert plan["Parameters"] == {
        "request.$": "$",
        "change_id.$": "$$.Execution.Name",
        "execution_id.$": "$$.Execution.Id",
    }
    assert plan["ResultPath"] == "$.plan"
    # a refusal fails the execution at once with its own name, before anything is touched
    assert "Catch" not in plan


def test_nothing_to_do_succeeds_with_the_plan_and_only_go_takes_the_lock(states: dict[str, dict[str, Any]]) -> None:
    go = states["Go?"]
    assert go["Choices"] == [
        {
            "Or": [
                {"Variable": "$.plan.status", "StringEquals": "unchanged"},
                {"Variable": "$.plan.status", "StringEquals": "planned"},
            ],
            "Next": "ShapeOutput",
        },
        {"Variable": "$.plan.status", "StringEquals": "go", "Next": "Lock"},
    ]
    # no default: a status outside the contract fails (States.NoChoiceMatched) instead of touching the instance
    assert "Default" not in go
    assert states["ShapeOutput"]["Parameters"] == {"status.$": "$.plan.status", "plan.$": "$.plan"}
    assert states["Done"] == {"Type": "Succeed"}


def test_lock_acquires_for_this_execution_and_an_instance_locked_error_is_not_caught(
    states: dict[str, dict[str, Any]],
) -> None:
    lock = states["Lock"]
    assert lock["Parameters"] == {
        "action": "acquire",
        "instance_id.$": "$.plan.instance_id",
        "execution_id.$": "$$.Execution.Id",
        "workflow": "resize",
    }
    assert lock["ResultPath"] is None
    assert "Catch" not in lock


def test_the_snapshot_is_a_nested_ec2ops_snapshot_execution_waited_for(
    states: dict[str, dict[str, Any]], default_app: Synthesized
) -> None:
    assert states["Snapshot?"]["Choices"] == [
        {"Variable": "$.plan.snapshot", "BooleanEquals": True, "Next": "Snapshot"}
    ]
    assert states["Snapshot?"]["Default"] == "NoSnapshot"
    snapshot = states["Snapshot"]
    assert snapshot["Resource"].endswith(":states:::states:startExecution.sync:2")
    (snapshot_machine,) = [
        logical
        for logical, r in iam.state_machines(default_app.template).items()
        if r["Properties"]["StateMachineName"] == c.SNAPSHOT_STATE_MACHINE
    ]
    assert snapshot["Parameters"] == {
        "StateMachineArn": f"<{snapshot_machine}>",
        "Input": {
            "instance_id.$": "$.plan.instance_id",
            "reason.$": "$.plan.snapshot_reason",
        },
        # at most 43 characters whatever this execution's name (up to 80, the limit for the child's too)
        "Name.$": "States.Format('resize-{}', States.UUID())",
    }
    assert snapshot["ResultSelector"] == {"output.$": "$.Output"}
    assert snapshot["ResultPath"] == "$.snapshot"
    assert snapshot["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ReleaseLockAfterSnapshot"}
    ]
    assert states["NoSnapshot"]["Parameters"] == {"output.$": JSON_NULL}
    assert states["NoSnapshot"]["ResultPath"] == "$.snapshot"


def test_the_drive_loop_starts_without_progress_or_fault(states: dict[str, dict[str, Any]]) -> None:
    assert JSON_NULL == "States.StringToJson('null')"
    assert states["InitProgress"]["Parameters"] == {
        "plan.$": "$.plan",
        "snapshot.$": "$.snapshot",
        "progress.$": JSON_NULL,
        "fault.$": JSON_NULL,
    }
    assert "ResultPath" not in states["InitProgress"]


def test_drive_polls_until_done_waiting_the_configured_seconds(
    states: dict[str, dict[str, Any]], default_app: Synthesized
) -> None:
    drive = states["Drive"]
    assert drive["Parameters"] == DRIVE_PAYLOAD
    assert drive["ResultPath"] == "$.progress"
    assert states["Done?"]["Choices"] == [{"Variable": "$.progress.done", "BooleanEquals": True, "Next": "Finish"}]
    assert states["Done?"]["Default"] == "WaitPoll"
    assert states["WaitPoll"] == {"Type": "Wait", "Seconds": default_app.config.resize_poll_seconds, "Next": "Drive"}


def test_a_failed_drive_runs_recover_once_then_the_loop_goes_on(states: dict[str, dict[str, Any]]) -> None:
    assert states["Drive"]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.fault", "Next": "Recover"}]
    recover = states["Recover"]
    # the same function with the same payload, now with $.fault = {"Error", "Cause"}
    assert recover["Resource"] == states["Drive"]["Resource"]
    assert recover["Parameters"] == DRIVE_PAYLOAD
    assert recover["ResultPath"] == "$.progress"
    assert recover["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.fault", "Next": "ReleaseLockAfterFault"}
    ]
    assert states["ClearFault"]["Parameters"] == {
        "plan.$": "$.plan",
        "snapshot.$": "$.snapshot",
        "progress.$": "$.progress",
        "fault.$": JSON_NULL,
    }
    assert states["ClearFault"]["Next"] == "Done?"


def test_finish_gets_plan_progress_snapshot_output_and_execution(states: dict[str, dict[str, Any]]) -> None:
    finish = states["Finish"]
    assert finish["Parameters"] == {
        "plan.$": "$.plan",
        "progress.$": "$.progress",
        "snapshot.$": "$.snapshot.output",
        "execution_id.$": "$$.Execution.Id",
    }
    assert finish["ResultPath"] == "$.result"
    assert finish["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ReleaseLockAfterFinish"}
    ]


@pytest.mark.parametrize(("state", "failure"), list(RELEASES.items()))
def test_every_failure_after_lock_releases_it_and_fails_with_its_name(
    states: dict[str, dict[str, Any]], state: str, failure: tuple[str, str]
) -> None:
    error, cause_path = failure
    release = states[state]
    assert release["Parameters"] == {
        "action": "release",
        "instance_id.$": "$.plan.instance_id",
        "execution_id.$": "$$.Execution.Id",
        "workflow": "resize",
    }
    assert release["ResultPath"] is None
    assert release["Next"] == error
    # a failed release still ends with the original error (the lock's TTL ends it)
    assert release["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.release_error", "Next": error}]
    assert states[error] == {"Type": "Fail", "Error": error, "CausePath": cause_path}


def test_notify_publishes_the_result_message_and_a_failed_notification_keeps_the_outcome(
    states: dict[str, dict[str, Any]],
) -> None:
    notify = states["Notify"]
    assert notify["Resource"].endswith(":states:::sns:publish")
    assert notify["Parameters"]["Message.$"] == "$.result.message"
    assert notify["Parameters"]["Subject"] == "ec2ops resize"
    assert notify["ResultPath"] is None
    assert notify["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.notify_error", "Next": "Outcome?"}]


def test_the_outcome_is_the_result_status(states: dict[str, dict[str, Any]]) -> None:
    outcome = states["Outcome?"]
    assert outcome["Choices"] == [{"Variable": "$.result.status", "StringEquals": "resized", "Next": "Resized"}]
    assert outcome["Default"] == "NotResized"
    assert states["Resized"] == {"Type": "Succeed", "OutputPath": "$.result"}
    assert states["NotResized"] == {"Type": "Fail", "ErrorPath": "$.result.error", "CausePath": "$.result.cause"}


def test_lambda_tasks_call_their_function_and_retry_only_transient_lambda_service_errors(
    states: dict[str, dict[str, Any]], functions: dict[str, str]
) -> None:
    for state, short in LAMBDA_TASKS.items():
        # payload_response_only: the task's result is the function's return value itself
        assert states[state]["Resource"] == f"<{functions[short]}.Arn>", state
        retried = [error for retry in states[state].get("Retry", []) for error in retry["ErrorEquals"]]
        assert sorted(retried) == sorted(LAMBDA_TRANSIENT_ERRORS), state
    # and those are all its Lambda tasks
    lambda_states = {
        name
        for name, state in states.items()
        if state.get("Type") == "Task" and iam.lambda_target(state["Resource"], set(functions.values()))
    }
    assert lambda_states == set(LAMBDA_TASKS)


@pytest.mark.parametrize(("short", "handler"), list(c.RESIZE_FUNCTIONS.items()))
def test_each_lambda_has_its_handler_settings_and_environment(
    default_app: Synthesized, scheduler_role: str, short: str, handler: str
) -> None:
    config = default_app.config
    own = {
        "drive": {
            "RESIZE_STOP_TIMEOUT_SECONDS": str(config.resize_stop_timeout_minutes * 60),
            "RESIZE_START_TIMEOUT_SECONDS": str(config.resize_start_timeout_minutes * 60),
            "RESIZE_STATUS_CHECK_TIMEOUT_SECONDS": str(config.resize_status_check_timeout_minutes * 60),
            "RESIZE_ROLLBACK_ATTEMPTS": str(config.resize_rollback_attempts),
        },
        "finish": {
            "RESIZE_STATE_MACHINE_ARN": Match.any_value(),
            "SCHEDULER_ROLE_ARN": {"Fn::GetAtt": [scheduler_role, "Arn"]},
            "SCHEDULE_GROUP": "default",
        },
    }
    default_app.assertions.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": f"ec2ops-resize-{short}",
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
                    **own.get(short, {}),
                }
            },
        },
    )


def test_finish_knows_the_state_machine_arn_without_referencing_it(
    default_app: Synthesized, functions: dict[str, str], machine: dict[str, Any]
) -> None:
    finish = default_app.template["Resources"][functions["finish"]]
    arn = finish["Properties"]["Environment"]["Variables"]["RESIZE_STATE_MACHINE_ARN"]
    # built from the known name (a Ref to the state machine would be a cycle: it references the function)
    assert iam.placeholder(arn) == RESIZE_ARN
    assert machine["Properties"]["StateMachineName"] == RESIZE_ARN.rsplit(":", 1)[1]


def test_the_scheduler_role_trusts_only_scheduler_and_may_only_start_ec2ops_resize(
    default_app: Synthesized, scheduler_role: str
) -> None:
    role = default_app.template["Resources"][scheduler_role]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    conditions = {key: iam.placeholder(value) for key, value in trust["Condition"]["StringEquals"].items()}
    assert conditions == {
        "aws:SourceAccount": "<AWS::AccountId>",
        "aws:SourceArn": "arn:aws:scheduler:us-east-1:<AWS::AccountId>:schedule-group/default",
    }
    assert role.get("ManagedPolicyArns", []) == []
    statements = iam.role_statements(default_app.template, scheduler_role)
    assert [(s.effect, s.actions, s.resources) for s in statements] == [
        ("Allow", ("states:StartExecution",), (RESIZE_ARN,))
    ]


def test_the_dashboard_shows_both_workflows(default_app: Synthesized) -> None:
    (dashboard,) = default_app.resources("AWS::CloudWatch::Dashboard").values()
    body = iam.placeholder(dashboard["Properties"]["DashboardBody"])
    assert "ec2ops-resize executions" in body and "ec2ops-snapshot executions" in body
    for short in c.RESIZE_FUNCTIONS:
        assert f"ec2ops-resize-{short}" in body


def test_opt_in_alarms_watch_every_workflow(opt_in_app: Synthesized) -> None:
    alarms = opt_in_app.resources("AWS::CloudWatch::Alarm").values()
    described = sorted(alarm["Properties"]["AlarmDescription"].split(" failed")[0] for alarm in alarms)
    assert described == [
        "An execution of ec2ops-resize",
        "An execution of ec2ops-snapshot",
        "An execution of ec2ops-spot-failover",
        "An execution of ec2ops-training-run",
    ]
