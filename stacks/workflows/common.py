"""What every workflow construct builds the same way: its logged, traced Standard state machine and its Lambda
tasks (retried only for the Lambda service's own transient errors)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from aws_cdk import CfnElement, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from cdk_nag import NagPackSuppression, NagSuppressions
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


# --- what every workflow construct needs for its functions and its cdk-nag findings ----------------------------
def construct_id(short: str) -> str:
    """`record-failure` -> `RecordFailureFunction`."""
    return "".join(part.capitalize() for part in short.split("-")) + "Function"


def workflow_functions(
    scope: Construct,
    base: Orchestration,
    *,
    handlers: Mapping[str, str],
    name_of: Callable[[str], str],
    workflow: str,
    environment: Mapping[str, str] | Callable[[str], Mapping[str, str] | None] | None = None,
    timeout_of: Callable[[str], int] | None = None,
) -> dict[str, lambda_.Function]:
    """One function per handler, each with its own role (the caller grants what it needs)."""

    def env_of(short: str) -> dict[str, str] | None:
        chosen = environment(short) if callable(environment) else environment
        return dict(chosen) if chosen is not None else None

    return {
        short: base.function(
            construct_id(short),
            name_of(short),
            handler,
            env_of(short),
            scope=scope,
            description=f"ec2ops {workflow} workflow: {short}",
            timeout_seconds=timeout_of(short) if timeout_of else c.LAMBDA_TIMEOUT_SECONDS,
        )
        for short, handler in handlers.items()
    }


def logical_id(construct: Construct) -> str:
    """The CloudFormation logical id of a construct's resource, as cdk-nag's findings name it."""
    return Stack.of(construct).get_logical_id(cast(CfnElement, construct.node.default_child))


def ec2_arn(scope: Construct, resource: str, *, account: bool = True) -> str:
    """`arn:<partition>:ec2:<region>:<account>:<resource>/*`; snapshots and images carry no account."""
    return Stack.of(scope).format_arn(
        service="ec2", resource=resource, resource_name="*", account=None if account else ""
    )


def arn_regex(scope: Construct, service: str, resource: str, *, account: bool = True) -> str:
    """The cdk-nag `appliesTo` regex of `ec2_arn`-style ARNs (`Resource::arn:...:<resource>/*`)."""
    region = Stack.of(scope).region.replace("-", "\\-")
    owner = "<AWS::AccountId>" if account else ""
    return rf"/^Resource::arn:(aws|<AWS::Partition>):{service}:{region}:{owner}:{resource}\/\*$/g"


KMS_DATA_KEY_SUPPRESSION = NagPackSuppression(
    id="AwsSolutions-IAM5",
    applies_to=["Action::kms:GenerateDataKey*"],
    reason="Added by CDK's grant for the opt-in customer key: encrypting needs the GenerateDataKey and "
    "GenerateDataKeyWithoutPlaintext variants, on this one key only.",
)


def suppress_state_machine_findings(
    state_machine: sfn.StateMachine,
    functions: Iterable[lambda_.Function],
    base: Orchestration,
    extra: Iterable[NagPackSuppression] = (),
) -> None:
    """The findings every workflow's state machine role has, with the reason beside them."""
    suppressions = [
        NagPackSuppression(
            id="AwsSolutions-IAM5",
            applies_to=["Resource::*"],
            reason="Added by CDK for logging and tracing: the CloudWatch Logs delivery actions "
            "(logs:CreateLogDelivery, ...) and X-Ray (xray:PutTraceSegments, ...) support no resource-level "
            "permissions, so IAM accepts only Resource '*'.",
        ),
        NagPackSuppression(
            id="AwsSolutions-IAM5",
            applies_to=[f"Resource::<{logical_id(function)}.Arn>:*" for function in functions],
            reason="Added by CDK's LambdaInvoke: the function's own ARN plus `:*` for its versions and aliases; "
            "each names one function of this workflow.",
        ),
        *extra,
    ]
    if base.key is not None:
        suppressions.append(KMS_DATA_KEY_SUPPRESSION)
    NagSuppressions.add_resource_suppressions(state_machine, suppressions, apply_to_children=True)


class RoleGrants:
    """Grants one function exactly its declared actions, each on the narrowest resources its API allows, and keeps
    the reason for every wildcard cdk-nag reports beside the grant that needs it."""

    def __init__(self, short: str, function: lambda_.Function, declared: frozenset[str]) -> None:
        self.short = short
        self.function = function
        self.declared = declared
        self.granted: set[str] = set()
        self.reasons: list[NagPackSuppression] = []

    def allow(self, wanted: Iterable[str], resources: list[str], conditions: Mapping[str, Any] | None = None) -> bool:
        """Grant the declared actions among `wanted` on `resources`; False when none of them is declared."""
        chosen = sorted(self.declared & set(wanted))
        if chosen:
            self.function.add_to_role_policy(
                iam.PolicyStatement(actions=chosen, resources=resources, conditions=conditions)
            )
            self.granted.update(chosen)
        return bool(chosen)

    def granted_by_construct(self, actions: Iterable[str]) -> None:
        """Actions a construct's own grant method added (table.grant, topic.grant_publish)."""
        self.granted.update(actions)

    def suppress(self, applies_to: list[Any], reason: str) -> None:
        """An AwsSolutions-IAM5 finding this role may have, and why."""
        self.reasons.append(NagPackSuppression(id="AwsSolutions-IAM5", applies_to=applies_to, reason=reason))

    def done(self) -> None:
        """Every declared action must have been granted; the reasons go on the role."""
        missing = self.declared - self.granted
        if missing:
            raise ValueError(f"{self.short}: FUNCTION_ACTIONS lists {sorted(missing)} but no grant is defined for it")
        if self.reasons and self.function.role is not None:
            NagSuppressions.add_resource_suppressions(self.function.role, self.reasons, apply_to_children=True)
