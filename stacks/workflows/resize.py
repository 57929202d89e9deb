"""ec2ops-resize: change a managed instance's type, with a snapshot first and a rollback on failure
(docs/design/resize-workflow.md is the contract with the Lambdas)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from aws_cdk import ArnFormat, CfnElement, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from cdk_nag import NagPackSuppression
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
    standard_state_machine,
    suppress_state_machine_findings,
    workflow_functions,
)

# What each Lambda's own role may do beyond writing its own logs: the one place to change it (the tests compare).
FUNCTION_ACTIONS: dict[str, frozenset[str]] = {
    "plan": frozenset(
        {
            "ec2:DescribeInstances",
            "ec2:DescribeInstanceAttribute",
            "ec2:DescribeInstanceTypes",
            "ec2:DescribeInstanceTypeOfferings",
            "ec2:DescribeAddresses",
            "pricing:GetProducts",
        }
    ),
    "lock": frozenset({"dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:GetItem"}),
    "drive": frozenset(
        {
            "ec2:DescribeInstances",
            "ec2:DescribeInstanceStatus",
            "ec2:DescribeCapacityReservations",
            "ec2:StopInstances",
            "ec2:StartInstances",
            "ec2:ModifyInstanceAttribute",
            "ec2:ModifyInstanceCapacityReservationAttributes",
            "ec2:CreateCapacityReservation",
            "ec2:CreateTags",
        }
    ),
    "finish": frozenset(
        {
            "ec2:DescribeInstances",
            "ec2:CancelCapacityReservation",
            "dynamodb:PutItem",
            "dynamodb:DeleteItem",
            "dynamodb:GetItem",
            "scheduler:CreateSchedule",
            "scheduler:DeleteSchedule",
            "scheduler:GetSchedule",
            "iam:PassRole",
        }
    ),
}
# Read-only actions without resource-level permissions: IAM accepts only Resource "*" for them.
UNSCOPED_READS = frozenset(
    {
        "ec2:DescribeInstances",
        "ec2:DescribeInstanceAttribute",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeInstanceTypeOfferings",
        "ec2:DescribeAddresses",
        "ec2:DescribeInstanceStatus",
        "ec2:DescribeCapacityReservations",
        "pricing:GetProducts",
    }
)
# The only changes to an instance, and only to one tagged ec2ops:managed=true.
INSTANCE_ACTIONS = frozenset(
    {
        "ec2:StopInstances",
        "ec2:StartInstances",
        "ec2:ModifyInstanceAttribute",
        "ec2:ModifyInstanceCapacityReservationAttributes",
    }
)
LEDGER_ACTIONS = frozenset({"dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:GetItem"})
SCHEDULE_ACTIONS = frozenset({"scheduler:CreateSchedule", "scheduler:DeleteSchedule", "scheduler:GetSchedule"})
# `States.StringToJson('null')`: a JSON null in a JSONPath payload template (CDK drops a Python None).
JSON_NULL = "States.StringToJson('null')"


def state_machine_timeout(config: Ec2OpsConfig) -> Duration:
    """A backstop well above the longest run the phase timeouts allow: the nested snapshot up to its own timeout,
    one stop, each candidate type started and status-checked, every rollback attempt a full stop/start/check, plus
    the margin. The drive Lambda enforces each phase's deadline itself and rolls back first."""
    stop = config.resize_stop_timeout_minutes
    start_and_check = config.resize_start_timeout_minutes + config.resize_status_check_timeout_minutes
    snapshot = config.snapshot_timeout_minutes + c.STATE_MACHINE_TIMEOUT_MARGIN_MINUTES
    drive = (
        stop + c.RESIZE_MAX_CANDIDATES * start_and_check + config.resize_rollback_attempts * (stop + start_and_check)
    )
    return Duration.minutes(snapshot + drive + c.STATE_MACHINE_TIMEOUT_MARGIN_MINUTES)


