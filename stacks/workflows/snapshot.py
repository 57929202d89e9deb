"""ec2ops-snapshot: crash-consistent multi-volume snapshots of a managed instance, with retention (docs/snapshot.md)."""

from __future__ import annotations

from collections.abc import Callable

from aws_cdk import Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from stacks import constants as c
from stacks.config import Ec2OpsConfig
from stacks.orchestration import Orchestration
from stacks.workflows.common import (
    ALL_ERRORS,
    KMS_DATA_KEY_SUPPRESSION,
    invoke_lambda,
    standard_state_machine,
    suppress_state_machine_findings,
    workflow_functions,
)

# What each Lambda's own role may do beyond writing its own logs: the one place to change it (the tests compare).
FUNCTION_ACTIONS: dict[str, frozenset[str]] = {
    "plan": frozenset({"ec2:DescribeInstances", "ec2:DescribeVolumes"}),
    "progress": frozenset({"ec2:DescribeSnapshots"}),
    "prune": frozenset({"ec2:DescribeSnapshots", "ec2:DescribeImages", "ec2:DeleteSnapshot"}),
    "record": frozenset({"dynamodb:PutItem"}),
    "record-failure": frozenset({"ec2:DescribeSnapshots", "ec2:DeleteSnapshot", "dynamodb:PutItem", "sns:Publish"}),
}


