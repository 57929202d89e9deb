"""A second probe app: rules on Step Functions execution status changes, with Lambda and state machine targets.

Separate from probe_app.py so that the first probe's inventory stays as its tests declare it.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks

from tests.local.probe_app import FUNCTIONS

STATUS_CHANGE = "Step Functions Execution Status Change"


def build(outdir: Path) -> Path:
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "status-probe", env=cdk.Environment(region="us-east-1"))

    def function(logical: str, name: str, handler: str) -> lambda_.Function:
        return lambda_.Function(
            stack,
            logical,
            function_name=name,
            runtime=lambda_.Runtime.PYTHON_3_13,
            handler=f"probe_handlers.{handler}",
            code=lambda_.Code.from_asset(str(FUNCTIONS)),
        )

    record = function("RecordFunction", "probe-record", "record_event")
    refuse = function("RefuseFunction", "probe-refuse", "refuse_event")

    def machine(logical: str, name: str, body: sfn.IChainable, timeout: cdk.Duration | None = None) -> sfn.StateMachine:
        return sfn.StateMachine(
            stack,
            logical,
            state_machine_name=name,
            definition_body=sfn.DefinitionBody.from_chainable(body),
            timeout=timeout,
        )

    succeed = machine(
        "SucceedMachine",
        "ec2ops-probe-succeed",
        sfn.Pass(stack, "Done", result_path="$.done", result=sfn.Result.from_boolean(True)),
    )
    fail = machine("FailMachine", "ec2ops-probe-fail", sfn.Fail(stack, "Boom", error="Boom", cause="it broke"))

    def hold(suffix: str) -> tasks.LambdaInvoke:
        return tasks.LambdaInvoke(
            stack,
            f"Hold{suffix}",
            lambda_function=record,
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            payload=sfn.TaskInput.from_object({"token": sfn.JsonPath.task_token}),
        )

    held = machine("HoldMachine", "ec2ops-probe-hold", hold("Forever"))
    timed = machine("TimeoutMachine", "ec2ops-probe-timeout", hold("TooLong"), timeout=cdk.Duration.seconds(1))
    cleanup = machine("CleanupMachine", "ec2ops-probe-cleanup", sfn.Pass(stack, "Clean"))

    # Every end of the four machines goes to a Lambda (the event as it is) ...
    watched = [succeed, fail, held, timed]
    every_end = events.Rule(
        stack,
        "EveryEndRule",
        event_pattern=events.EventPattern(
            source=["aws.states"],
            detail_type=[STATUS_CHANGE],
            detail={
                "status": ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"],
                "stateMachineArn": [m.state_machine_arn for m in watched],
            },
        ),
    )
    every_end.add_target(targets.LambdaFunction(record))
    # ... a failed, timed out or stopped one also starts a cleanup, as training runs do.
    bad_end = events.Rule(
        stack,
        "BadEndRule",
        event_pattern=events.EventPattern(
            source=["aws.states"],
            detail_type=[STATUS_CHANGE],
            detail={
                "status": ["FAILED", "TIMED_OUT", "ABORTED"],
                "stateMachineArn": [m.state_machine_arn for m in watched],
            },
        ),
    )
    bad_end.add_target(
        targets.SfnStateMachine(
            cleanup,
            input=events.RuleTargetInput.from_object(
                {
                    "execution": events.EventField.from_path("$.detail.executionArn"),
                    "status": events.EventField.from_path("$.detail.status"),
                }
            ),
        )
    )
    # A target that fails: its error is kept, the other targets still get the event.
    refused = events.Rule(
        stack,
        "RefusedRule",
        event_pattern=events.EventPattern(
            source=["aws.states"],
            detail_type=[STATUS_CHANGE],
            detail={"stateMachineArn": [fail.state_machine_arn]},
        ),
    )
    refused.add_target(targets.LambdaFunction(refuse))
    assembly = app.synth()
    return Path(assembly.directory)
