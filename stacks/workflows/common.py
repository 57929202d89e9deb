"""What every workflow construct builds the same way: its logged, traced Standard state machine and its Lambda
tasks (retried only for the Lambda service's own transient errors)."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks import constants as c
from stacks.config import Ec2OpsConfig
from stacks.orchestration import Orchestration

ALL_ERRORS = "States.ALL"
LAMBDA_TRANSIENT_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)


def standard_state_machine(
    scope: Construct,
    *,
    name: str,
    definition: sfn.IChainable,
    timeout: Duration,
    config: Ec2OpsConfig,
    base: Orchestration,
) -> sfn.StateMachine:
    """A Standard state machine named `name`, logging ALL to its own log group, traced with X-Ray."""
    log_group = logs.LogGroup(
        scope,
        "StateMachineLogs",
        log_group_name=f"/aws/vendedlogs/states/{name}",
        retention=logs.RetentionDays[c.LOG_RETENTION_DAYS[config.log_retention_days]],
        removal_policy=RemovalPolicy.DESTROY,
    )
    state_machine = sfn.StateMachine(
        scope,
        "StateMachine",
        state_machine_name=name,
        state_machine_type=sfn.StateMachineType.STANDARD,
        definition_body=sfn.DefinitionBody.from_chainable(definition),
        logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
        tracing_enabled=True,
        timeout=timeout,
    )
    if base.key is not None:
        # SnsPublish grants sns:Publish only; an encrypted topic also needs its key.
        base.topic.grant_publish(state_machine)
    return state_machine


def invoke_lambda(
    scope: Construct, state_id: str, function: lambda_.IFunction, payload: Mapping[str, object], result_path: str
) -> tasks.LambdaInvoke:
    """The Lambda's return value lands at `result_path`. Only the Lambda service's transient errors are retried,
    never the handler's own named errors (a refusal fails at once with its name) nor a handler timeout (a retried
    step could act twice)."""
    task = tasks.LambdaInvoke(
        scope,
        state_id,
        lambda_function=function,
        payload=sfn.TaskInput.from_object(dict(payload)),
        payload_response_only=True,
        retry_on_service_exceptions=False,
        result_path=result_path,
    )
    task.add_retry(errors=list(LAMBDA_TRANSIENT_ERRORS), interval=Duration.seconds(2), max_attempts=6, backoff_rate=2)
    return task
