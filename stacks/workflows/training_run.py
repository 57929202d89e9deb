"""ec2ops-training-run: an ephemeral (GPU) instance bootstraps, trains, uploads its results and terminates itself;
the run's state lives in `<env>/system-state.json` (docs/training-runs.md). Also here: the instance role and
profile, the rule that cleans up after an execution stopped from the console, and the sweeper's schedule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from stacks import constants as c
from stacks.config import Ec2OpsConfig
from stacks.orchestration import Orchestration
from stacks.workflows.common import (
    ALL_ERRORS,
    RoleGrants,
    arn_regex,
    ec2_arn,
    invoke_lambda,
    logical_id,
    standard_state_machine,
    suppress_state_machine_findings,
    workflow_functions,
)

STATE_FILE_ACTIONS = frozenset({"s3:GetObject", "s3:PutObject", "s3:DeleteObject"})
CLOSE_ACTIONS = frozenset(
    {
        "ec2:DescribeInstances",
        "ec2:TerminateInstances",
        "s3:ListBucket",
        "dynamodb:PutItem",
        "dynamodb:Query",
    }
    | STATE_FILE_ACTIONS
)
# What each Lambda's own role may do beyond writing its own logs: the one place to change it (the tests compare).
FUNCTION_ACTIONS: dict[str, frozenset[str]] = {
    "plan": frozenset(
        {
            "ec2:DescribeInstanceTypes",
            "ec2:DescribeInstanceTypeOfferings",
            "ec2:DescribeImages",
            "ssm:GetParameter",
        }
    ),
    "acquire": frozenset({"s3:GetObject", "s3:PutObject", "s3:ListBucket"}),
    "launch": frozenset(
        {
            "ec2:RunInstances",
            "ec2:CreateTags",
            "ec2:DescribeSpotPriceHistory",
            "iam:PassRole",
            "s3:GetObject",
            "s3:PutObject",
            "s3:ListBucket",
            "dynamodb:PutItem",
        }
    ),
    "finish": CLOSE_ACTIONS,
    "cleanup": CLOSE_ACTIONS,
    "reap": CLOSE_ACTIONS,
    "sweep": CLOSE_ACTIONS,
}
UNSCOPED_READS = frozenset(
    {
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeInstanceTypeOfferings",
        "ec2:DescribeImages",
        "ec2:DescribeInstances",
        "ec2:DescribeSpotPriceHistory",
    }
)
RUN_INSTANCES_USES = ("subnet", "security-group", "network-interface", "volume", "spot-instances-request")


class TrainingRunWorkflow(Construct):
    """The Standard state machine `ec2ops-training-run`, its Lambdas, the training instance's role and profile, the
    execution-status rule (cleanup after a console stop) and the sweeper schedule."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Ec2OpsConfig,
        orchestration: Orchestration,
        ledger: dynamodb.ITable,
        bucket: s3.Bucket,
        vpc: ec2.Vpc,
        security_group: ec2.ISecurityGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._base = orchestration
        self._ledger = ledger
        self._bucket = bucket
        self._stack = Stack.of(self)
        # Known before the state machine exists: the Lambdas' environment and the rule name it.
        self.state_machine_arn = self._stack.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=c.TRAINING_STATE_MACHINE,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.instance_role = self._build_instance_role()
        self.instance_profile = iam.CfnInstanceProfile(
            self, "InstanceProfile", roles=[self.instance_role.role_name], path="/ec2ops/"
        )
        self.functions = self._build_functions(vpc, security_group)
        for short, function in self.functions.items():
            self._grant(short, function)
        self.state_machine = self._build_state_machine()
        self._build_rules()

    # --- the instance's role ---------------------------------------------------------------------------------
    def _build_instance_role(self) -> iam.Role:
        """What a training instance may do: read cached-datasets/, write under the envs, signal its task token,
        terminate itself. Nothing else."""
        role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="ec2ops training instances: read cached-datasets/, write run files, terminate itself",
        )
        bucket = self._bucket
        role.add_to_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn]))
        role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[bucket.arn_for_objects("cached-datasets/*")])
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetObject", "s3:PutObject"], resources=[bucket.arn_for_objects("*/*")])
        )
        role.add_to_policy(
            iam.PolicyStatement(
                effect=iam.Effect.DENY,
                actions=["s3:PutObject", "s3:DeleteObject"],
                resources=[bucket.arn_for_objects("cached-datasets/*")],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"],
                resources=["*"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ec2:TerminateInstances"],
                resources=[ec2_arn(self, "instance")],
                conditions={
                    "StringEquals": {"aws:ARN": "${ec2:SourceInstanceARN}"},
                    "Null": {f"aws:ResourceTag/{c.TAG_RUN_ID}": "false"},
                },
            )
        )
        if bucket.encryption_key is not None:
            bucket.encryption_key.grant_encrypt_decrypt(role)
        NagSuppressions.add_resource_suppressions(
            role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    applies_to=[
                        "Resource::*",
                        f"Resource::<{logical_id(bucket)}.Arn>/cached-datasets/*",
                        f"Resource::<{logical_id(bucket)}.Arn>/*/*",
                        {"regex": arn_regex(self, "ec2", "instance")},
                        "Action::kms:GenerateDataKey*",
                        "Action::kms:ReEncrypt*",
                    ],
                    reason="A training instance reads cached-datasets/* and writes its run's files under "
                    "<env>/<run_id>/ (the env and run id are the execution's input; writes to cached-datasets/ are "
                    "denied). Task-token actions support no resource-level permissions. TerminateInstances only on "
                    "the instance itself (aws:ARN = ec2:SourceInstanceARN) and only when it carries a run id. The KMS "
                    "actions come with the opt-in bucket key.",
                )
            ],
            apply_to_children=True,
        )
        return role

    # --- Lambdas ---------------------------------------------------------------------------------------------
    def _build_functions(self, vpc: ec2.Vpc, security_group: ec2.ISecurityGroup) -> dict[str, lambda_.Function]:
        config = self._config
        subnets = ",".join(f"{subnet.subnet_id}={subnet.availability_zone}" for subnet in vpc.public_subnets)
        environment = {
            "TRAINING_BUCKET": self._bucket.bucket_name,
            "TRAINING_AMI_PARAMETER": config.training_ami_parameter,
            "TRAINING_INSTANCE_PROFILE_ARN": self.instance_profile.attr_arn,
            "TRAINING_SUBNETS": subnets,
            "TRAINING_SECURITY_GROUP": security_group.security_group_id,
            "TRAINING_HEARTBEAT_SECONDS": str(config.training_heartbeat_seconds),
            "TRAINING_ROOT_VOLUME_GIB": str(config.training_root_volume_gib),
            "TRAINING_STALE_AFTER_MINUTES": str(config.training_stale_after_minutes),
            "TRAINING_STATE_MACHINE_ARN": self.state_machine_arn,
        }
        return workflow_functions(
            self,
            self._base,
            handlers=c.TRAINING_FUNCTIONS,
            name_of=c.training_function_name,
            workflow="training run",
            environment=environment,
        )

    def _grant(self, short: str, function: lambda_.Function) -> None:
        """Grant exactly FUNCTION_ACTIONS[short], each the narrowest way its API allows, and say why beside it."""
        actions = FUNCTION_ACTIONS[short]
        grants = RoleGrants(short, function, actions)
        allow = grants.allow
        applies_to: list[Any] = []

        bucket = self._bucket
        if actions & UNSCOPED_READS:
            allow(UNSCOPED_READS, ["*"])
            applies_to.append("Resource::*")
        allow(frozenset({"s3:ListBucket"}), [bucket.bucket_arn])
        allow(
            STATE_FILE_ACTIONS,
            [bucket.arn_for_objects("*/system-state.json"), bucket.arn_for_objects("*/*/state-final.json")],
        )
        if short == "acquire":
            function.add_to_role_policy(
                iam.PolicyStatement(actions=["s3:PutObject"], resources=[bucket.arn_for_objects("*/*/config.json")])
            )
        applies_to += [
            f"Resource::<{logical_id(bucket)}.Arn>/*/system-state.json",
            f"Resource::<{logical_id(bucket)}.Arn>/*/*/state-final.json",
            f"Resource::<{logical_id(bucket)}.Arn>/*/*/config.json",
        ]
        if "ssm:GetParameter" in actions:
            name = self._config.training_ami_parameter
            public = name.startswith("/aws/service/")
            allow(
                frozenset({"ssm:GetParameter"}),
                [self._stack.format_arn(service="ssm", account="" if public else None, resource="parameter" + name)],
            )
        if "ec2:RunInstances" in actions:
            run = frozenset({"ec2:RunInstances"})
            allow(run, [ec2_arn(self, "instance")], {"Null": {f"aws:RequestTag/{c.TAG_RUN_ID}": "false"}})
            allow(run, [ec2_arn(self, kind) for kind in RUN_INSTANCES_USES] + [ec2_arn(self, "image", account=False)])
            allow(
                frozenset({"ec2:CreateTags"}),
                [ec2_arn(self, kind) for kind in ("instance", "volume", "spot-instances-request")],
                {"StringEquals": {"ec2:CreateAction": "RunInstances"}},
            )
            allow(
                frozenset({"iam:PassRole"}),
                [self.instance_role.role_arn],
                {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
            )
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{c.SCRIPTS_PREFIX}ec2ops/*")]
                )
            )
            applies_to += [{"regex": arn_regex(self, "ec2", kind)} for kind in ("instance", *RUN_INSTANCES_USES)]
            applies_to += [
                {"regex": r"/^Resource::arn:(aws|<AWS::Partition>):ec2:.*::image\/\*$/g"},
                f"Resource::<{logical_id(bucket)}.Arn>/{c.SCRIPTS_PREFIX}ec2ops/*",
            ]
        if "ec2:TerminateInstances" in actions:
            allow(
                frozenset({"ec2:TerminateInstances"}),
                [ec2_arn(self, "instance")],
                {"Null": {f"aws:ResourceTag/{c.TAG_RUN_ID}": "false"}},
            )
            applies_to.append({"regex": arn_regex(self, "ec2", "instance")})
        if actions & {"dynamodb:PutItem", "dynamodb:Query"}:
            wanted = sorted(actions & {"dynamodb:PutItem", "dynamodb:Query"})
            self._ledger.grant(function, *wanted)
            grants.granted_by_construct(wanted)
        if bucket.encryption_key is not None:
            bucket.encryption_key.grant_encrypt_decrypt(function)
            applies_to += ["Action::kms:GenerateDataKey*", "Action::kms:ReEncrypt*"]
        grants.suppress(
            applies_to,
            "Describe* reads support no resource-level permissions. State files are <env>/system-state.json and "
            "<env>/<run_id>/state-final.json (and the run's config.json), env and run id known only at run time. "
            f"RunInstances creates an instance only when the request tags it with {c.TAG_RUN_ID}; the subnet, "
            "security group, volume, network interface, image and spot request it uses have ids known at run time; "
            "tags only at creation; PassRole only the training instance role, only to EC2. TerminateInstances only "
            f"on instances tagged {c.TAG_RUN_ID}. The scripts go to {c.SCRIPTS_PREFIX}ec2ops/ only.",
        )
        grants.done()

    # --- the state machine -----------------------------------------------------------------------------------
    def _build_state_machine(self) -> sfn.StateMachine:
        state_machine = standard_state_machine(
            self,
            name=c.TRAINING_STATE_MACHINE,
            definition=self._build_definition(),
            timeout=Duration.hours(c.TRAINING_STATE_MACHINE_TIMEOUT_HOURS),
            config=self._config,
            base=self._base,
        )
        suppress_state_machine_findings(state_machine, self.functions.values(), self._base)
        return state_machine

    def _build_definition(self) -> sfn.IChainable:
        """Plan -> Acquire -> FirstAttempt -> RunInstance (waits for the instance's task token, with heartbeats)
        -> Finish -> Notify -> Succeeded. SpotInterrupted -> another attempt while any is left; any other failure
        after Acquire -> Cleanup -> NotifyFailure -> Failed with the run's error. A failed Plan or Acquire touched
        nothing and fails at once."""
        execution = sfn.JsonPath.string_at("$$.Execution.Id")
        plan = self._invoke(
            "Plan", "plan", {"request": sfn.JsonPath.entire_payload, "execution_id": execution}, "$.plan"
        )
        acquire = self._invoke(
            "Acquire", "acquire", {"plan": sfn.JsonPath.object_at("$.plan"), "execution_id": execution}, "$.lock"
        )
        first = sfn.Pass(self, "FirstAttempt", parameters={"plan.$": "$.plan", "attempt": 1})
        run_instance = tasks.LambdaInvoke(
            self,
            "RunInstance",
            lambda_function=self.functions["launch"],
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            # No retry: a second invocation carries a new task token, and the instance holds the first one.
            retry_on_service_exceptions=False,
            payload=sfn.TaskInput.from_object(
                {
                    "plan": sfn.JsonPath.object_at("$.plan"),
                    "attempt": sfn.JsonPath.number_at("$.attempt"),
                    "task_token": sfn.JsonPath.task_token,
                    "execution_id": execution,
                }
            ),
            heartbeat_timeout=sfn.Timeout.duration(Duration.seconds(self._config.training_heartbeat_timeout_seconds)),
            task_timeout=sfn.Timeout.at("$.plan.timeout_seconds"),
            result_path="$.instance",
        )
        next_attempt = sfn.Pass(
            self, "NextAttempt", parameters={"plan.$": "$.plan", "attempt.$": "States.MathAdd($.attempt, 1)"}
        )
        cleanup = self._cleanup("Cleanup", "RunFailed", resumes_exhausted=False)
        exhausted = self._cleanup("CleanupNoResumeLeft", "NoResumeLeft", resumes_exhausted=True)
        can_resume = sfn.Choice(self, "ResumeLeft?")
        can_resume.when(
            sfn.Condition.number_less_than_json_path("$.attempt", "$.plan.max_attempts"),
            next_attempt.next(run_instance),
        ).otherwise(exhausted)
        run_instance.add_catch(can_resume, errors=["SpotInterrupted"], result_path="$.error")
        run_instance.add_catch(cleanup, errors=[ALL_ERRORS], result_path="$.error")
        finish = self._invoke(
            "Finish", "finish", {"plan": sfn.JsonPath.object_at("$.plan"), "execution_id": execution}, "$.result"
        )
        finish.add_catch(cleanup, errors=[ALL_ERRORS], result_path="$.error")
        done = sfn.Succeed(self, "Succeeded", output_path="$.result")
        notify = self._notify("Notify", done)
        return plan.next(acquire).next(first).next(run_instance).next(finish).next(notify).next(done)

    def _cleanup(self, state_id: str, fail_id: str, *, resumes_exhausted: bool) -> sfn.IChainable:
        """Close the run as failed, tell people, then fail with the run's error and cause."""
        cleanup = self._invoke(
            state_id,
            "cleanup",
            {
                "plan": sfn.JsonPath.object_at("$.plan"),
                "error": sfn.JsonPath.object_at("$.error"),
                "resumes_exhausted": resumes_exhausted,
                "execution_id": sfn.JsonPath.string_at("$$.Execution.Id"),
            },
            "$.result",
        )
        failed = sfn.Fail(self, fail_id, error_path="$.result.error", cause_path="$.result.cause")
        cleanup.add_catch(
            sfn.Fail(self, f"{fail_id}CleanupFailed", error="CleanupFailed", cause_path="$.cleanup_error.Cause"),
            errors=[ALL_ERRORS],
            result_path="$.cleanup_error",
        )
        return cleanup.next(self._notify(f"Notify{state_id}", failed)).next(failed)

    def _notify(self, state_id: str, after: sfn.IChainable) -> tasks.SnsPublish:
        notify = tasks.SnsPublish(
            self,
            state_id,
            topic=self._base.topic,
            message=sfn.TaskInput.from_json_path_at("$.result.message"),
            subject=c.TRAINING_NOTIFY_SUBJECT,
            result_path=sfn.JsonPath.DISCARD,
        )
        # A failed notification must not hide the outcome.
        notify.add_catch(after, errors=[ALL_ERRORS], result_path="$.notify_error")
        return notify

    def _invoke(self, state_id: str, short: str, payload: Mapping[str, object], result_path: str) -> tasks.LambdaInvoke:
        return invoke_lambda(self, state_id, self.functions[short], payload, result_path)

    # --- rules -----------------------------------------------------------------------------------------------
    def _build_rules(self) -> None:
        """A stop from the console (or a timeout) skips the state machine's own cleanup: the status change rule
        runs it. The sweeper runs on a schedule (EventBridge rules and idle Lambdas cost nothing)."""
        stopped = events.Rule(
            self,
            "ExecutionEnded",
            rule_name=f"{c.TRAINING_STATE_MACHINE}-ended",
            description="Clean up a training run whose execution was stopped, timed out or failed",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={"status": ["ABORTED", "TIMED_OUT", "FAILED"], "stateMachineArn": [self.state_machine_arn]},
            ),
        )
        stopped.add_target(targets.LambdaFunction(self.functions["reap"], retry_attempts=10))
        sweep = events.Rule(
            self,
            "Sweep",
            rule_name=f"{c.TRAINING_STATE_MACHINE}-sweep",
            description="Terminate expired training instances and break stale run locks",
            schedule=events.Schedule.rate(Duration.minutes(self._config.training_sweep_minutes)),
        )
        sweep.add_target(targets.LambdaFunction(self.functions["sweep"], retry_attempts=2))