class SnapshotWorkflow(Construct):
    """The Standard state machine `ec2ops-snapshot` and its five Lambdas, each with its own least-privilege role."""

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
        self._region = Stack.of(self).region
        self.functions = self._build_functions()
        for short, function in self.functions.items():
            self._grant(short, function)
        self.state_machine = self._build_state_machine()

    # --- Lambdas ---------------------------------------------------------------------------------------------
    def _build_functions(self) -> dict[str, lambda_.Function]:
        environment = {
            "SNAPSHOT_RETAIN_COUNT": str(self._config.snapshot_retain_count),
            "SNAPSHOT_RETAIN_DAYS": str(self._config.snapshot_retain_days),
            "SNAPSHOT_TIMEOUT_MINUTES": str(self._config.snapshot_timeout_minutes),
        }
        return workflow_functions(
            self,
            self._base,
            handlers=c.SNAPSHOT_FUNCTIONS,
            name_of=c.snapshot_function_name,
            workflow="snapshot",
            environment=environment,
        )

    def _grant(self, short: str, function: lambda_.Function) -> None:
        """Grant exactly FUNCTION_ACTIONS[short], each the narrowest way its API allows."""
        actions = FUNCTION_ACTIONS[short]
        granters: dict[str, Callable[[], object]] = {
            "ec2:DeleteSnapshot": lambda: function.add_to_role_policy(self._delete_own_snapshots()),
            "dynamodb:PutItem": lambda: self._ledger.grant(function, "dynamodb:PutItem"),
            "sns:Publish": lambda: self._base.topic.grant_publish(function),
        }
        describe = sorted(action for action in actions if action.startswith("ec2:Describe"))
        if describe:
            # Describe* has no resource-level permissions: "*" is the only resource IAM accepts.
            function.add_to_role_policy(iam.PolicyStatement(actions=describe, resources=["*"]))
        for action in sorted(actions - set(describe)):
            granters[action]()
        reasons = []
        if describe:
            reasons.append(
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    applies_to=["Resource::*"],
                    reason=f"{', '.join(describe)}: EC2 Describe* actions support no resource-level permissions, "
                    "so IAM accepts only Resource '*'; they are read-only.",
                )
            )
        if "ec2:DeleteSnapshot" in actions:
            reasons.append(
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    applies_to=[{"regex": self._snapshot_arn_regex()}],
                    reason="ec2:DeleteSnapshot on snapshot/* only with the condition aws:ResourceTag/"
                    f"{c.TAG_CREATED_BY}={c.APP_NAME}: the ids are only known at run time, the tag limits it "
                    "to snapshots ec2ops created.",
                )
            )
        if self._base.key is not None and "sns:Publish" in actions:
            reasons.append(KMS_DATA_KEY_SUPPRESSION)
        if reasons and function.role is not None:
            NagSuppressions.add_resource_suppressions(function.role, reasons, apply_to_children=True)

    def _delete_own_snapshots(self) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            actions=["ec2:DeleteSnapshot"],
            resources=[self._ec2_arn("snapshot", account=False)],
            conditions={"StringEquals": {f"aws:ResourceTag/{c.TAG_CREATED_BY}": c.APP_NAME}},
        )

    # --- the state machine -----------------------------------------------------------------------------------
    def _build_state_machine(self) -> sfn.StateMachine:
        state_machine = standard_state_machine(
            self,
            name=c.SNAPSHOT_STATE_MACHINE,
            definition=self._build_definition(),
            timeout=Duration.minutes(self._config.snapshot_timeout_minutes + c.STATE_MACHINE_TIMEOUT_MARGIN_MINUTES),
            config=self._config,
            base=self._base,
        )
        self._suppress_state_machine_findings(state_machine)
        return state_machine

    def _build_definition(self) -> sfn.IChainable:
        """Plan -> CreateSnapshots -> Wait/Check loop -> Prune -> Record -> Notify -> Done; after Plan, any failure
        runs RecordFailure (delete the incomplete set, record, notify) and fails with the error name and cause."""
        record_failure = self._build_record_failure()
        plan = self._invoke(
            "Plan",
            "plan",
            {"request": sfn.JsonPath.entire_payload, "change_id": sfn.JsonPath.string_at("$$.Execution.Name")},
            "$.plan",
        )
        create = self._build_create_snapshots()
        wait = sfn.Wait(
            self,
            "WaitForSnapshots",
            time=sfn.WaitTime.duration(Duration.seconds(self._config.snapshot_poll_seconds)),
        )
        check = self._invoke(
            "CheckSnapshots",
            "progress",
            {"plan": sfn.JsonPath.object_at("$.plan"), "snapshot_ids": sfn.JsonPath.list_at("$.created.snapshot_ids")},
            "$.progress",
        )
        prune = self._invoke("Prune", "prune", {"plan": sfn.JsonPath.object_at("$.plan")}, "$.pruned")
        record = self._invoke(
            "Record",
            "record",
            {
                "plan": sfn.JsonPath.object_at("$.plan"),
                "snapshot_ids": sfn.JsonPath.list_at("$.created.snapshot_ids"),
                "progress": sfn.JsonPath.object_at("$.progress"),
                "pruned": sfn.JsonPath.object_at("$.pruned"),
                "execution_id": sfn.JsonPath.string_at("$$.Execution.Id"),
            },
            "$.result",
        )
        notify = tasks.SnsPublish(
            self,
            "Notify",
            topic=self._base.topic,
            message=sfn.TaskInput.from_json_path_at("$.result.message"),
            subject=c.SNAPSHOT_COMPLETED_SUBJECT,
            result_path=sfn.JsonPath.DISCARD,
        )
        done = sfn.Succeed(self, "Done", output_path="$.result")
        for task in (create, check, prune, record, notify):
            task.add_catch(record_failure, errors=[ALL_ERRORS], result_path="$.error")
        completed = sfn.Choice(self, "SnapshotsCompleted?")
        completed.when(sfn.Condition.string_equals("$.progress.state", "completed"), prune).otherwise(wait)
        prune.next(record).next(notify).next(done)
        return plan.next(create).next(wait).next(check).next(completed)

    def _build_create_snapshots(self) -> tasks.CallAwsService:
        """One crash-consistent set, tagged at creation; allowed only for instances tagged ec2ops:managed=true.

        No CopyTagsFromSource: a volume's own `Name` or `ec2ops:*` tags would collide with the plan's tags."""
        return tasks.CallAwsService(
            self,
            "CreateSnapshots",
            service="ec2",
            action="createSnapshots",
            iam_action="ec2:CreateSnapshots",
            parameters={
                "InstanceSpecification": {
                    "InstanceId.$": "$.plan.instance_id",
                    "ExcludeBootVolume.$": "$.plan.exclude_boot",
                },
                "Description.$": "$.plan.description",
                "TagSpecifications": [{"ResourceType": "snapshot", "Tags.$": "$.plan.tags"}],
            },
            result_selector={"snapshot_ids.$": "$.Snapshots[*].SnapshotId"},
            result_path="$.created",
            # The instance statement (with its tag condition) is below; volumes and new snapshots need no tag.
            iam_resources=[self._ec2_arn("volume"), self._ec2_arn("snapshot", account=False)],
            additional_iam_statements=[
                iam.PolicyStatement(
                    actions=["ec2:CreateSnapshots"],
                    resources=[self._ec2_arn("instance")],
                    conditions={"StringEquals": {f"aws:ResourceTag/{c.TAG_MANAGED}": "true"}},
                ),
                iam.PolicyStatement(
                    actions=["ec2:CreateTags"],
                    resources=[self._ec2_arn("snapshot", account=False)],
                    conditions={"StringEquals": {"ec2:CreateAction": "CreateSnapshots"}},
                ),
            ],
        )

    def _build_record_failure(self) -> sfn.IChainable:
        record_failure = self._invoke(
            "RecordFailure",
            "record-failure",
            {"state": sfn.JsonPath.entire_payload, "execution_id": sfn.JsonPath.string_at("$$.Execution.Id")},
            "$.failure",
        )
        return record_failure.next(
            sfn.Fail(self, "SnapshotFailedState", error_path="$.failure.error", cause_path="$.failure.cause")
        )

    def _invoke(self, state_id: str, short: str, payload: dict[str, object], result_path: str) -> tasks.LambdaInvoke:
        return invoke_lambda(self, state_id, self.functions[short], payload, result_path)

    # --- helpers ---------------------------------------------------------------------------------------------
    def _ec2_arn(self, resource: str, *, account: bool = True) -> str:
        """`arn:<partition>:ec2:<region>:<account>:<resource>/*`; snapshots carry no account in their ARN."""
        return Stack.of(self).format_arn(
            service="ec2", resource=resource, resource_name="*", account=None if account else ""
        )

    def _snapshot_arn_regex(self) -> str:
        region = self._region.replace("-", "\\-")
        return rf"/^Resource::arn:(aws|<AWS::Partition>):ec2:{region}::snapshot\/\*$/g"

    def _suppress_state_machine_findings(self, state_machine: sfn.StateMachine) -> None:
        region = self._region.replace("-", "\\-")
        suppress_state_machine_findings(
            state_machine,
            self.functions.values(),
            self._base,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    applies_to=[
                        {
                            "regex": rf"/^Resource::arn:(aws|<AWS::Partition>):ec2:{region}:(<AWS::AccountId>)?:"
                            r"(instance|volume|snapshot)\/\*$/g"
                        }
                    ],
                    reason="ec2:CreateSnapshots/CreateTags: the instance id is input and the snapshot ids do not "
                    f"exist yet. Instances are limited by the condition aws:ResourceTag/{c.TAG_MANAGED}=true, "
                    "CreateTags by ec2:CreateAction=CreateSnapshots; volumes are reachable only through such an "
                    "instance.",
                )
            ],
        )
