"""A small CDK app, synthesized by the tests of ec2ops.local, that exercises the emulator's moving parts."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks

FUNCTIONS = Path(__file__).parent / "probe_functions"
SPOT_WARNING = "EC2 Spot Instance Interruption Warning"


def build(outdir: Path) -> Path:
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "probe", env=cdk.Environment(region="us-east-1"))

    # ec2ops-probe-stop: stop, then poll every 10 s until EC2 says stopped.
    stop = tasks.CallAwsService(
        stack,
        "StopInstance",
        service="ec2",
        action="stopInstances",
        parameters={"InstanceIds.$": "States.Array($.instance_id)"},
        iam_resources=["*"],
        result_path=sfn.JsonPath.DISCARD,
    )
    caught = sfn.Pass(stack, "StopRefused", parameters={"caught.$": "$.error.Error", "cause.$": "$.error.Cause"})
    stop.add_catch(caught, errors=["Ec2.Ec2Exception"], result_path="$.error")
    wait = sfn.Wait(stack, "WaitForStop", time=sfn.WaitTime.duration(cdk.Duration.seconds(10)))
    describe = tasks.CallAwsService(
        stack,
        "DescribeInstance",
        service="ec2",
        action="describeInstances",
        parameters={"InstanceIds.$": "States.Array($.instance_id)"},
        iam_resources=["*"],
        result_selector={"state.$": "$.Reservations[0].Instances[0].State.Name"},
        result_path="$.described",
    )
    stopped = sfn.Choice(stack, "Stopped?")
    done = sfn.Succeed(stack, "Done")
    definition = (
        stop.next(wait)
        .next(describe)
        .next(stopped.when(sfn.Condition.string_equals("$.described.state", "stopped"), done).otherwise(wait))
    )
    sfn.StateMachine(
        stack,
        "StopMachine",
        state_machine_name="ec2ops-probe-stop",
        definition_body=sfn.DefinitionBody.from_chainable(definition),
    )

    # ec2ops-probe-describe: a raw SDK result (with timestamps) as the execution's output.
    raw = tasks.CallAwsService(
        stack,
        "DescribeRaw",
        service="ec2",
        action="describeInstances",
        parameters={"InstanceIds.$": "States.Array($.instance_id)"},
        iam_resources=["*"],
        result_path="$.raw",
    )
    sfn.StateMachine(
        stack,
        "DescribeMachine",
        state_machine_name="ec2ops-probe-describe",
        definition_body=sfn.DefinitionBody.from_chainable(raw),
    )

    # ec2ops-probe-start: a Lambda that starts the instance; its named error is caught.
    function = lambda_.Function(
        stack,
        "StartFunction",
        function_name="probe-start",
        runtime=lambda_.Runtime.PYTHON_3_13,
        handler="probe_handlers.start_instance",
        code=lambda_.Code.from_asset(str(FUNCTIONS)),
        environment={"PROBE_MARKER": "from-template"},
    )
    invoke = tasks.LambdaInvoke(
        stack,
        "StartWithLambda",
        lambda_function=function,
        payload_response_only=True,
        retry_on_service_exceptions=False,
    )
    invoke.add_catch(
        sfn.Pass(stack, "NoCapacity", parameters={"caught.$": "$.error.Error"}),
        errors=["CapacityUnavailable"],
        result_path="$.error",
    )
    sfn.StateMachine(
        stack,
        "StartMachine",
        state_machine_name="ec2ops-probe-start",
        definition_body=sfn.DefinitionBody.from_chainable(invoke),
    )

    # ec2ops-probe-echo: started by an EventBridge rule (input transformer) and by schedules.
    echo = sfn.StateMachine(
        stack,
        "EchoMachine",
        state_machine_name="ec2ops-probe-echo",
        definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(stack, "Echo")),
    )
    # ec2ops-probe-parent: runs ec2ops-probe-echo as a nested execution and waits for it (.sync:2).
    child = tasks.StepFunctionsStartExecution(
        stack,
        "RunChild",
        state_machine=echo,
        integration_pattern=sfn.IntegrationPattern.RUN_JOB,
        input=sfn.TaskInput.from_object({"from.$": "$.from"}),
        name=sfn.JsonPath.format("child-{}", sfn.JsonPath.uuid()),
        result_selector={"output.$": "$.Output"},
        result_path="$.child",
    )
    sfn.StateMachine(
        stack,
        "ParentMachine",
        state_machine_name="ec2ops-probe-parent",
        definition_body=sfn.DefinitionBody.from_chainable(child),
    )
    rule = events.Rule(
        stack,
        "SpotWarningRule",
        event_pattern=events.EventPattern(source=["aws.ec2"], detail_type=[SPOT_WARNING]),
    )
    rule.add_target(
        targets.SfnStateMachine(
            echo,
            input=events.RuleTargetInput.from_object(
                {
                    "instance_id": events.EventField.from_path("$.detail.instance-id"),
                    "action": events.EventField.from_path("$.detail.instance-action"),
                }
            ),
        )
    )
    assembly = app.synth()
    return Path(assembly.directory)