class ResizeWorkflow(Construct):
    """The Standard state machine `ec2ops-resize`, its four Lambdas (each with its own least-privilege role), and
    the role EventBridge Scheduler uses to start a revert."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Ec2OpsConfig,
        orchestration: Orchestration,
        ledger: dynamodb.ITable,
        snapshot_state_machine: sfn.StateMachine,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._base = orchestration
        self._ledger = ledger
        self._snapshot_state_machine = snapshot_state_machine
        self._stack = Stack.of(self)
        # Known before the state machine exists: the finish Lambda's environment and the scheduler role's target
        # would otherwise reference it while the state machine references the finish Lambda (a cycle).
        self.state_machine_arn = self._stack.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=c.RESIZE_STATE_MACHINE,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.scheduler_role = self._build_scheduler_role()
        self.functions = self._build_functions()
        for short, function in self.functions.items():
            self._grant(short, function)
        self.state_machine = self._build_state_machine()

    # --- the revert schedule's role ----------------------------------------------------------------------------
    def _build_scheduler_role(self) -> iam.Role:
        """What a revert schedule runs as: it may start ec2ops-resize, nothing else; only schedules of this account's
        `default` group may assume it (confused-deputy protection)."""
        role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={
                    "StringEquals": {
                        "aws:SourceAccount": self._stack.account,
                        "aws:SourceArn": self._stack.format_arn(
                            service="scheduler", resource="schedule-group", resource_name=c.RESIZE_SCHEDULE_GROUP
                        ),
                    }
                },
            ),
            description=f"EventBridge Scheduler: start {c.RESIZE_STATE_MACHINE} to revert a resize",
        )
        role.add_to_policy(iam.PolicyStatement(actions=["states:StartExecution"], resources=[self.state_machine_arn]))
        return role

    # --- Lambdas ---------------------------------------------------------------------------------------------
    def _build_functions(self) -> dict[str, lambda_.Function]:
        config = self._config
        environments: dict[str, dict[str, str]] = {
            "drive": {
                "RESIZE_STOP_TIMEOUT_SECONDS": str(config.resize_stop_timeout_minutes * 60),
                "RESIZE_START_TIMEOUT_SECONDS": str(config.resize_start_timeout_minutes * 60),
                "RESIZE_STATUS_CHECK_TIMEOUT_SECONDS": str(config.resize_status_check_timeout_minutes * 60),
                "RESIZE_ROLLBACK_ATTEMPTS": str(config.resize_rollback_attempts),
            },
            "finish": {
                "RESIZE_STATE_MACHINE_ARN": self.state_machine_arn,
                "SCHEDULER_ROLE_ARN": self.scheduler_role.role_arn,
                "SCHEDULE_GROUP": c.RESIZE_SCHEDULE_GROUP,
            },
        }
        return workflow_functions(
            self,
            self._base,
            handlers=c.RESIZE_FUNCTIONS,
            name_of=c.resize_function_name,
            workflow="resize",
            environment=environments.get,
        )

    def _grant(self, short: str, function: lambda_.Function) -> None:
        """Grant exactly FUNCTION_ACTIONS[short], each the narrowest way its API allows, and say why beside it."""
        actions = FUNCTION_ACTIONS[short]
        grants = RoleGrants(short, function, actions)
        allow, reasons = grants.allow, grants.reasons
        if allow(UNSCOPED_READS, ["*"]):
            reasons.append(
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    applies_to=["Resource::*"],
                    reason=f"{', '.join(sorted(actions & UNSCOPED_READS))}: read-only actions that support no "
                    "resource-level permissions, so IAM accepts only Resource '*'.",
                )
            )
        if allow(
            INSTANCE_ACTIONS,
            [ec2_arn(self, "instance")],
            {"StringEquals": {f"aws:ResourceTag/{c.TAG_MANAGED}": "true"}},
        ):
            reasons.append(
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    applies_to=[{"regex": arn_regex(self, "ec2", "instance")}],
                    reason=f"{', '.join(sorted(actions & INSTANCE_ACTIONS))} on instance/* only with the condition "
                    f"aws:ResourceTag/{c.TAG_MANAGED}=true: the instance id is the execution's input, the tag limits "
                    "it to instances ec2ops may act on.",
                )
            )
        # Every reservation ec2ops creates carries ec2ops:created-by=ec2ops from creation on (the request must carry
        # it), so the finish Lambda may cancel exactly those and no other reservation of the account.
        reservations = ec2_arn(self, "capacity-reservation")
        created_by_us = {"StringEquals": {f"aws:RequestTag/{c.TAG_CREATED_BY}": c.APP_NAME}}
        carries_our_tag = {"StringEquals": {f"aws:ResourceTag/{c.TAG_CREATED_BY}": c.APP_NAME}}
        at_creation = {"StringEquals": {"ec2:CreateAction": "CreateCapacityReservation"}}
        reserves = [
            allow(frozenset({"ec2:CreateCapacityReservation"}), [reservations], created_by_us),
            allow(frozenset({"ec2:CreateTags"}), [reservations], at_creation),
            allow(frozenset({"ec2:CancelCapacityReservation"}), [reservations], carries_our_tag),
        ]
        if any(reserves):
            reasons.append(
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    applies_to=[{"regex": arn_regex(self, "ec2", "capacity-reservation")}],
                    reason="capacity-reservation/*: the id does not exist before CreateCapacityReservation. Creating "
                    f"requires the tag {c.TAG_CREATED_BY}={c.APP_NAME} in the request, tagging is allowed only at "
                    "creation (ec2:CreateAction); cancelling only reservations that carry the tag.",
                )
            )
        if actions & LEDGER_ACTIONS:
            self._ledger.grant(function, *sorted(actions & LEDGER_ACTIONS))
            grants.granted_by_construct(actions & LEDGER_ACTIONS)
        if allow(SCHEDULE_ACTIONS, [self._revert_schedule_arn()]):
            reasons.append(
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    applies_to=[{"regex": self._revert_schedule_arn_regex()}],
                    reason=f"Revert schedules are named {c.RESIZE_SCHEDULE_PREFIX}<instance_id> (one per instance, "
                    f"the id known at run time) in the {c.RESIZE_SCHEDULE_GROUP!r} group: only those names.",
                )
            )
        allow(
            frozenset({"iam:PassRole"}),
            [self.scheduler_role.role_arn],
            {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
        )
        grants.done()

    # --- the state machine -----------------------------------------------------------------------------------
    def _build_state_machine(self) -> sfn.StateMachine:
        state_machine = standard_state_machine(
            self,
            name=c.RESIZE_STATE_MACHINE,
            definition=self._build_definition(),
            timeout=state_machine_timeout(self._config),
            config=self._config,
            base=self._base,
        )
        self._suppress_state_machine_findings(state_machine)
        return state_machine

    def _build_definition(self) -> sfn.IChainable:
        """Plan -> (nothing to do: ShapeOutput -> Done) | Lock -> Snapshot? -> InitProgress -> Drive/WaitPoll loop
        (a failed Drive runs Recover once) -> Finish -> Notify -> Outcome?. After Lock, every failure releases the
        lock before failing with its own error name."""
        plan = self._invoke(
            "Plan",
            "plan",
            {
                "request": sfn.JsonPath.entire_payload,
                "change_id": sfn.JsonPath.string_at("$$.Execution.Name"),
                "execution_id": sfn.JsonPath.string_at("$$.Execution.Id"),
            },
            "$.plan",
        )
        shape_output = sfn.Pass(
            self,
            "ShapeOutput",
            parameters={"status": sfn.JsonPath.string_at("$.plan.status"), "plan": sfn.JsonPath.object_at("$.plan")},
        )
        lock = self._lock("Lock", "acquire")
        go = sfn.Choice(self, "Go?")
        # No default: a status outside the contract fails the execution (States.NoChoiceMatched), touching nothing.
        go.when(
            sfn.Condition.or_(
                sfn.Condition.string_equals("$.plan.status", "unchanged"),
                sfn.Condition.string_equals("$.plan.status", "planned"),
            ),
            shape_output.next(sfn.Succeed(self, "Done")),
        ).when(sfn.Condition.string_equals("$.plan.status", "go"), lock)

        init_progress = self._rebuild_state("InitProgress", progress=JSON_NULL)
        snapshot = self._build_snapshot()
        snapshot.add_catch(
            self._release_and_fail("ReleaseLockAfterSnapshot", "SnapshotFailed", "$.error.Cause"),
            errors=[ALL_ERRORS],
            result_path="$.error",
        )
        no_snapshot = sfn.Pass(self, "NoSnapshot", parameters={"output.$": JSON_NULL}, result_path="$.snapshot")
        snapshot_wanted = sfn.Choice(self, "Snapshot?")
        snapshot_wanted.when(sfn.Condition.boolean_equals("$.plan.snapshot", True), snapshot.next(init_progress))
        snapshot_wanted.otherwise(no_snapshot.next(init_progress))

        drive_payload = {
            "plan": sfn.JsonPath.object_at("$.plan"),
            "progress": sfn.JsonPath.object_at("$.progress"),
            "fault": sfn.JsonPath.object_at("$.fault"),
        }
        drive = self._invoke("Drive", "drive", drive_payload, "$.progress")
        recover = self._invoke("Recover", "drive", drive_payload, "$.progress")
        recover.add_catch(
            self._release_and_fail("ReleaseLockAfterFault", "RollbackFailed", "$.fault.Cause"),
            errors=[ALL_ERRORS],
            result_path="$.fault",
        )
        drive.add_catch(recover, errors=[ALL_ERRORS], result_path="$.fault")
        wait = sfn.Wait(
            self, "WaitPoll", time=sfn.WaitTime.duration(Duration.seconds(self._config.resize_poll_seconds))
        )
        finish = self._invoke(
            "Finish",
            "finish",
            {
                "plan": sfn.JsonPath.object_at("$.plan"),
                "progress": sfn.JsonPath.object_at("$.progress"),
                "snapshot": sfn.JsonPath.object_at("$.snapshot.output"),
                "execution_id": sfn.JsonPath.string_at("$$.Execution.Id"),
            },
            "$.result",
        )
        finish.add_catch(
            self._release_and_fail("ReleaseLockAfterFinish", "ResizeFailed", "$.error.Cause"),
            errors=[ALL_ERRORS],
            result_path="$.error",
        )
        done = sfn.Choice(self, "Done?")
        done.when(sfn.Condition.boolean_equals("$.progress.done", True), finish).otherwise(wait.next(drive))
        recover.next(self._rebuild_state("ClearFault", progress="$.progress")).next(done)

        outcome = sfn.Choice(self, "Outcome?")
        outcome.when(
            sfn.Condition.string_equals("$.result.status", "resized"),
            sfn.Succeed(self, "Resized", output_path="$.result"),
        ).otherwise(sfn.Fail(self, "NotResized", error_path="$.result.error", cause_path="$.result.cause"))
        notify = tasks.SnsPublish(
            self,
            "Notify",
            topic=self._base.topic,
            message=sfn.TaskInput.from_json_path_at("$.result.message"),
            subject=c.RESIZE_NOTIFY_SUBJECT,
            result_path=sfn.JsonPath.DISCARD,
        )
        # A failed notification must not hide the outcome: the execution still ends as the resize did.
        notify.add_catch(outcome, errors=[ALL_ERRORS], result_path="$.notify_error")
        finish.next(notify).next(outcome)

        init_progress.next(drive).next(done)
        lock.next(snapshot_wanted)
        return plan.next(go)

    def _build_snapshot(self) -> tasks.StepFunctionsStartExecution:
        """The nested ec2ops-snapshot, waited for (startExecution.sync:2: its output arrives as JSON).

        Its name is `resize-<uuid>`, not derived from this execution's name: that may itself be 80 characters, the
        limit, and a suffix would push it over. Its reason is the plan's `snapshot_reason` (this execution's change
        id and reason, cut to the snapshot workflow's 256-character limit)."""
        return tasks.StepFunctionsStartExecution(
            self,
            "Snapshot",
            state_machine=self._snapshot_state_machine,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            input=sfn.TaskInput.from_object(
                {
                    "instance_id": sfn.JsonPath.string_at("$.plan.instance_id"),
                    "reason": sfn.JsonPath.string_at("$.plan.snapshot_reason"),
                }
            ),
            name=sfn.JsonPath.format("resize-{}", sfn.JsonPath.uuid()),
            result_selector={"output": sfn.JsonPath.object_at("$.Output")},
            result_path="$.snapshot",
        )

    def _rebuild_state(self, state_id: str, *, progress: str) -> sfn.Pass:
        """The state from here on: plan, snapshot, progress and a null fault (a Pass result cannot hold a null, so
        the state is rebuilt; the raw request is not needed after Plan)."""
        return sfn.Pass(
            self,
            state_id,
            parameters={
                "plan.$": "$.plan",
                "snapshot.$": "$.snapshot",
                "progress.$": progress,
                "fault.$": JSON_NULL,
            },
        )

    def _lock(self, state_id: str, action: str) -> tasks.LambdaInvoke:
        return self._invoke(
            state_id,
            "lock",
            {
                "action": action,
                "instance_id": sfn.JsonPath.string_at("$.plan.instance_id"),
                "execution_id": sfn.JsonPath.string_at("$$.Execution.Id"),
                "workflow": c.RESIZE_LOCK_WORKFLOW,
            },
            sfn.JsonPath.DISCARD,
        )

    def _release_and_fail(self, state_id: str, error: str, cause_path: str) -> sfn.IChainable:
        """Release the lock, then fail with `error`; a failed release still fails with `error` (the lock's TTL ends
        it, and the release error stays in the execution history)."""
        fail = sfn.Fail(self, error, error=error, cause_path=cause_path)
        release = self._lock(state_id, "release")
        release.add_catch(fail, errors=[ALL_ERRORS], result_path="$.release_error")
        return release.next(fail)

    def _invoke(self, state_id: str, short: str, payload: Mapping[str, object], result_path: str) -> tasks.LambdaInvoke:
        return invoke_lambda(self, state_id, self.functions[short], payload, result_path)

    # --- helpers ---------------------------------------------------------------------------------------------
    def _revert_schedule_arn(self) -> str:
        return self._stack.format_arn(
            service="scheduler",
            resource="schedule",
            resource_name=f"{c.RESIZE_SCHEDULE_GROUP}/{c.RESIZE_SCHEDULE_PREFIX}*",
        )

    def _revert_schedule_arn_regex(self) -> str:
        region = self._stack.region.replace("-", "\\-")
        return (
            rf"/^Resource::arn:(aws|<AWS::Partition>):scheduler:{region}:<AWS::AccountId>:schedule\/"
            rf"{c.RESIZE_SCHEDULE_GROUP}\/{c.RESIZE_SCHEDULE_PREFIX}\*$/g"
        )

    def _suppress_state_machine_findings(self, state_machine: sfn.StateMachine) -> None:
        suppress_state_machine_findings(
            state_machine,
            self.functions.values(),
            self._base,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    applies_to=[{"regex": self._snapshot_executions_regex()}],
                    reason="Added by CDK's StepFunctionsStartExecution (.sync:2): states:DescribeExecution and "
                    f"states:StopExecution on the executions of {c.SNAPSHOT_STATE_MACHINE} only; their names are "
                    "made at run time.",
                )
            ],
        )

    def _snapshot_executions_regex(self) -> str:
        region = self._stack.region.replace("-", "\\-")
        return (
            rf"/^Resource::arn:(aws|<AWS::Partition>):states:{region}:<AWS::AccountId>:execution:"
            rf"\{{.*{self._stack.get_logical_id(cast(CfnElement, self._snapshot_state_machine.node.default_child))}"
            r".*\}\*$/g"
        )
