"""ec2ops-spot-failover: replace a reclaimed spot instance in the best other pool, started by EventBridge rules on
the interruption warning and the rebalance recommendation, or by hand (docs/spot-failover.md)."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks import constants as c
from stacks.config import Ec2OpsConfig
from stacks.orchestration import Orchestration
from stacks.workflows.common import (
    ALL_ERRORS,
    KMS_DATA_KEY_SUPPRESSION,
    RoleGrants,
    arn_regex,
    ec2_arn,
    invoke_lambda,
    standard_state_machine,
    suppress_state_machine_findings,
    workflow_functions,
)

LEDGER_READ_WRITE = frozenset({"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"})
# What each Lambda's own role may do beyond writing its own logs: the one place to change it (the tests compare).
FUNCTION_ACTIONS: dict[str, frozenset[str]] = {
    "assess": frozenset(
        {"ec2:DescribeInstances", "ec2:DescribeInstanceAttribute", "ec2:DescribeAddresses"} | LEDGER_READ_WRITE
    ),
    "choose": frozenset(
        {
            "ec2:DescribeSubnets",
            "ec2:DescribeAvailabilityZones",
            "ec2:DescribeInstanceTypeOfferings",
            "ec2:DescribeInstanceTypes",
            "ec2:DescribeSpotPriceHistory",
            "ec2:GetSpotPlacementScores",
            "pricing:GetProducts",
            "dynamodb:Query",
        }
    ),
    "launch": frozenset(
        {
            "ec2:RunInstances",
            "ec2:CreateTags",
            "ec2:DescribeInstances",
            "ec2:TerminateInstances",
            "iam:PassRole",
            "dynamodb:PutItem",
        }
    ),
    "promote": frozenset(
        {
            "ec2:DescribeInstances",
            "ec2:DescribeAddresses",
            "ec2:AssociateAddress",
            "ec2:CreateTags",
            "dynamodb:UpdateItem",
        }
    ),
    "record": frozenset({"dynamodb:PutItem"}),
    "record-failure": frozenset({"dynamodb:PutItem", "dynamodb:UpdateItem", "sns:Publish"}),
}
# Read-only actions without resource-level permissions: IAM accepts only Resource "*" for them.
UNSCOPED_READS = frozenset(
    {
        "ec2:DescribeInstances",
        "ec2:DescribeInstanceAttribute",
        "ec2:DescribeAddresses",
        "ec2:DescribeSubnets",
        "ec2:DescribeAvailabilityZones",
        "ec2:DescribeInstanceTypeOfferings",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeSpotPriceHistory",
        "ec2:GetSpotPlacementScores",
        "pricing:GetProducts",
    }
)
LEDGER_ACTIONS = frozenset({"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query"})
# The resources RunInstances touches besides the instance: what the replacement is launched from and with.
RUN_INSTANCES_USES = ("subnet", "security-group", "network-interface", "volume", "key-pair", "spot-instances-request")
# `States.StringToJson('null')`: a JSON null in a JSONPath payload template (CDK drops a Python None).
JSON_NULL = "States.StringToJson('null')"


class SpotFailoverWorkflow(Construct):
    """The Standard state machine `ec2ops-spot-failover`, its Lambdas (each with its own least-privilege role) and
    the EventBridge rule that starts it on the two spot signals."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Ec2OpsConfig,
        orchestration: Orchestration,
        ledger: dynamodb.ITable,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._base = orchestration
        self._ledger = ledger
        self._stack = Stack.of(self)
        self.functions = self._build_functions()
        for short, function in self.functions.items():
            self._grant(short, function)
        self.state_machine = self._build_state_machine()
        self.rule = self._build_rule()

    # --- Lambdas ---------------------------------------------------------------------------------------------
    def _build_functions(self) -> dict[str, lambda_.Function]:
        config = self._config
        return workflow_functions(
            self,
            self._base,
            handlers=c.SPOT_FUNCTIONS,
            name_of=c.spot_function_name,
            workflow="spot failover",
            environment={
                "SPOT_BAD_POOL_MINUTES": str(config.spot_bad_pool_minutes),
                "SPOT_LAUNCH_DEADLINE_SECONDS": str(config.spot_launch_deadline_seconds),
                "SPOT_POLL_SECONDS": str(config.spot_poll_seconds),
            },
            timeout_of=lambda short: (
                config.spot_launch_deadline_seconds + c.SPOT_LAUNCH_TIMEOUT_MARGIN_SECONDS
                if short == "launch"
                else c.LAMBDA_TIMEOUT_SECONDS
            ),
        )

    def _grant(self, short: str, function: lambda_.Function) -> None:
        """Grant exactly FUNCTION_ACTIONS[short], each the narrowest way its API allows, and say why beside it."""
        actions = FUNCTION_ACTIONS[short]
        grants = RoleGrants(short, function, actions)
        allow, suppress = grants.allow, grants.suppress
        if allow(UNSCOPED_READS, ["*"]):
            suppress(
                ["Resource::*"],
                f"{', '.join(sorted(actions & UNSCOPED_READS))}: read-only actions that support no resource-level "
                "permissions, so IAM accepts only Resource '*'.",
            )
        managed = {"StringEquals": {f"aws:ResourceTag/{c.TAG_MANAGED}": "true"}}
        if "ec2:RunInstances" in actions:
            run = frozenset({"ec2:RunInstances"})
            allow(run, [ec2_arn(self, "instance")], {"StringEquals": {f"aws:RequestTag/{c.TAG_MANAGED}": "true"}})
            allow(run, [ec2_arn(self, kind) for kind in RUN_INSTANCES_USES] + [ec2_arn(self, "image", account=False)])
            allow(
                frozenset({"ec2:CreateTags"}),
                [ec2_arn(self, kind) for kind in ("instance", "volume", "spot-instances-request")],
                {"StringEquals": {"ec2:CreateAction": "RunInstances"}},
            )
            allow(
                frozenset({"ec2:TerminateInstances"}),
                [ec2_arn(self, "instance")],
                {**managed, "Null": {f"aws:ResourceTag/{c.TAG_REPLACES}": "false"}},
            )
            allow(
                frozenset({"iam:PassRole"}),
                [self._stack.format_arn(service="iam", region="", resource="role", resource_name="*")],
                {
                    "StringEquals": {
                        "iam:PassedToService": "ec2.amazonaws.com",
                        f"iam:ResourceTag/{c.TAG_MANAGED}": "true",
                    }
                },
            )
            suppress(
                [{"regex": arn_regex(self, "ec2", kind)} for kind in ("instance", *RUN_INSTANCES_USES)]
                + [{"regex": r"/^Resource::arn:(aws|<AWS::Partition>):ec2:.*::image\/\*$/g"}]
                + [{"regex": r"/^Resource::arn:(aws|<AWS::Partition>):iam::<AWS::AccountId>:role\/\*$/g"}],
                "The replacement copies the interrupted instance's launch configuration, known only at run time. "
                f"RunInstances creates an instance only when the request tags it {c.TAG_MANAGED}=true; the subnet, "
                "security groups, key pair, image, volumes, network interface and spot request it uses have ids "
                "from that configuration. Tagging is allowed only at creation (ec2:CreateAction=RunInstances). "
                f"TerminateInstances only on replacements ec2ops launched ({c.TAG_MANAGED}=true and "
                f"{c.TAG_REPLACES} present), to clean up one that never reached running. iam:PassRole only to EC2 "
                f"and only roles tagged {c.TAG_MANAGED}=true (the interrupted instance's profile role).",
            )
        elif "ec2:CreateTags" in actions:
            allow(frozenset({"ec2:CreateTags"}), [ec2_arn(self, "instance")], managed)
            allow(frozenset({"ec2:AssociateAddress"}), [ec2_arn(self, "instance")], managed)
            allow(
                frozenset({"ec2:AssociateAddress"}), [ec2_arn(self, "elastic-ip"), ec2_arn(self, "network-interface")]
            )
            suppress(
                [{"regex": arn_regex(self, "ec2", kind)} for kind in ("instance", "elastic-ip", "network-interface")],
                f"Role tags only on instances tagged {c.TAG_MANAGED}=true. AssociateAddress moves the interrupted "
                "instance's Elastic IP (its allocation id read at run time) to a managed replacement only; the "
                "address and its network interface carry no ec2ops tag to condition on.",
            )
        if actions & LEDGER_ACTIONS:
            self._ledger.grant(function, *sorted(actions & LEDGER_ACTIONS))
            grants.granted_by_construct(actions & LEDGER_ACTIONS)
        if "sns:Publish" in actions:
            self._base.topic.grant_publish(function)
            grants.granted_by_construct({"sns:Publish"})
            if self._base.key is not None:
                grants.reasons.append(KMS_DATA_KEY_SUPPRESSION)
        grants.done()

    # --- the state machine -----------------------------------------------------------------------------------
    def _build_state_machine(self) -> sfn.StateMachine:
        state_machine = standard_state_machine(
            self,
            name=c.SPOT_STATE_MACHINE,
            definition=self._build_definition(),
            timeout=Duration.minutes(c.SPOT_STATE_MACHINE_TIMEOUT_MINUTES),
            config=self._config,
            base=self._base,
        )
        suppress_state_machine_findings(state_machine, self.functions.values(), self._base)
        return state_machine

    def _build_definition(self) -> sfn.IChainable:
        """Assess -> Route: none -> Done | promote -> Promote | failover, prepare -> Choose -> Launch -> Promote;
        Promote -> Record -> Notify -> Replaced. After Assess, a failed step runs RecordFailure, then fails with the
        step's own error and cause. A failed Assess (a malformed event, a refused manual input) fails at once:
        nothing was claimed or launched."""
        assess = self._invoke(
            "Assess",
            "assess",
            {
                "input": sfn.JsonPath.entire_payload,
                "execution_id": sfn.JsonPath.string_at("$$.Execution.Id"),
                "change_id": sfn.JsonPath.string_at("$$.Execution.Name"),
            },
            "$.assess",
        )
        start = sfn.Pass(
            self,
            "Start",
            parameters={
                "assess.$": "$.assess",
                "choice.$": JSON_NULL,
                "launch.$": JSON_NULL,
                "promotion.$": JSON_NULL,
            },
        )
        failure = self._invoke(
            "RecordFailure",
            "record-failure",
            {
                "assess": sfn.JsonPath.object_at("$.assess"),
                "launch": sfn.JsonPath.string_at("$.launch"),
                "error": sfn.JsonPath.object_at("$.error"),
                "execution_id": sfn.JsonPath.string_at("$$.Execution.Id"),
            },
            "$.failure",
        )
        failed = sfn.Fail(self, "Failed", error_path="$.failure.error", cause_path="$.failure.cause")
        failure.add_catch(
            sfn.Fail(self, "FailedUnrecorded", error_path="$.error.Error", cause_path="$.error.Cause"),
            errors=[ALL_ERRORS],
            result_path="$.failure_error",
        )
        failure.next(failed)
        step_payload = {
            "assess": sfn.JsonPath.object_at("$.assess"),
            "choice": sfn.JsonPath.string_at("$.choice"),
            "launch": sfn.JsonPath.string_at("$.launch"),
            "promotion": sfn.JsonPath.string_at("$.promotion"),
            "execution_id": sfn.JsonPath.string_at("$$.Execution.Id"),
        }
        choose = self._invoke("Choose", "choose", step_payload, "$.choice")
        launch = self._invoke("Launch", "launch", step_payload, "$.launch")
        promote = self._invoke("Promote", "promote", step_payload, "$.promotion")
        record = self._invoke("Record", "record", step_payload, "$.result")
        for step in (choose, launch, promote, record):
            step.add_catch(failure, errors=[ALL_ERRORS], result_path="$.error")

        done = sfn.Succeed(self, "Done", output_path="$.result")
        notify = tasks.SnsPublish(
            self,
            "Notify",
            topic=self._base.topic,
            message=sfn.TaskInput.from_json_path_at("$.result.message"),
            subject=c.SPOT_NOTIFY_SUBJECT,
            result_path=sfn.JsonPath.DISCARD,
        )
        # A failed notification must not hide the outcome: the replacement runs and is recorded.
        notify.add_catch(done, errors=[ALL_ERRORS], result_path="$.notify_error")
        promote.next(record).next(notify).next(done)
        choose.next(launch).next(promote)

        route = sfn.Choice(self, "Route")
        route.when(
            sfn.Condition.string_equals("$.assess.action", "none"),
            sfn.Succeed(self, "NothingToDo", output_path="$.assess"),
        ).when(sfn.Condition.string_equals("$.assess.action", "promote"), promote).when(
            sfn.Condition.or_(
                sfn.Condition.string_equals("$.assess.action", "failover"),
                sfn.Condition.string_equals("$.assess.action", "prepare"),
            ),
            choose,
        )
        # No default: an action outside the contract fails the execution (States.NoChoiceMatched), nothing launched.
        return assess.next(start).next(route)

    def _invoke(self, state_id: str, short: str, payload: Mapping[str, object], result_path: str) -> tasks.LambdaInvoke:
        return invoke_lambda(self, state_id, self.functions[short], payload, result_path)

    # --- the rule --------------------------------------------------------------------------------------------
    def _build_rule(self) -> events.Rule:
        """Both spot signals from aws.ec2 start the workflow with the event as its input (Assess parses it)."""
        rule = events.Rule(
            self,
            "SpotSignals",
            rule_name=f"{c.SPOT_STATE_MACHINE}-signals",
            description="EC2 spot interruption warnings and rebalance recommendations start ec2ops-spot-failover",
            event_pattern=events.EventPattern(source=["aws.ec2"], detail_type=list(c.SPOT_DETAIL_TYPES)),
        )
        rule.add_target(
            targets.SfnStateMachine(
                self.state_machine,
                # Past two minutes the warning's instance is gone, but its replacement is still owed: keep trying.
                retry_attempts=20,
                max_event_age=Duration.hours(2),
            )
        )
        return rule
