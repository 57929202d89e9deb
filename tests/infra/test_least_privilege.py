"""Least privilege, read statically from the template: each role gets what its tasks need, and nothing broad."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stacks import constants as c
from stacks.orchestration import LOG_ACTIONS
from stacks.workflows import resize, snapshot, spot_failover, training_run
from tests.infra import iam_helpers as iam
from tests.infra.synth import Synthesized

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]

# Each workflow's declared Lambda permissions and how its functions are named.
WORKFLOWS: dict[str, tuple[dict[str, frozenset[str]], Callable[[str], str]]] = {
    "snapshot": (snapshot.FUNCTION_ACTIONS, c.snapshot_function_name),
    "resize": (resize.FUNCTION_ACTIONS, c.resize_function_name),
    "spot-failover": (spot_failover.FUNCTION_ACTIONS, c.spot_function_name),
    "training-run": (training_run.FUNCTION_ACTIONS, c.training_function_name),
}
# Mutating EC2 actions allowed only together with a tag condition, whatever their resource.
TAG_CONDITIONED = {"ec2:DeleteSnapshot", "ec2:CreateCapacityReservation", "ec2:CancelCapacityReservation"}


def test_helpers_map_task_resources_to_the_actions_they_need() -> None:
    assert iam.required_actions("arn:<AWS::Partition>:states:::aws-sdk:ec2:createSnapshots") == {"ec2:CreateSnapshots"}
    assert iam.required_actions("arn:aws:states:::aws-sdk:sfn:startExecution") == {"states:StartExecution"}
    assert iam.required_actions("arn:aws:states:::lambda:invoke") == {"lambda:InvokeFunction"}
    assert iam.required_actions("arn:aws:states:::sns:publish") == {"sns:Publish"}
    assert "states:StartExecution" in iam.required_actions("arn:aws:states:::states:startExecution.sync:2")
    assert iam.required_actions("<Fn.Arn>", {"Fn"}) == {"lambda:InvokeFunction"}
    with pytest.raises(KeyError):
        iam.required_actions("arn:aws:states:::batch:submitJob.sync")


def test_every_state_machine_role_grants_what_its_tasks_need(every_app: Synthesized) -> None:
    template = every_app.template
    functions = set(every_app.resources("AWS::Lambda::Function"))
    machines = iam.state_machines(template)
    assert machines, "no state machine in the template"
    for logical, machine in machines.items():
        # Given the state machine's own role and its definition
        statements = iam.role_statements(template, iam.role_of(machine, "RoleArn"))
        tasks = iam.task_resources(iam.definition(machine))
        assert tasks
        for state, resource in tasks.items():
            # Then every action each task needs is granted
            missing = [a for a in iam.required_actions(resource, functions) if not iam.is_granted(a, statements)]
            assert missing == [], f"{logical}.{state} ({resource}) needs {missing}"
            # and a Lambda task may invoke that very function
            target = iam.lambda_target(resource, functions)
            if target:
                assert any(
                    s.allows("lambda:InvokeFunction") and f"<{target}.Arn>" in s.resources for s in statements
                ), f"{logical}.{state}: no lambda:InvokeFunction on {target}"


def test_no_policy_allows_every_action_or_mutates_ec2_on_every_resource(every_app: Synthesized) -> None:
    statements = iam.all_statements(every_app.template)
    assert statements
    problems = [problem for statement in statements for problem in iam.overly_broad(statement)]
    assert problems == []


def test_mutating_ec2_actions_are_scoped_to_ec2ops_resources(default_app: Synthesized) -> None:
    # Every ec2 mutation is on typed ARNs, and instances and deletions only with their ec2ops tag condition.
    for statement in iam.all_statements(default_app.template):
        mutating = [a for a in statement.actions if a.lower().startswith("ec2:") and not iam.is_read_only(a)]
        if statement.effect != "Allow" or not mutating:
            continue
        assert "*" not in statement.resources, statement
        if any(":instance/" in r for r in statement.resources) or TAG_CONDITIONED & set(mutating):
            assert statement.condition, f"{statement.source}: {mutating} on {statement.resources} without condition"


@pytest.mark.parametrize("workflow", list(WORKFLOWS))
def test_each_lambda_role_grants_exactly_the_declared_actions(default_app: Synthesized, workflow: str) -> None:
    declared_actions, function_name = WORKFLOWS[workflow]
    functions = {
        resource["Properties"]["FunctionName"]: resource
        for resource in default_app.resources("AWS::Lambda::Function").values()
    }
    for short, declared in declared_actions.items():
        function = functions[function_name(short)]
        granted = iam.allowed_actions(iam.role_statements(default_app.template, iam.role_of(function)))
        assert granted == declared | LOG_ACTIONS, (
            f"{function_name(short)}: extra {granted - declared - LOG_ACTIONS}, missing {declared - granted}"
        )


def test_no_two_functions_share_a_role(default_app: Synthesized) -> None:
    functions = default_app.resources("AWS::Lambda::Function").values()
    assert len(functions) == sum(len(actions) for actions, _ in WORKFLOWS.values())
    assert len({iam.role_of(function) for function in functions}) == len(functions)


def test_the_resize_state_machine_may_invoke_its_functions_start_the_snapshot_and_publish(
    default_app: Synthesized,
) -> None:
    template = default_app.template
    machines = {r["Properties"]["StateMachineName"]: (lid, r) for lid, r in iam.state_machines(template).items()}
    snapshot_machine, _ = machines[c.SNAPSHOT_STATE_MACHINE]
    _, machine = machines[c.RESIZE_STATE_MACHINE]
    statements = iam.role_statements(template, iam.role_of(machine, "RoleArn"))
    resources_of = {
        action: {r for s in statements if s.allows(action) for r in s.resources}
        for action in iam.allowed_actions(statements)
    }
    # Given the resize functions, Then it may invoke exactly those (and their versions)
    resize_functions = [
        logical
        for logical, r in default_app.resources("AWS::Lambda::Function").items()
        if r["Properties"]["FunctionName"].startswith(f"{c.RESIZE_STATE_MACHINE}-")
    ]
    assert len(resize_functions) == len(c.RESIZE_FUNCTIONS)
    assert resources_of["lambda:InvokeFunction"] == {
        arn for logical in resize_functions for arn in (f"<{logical}.Arn>", f"<{logical}.Arn>:*")
    }
    # and start only ec2ops-snapshot, watching and stopping only its executions (startExecution.sync:2)
    assert resources_of["states:StartExecution"] == {f"<{snapshot_machine}>"}
    for action in ("states:DescribeExecution", "states:StopExecution"):
        (executions,) = resources_of[action]
        assert ":execution:" in executions and snapshot_machine in executions, executions
    for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
        (rule,) = resources_of[action]
        assert rule.endswith(":rule/StepFunctionsGetEventsForStepFunctionsExecutionRule")
    # and publish only to the topic
    (topic,) = default_app.resources("AWS::SNS::Topic")
    assert resources_of["sns:Publish"] == {f"<{topic}>"}
    # and nothing else
    sdk_free = {"lambda:InvokeFunction", "sns:Publish"} | {
        a for a in iam.allowed_actions(statements) if a.startswith(("states:", "events:", "logs:", "xray:"))
    }
    assert iam.allowed_actions(statements) == sdk_free


def _function_statements(app: Synthesized, name: str) -> list[iam.Statement]:
    (function,) = [
        r for r in app.resources("AWS::Lambda::Function").values() if r["Properties"]["FunctionName"] == name
    ]
    return iam.role_statements(app.template, iam.role_of(function))


def test_only_resize_finish_and_the_launches_pass_roles_each_to_its_one_service(default_app: Synthesized) -> None:
    passing = [s for s in iam.all_statements(default_app.template) if s.allows("iam:PassRole")]
    assert len(passing) == 3
    # resize finish: only the scheduler role, only to EventBridge Scheduler
    (finish,) = [
        s for s in _function_statements(default_app, c.resize_function_name("finish")) if s.allows("iam:PassRole")
    ]
    (role,) = finish.resources
    trust = default_app.template["Resources"][role.strip("<>").removesuffix(".Arn")]["Properties"]
    assert trust["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert finish.condition == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}
    # spot launch: the interrupted instance's profile role, only to EC2 and only when tagged managed
    (launch,) = [
        s for s in _function_statements(default_app, c.spot_function_name("launch")) if s.allows("iam:PassRole")
    ]
    assert launch.condition == {
        "StringEquals": {"iam:PassedToService": "ec2.amazonaws.com", f"iam:ResourceTag/{c.TAG_MANAGED}": "true"}
    }
    # training launch: only the training instance role, only to EC2
    (training,) = [
        s for s in _function_statements(default_app, c.training_function_name("launch")) if s.allows("iam:PassRole")
    ]
    (role,) = training.resources
    trust = default_app.template["Resources"][role.strip("<>").removesuffix(".Arn")]["Properties"]
    assert trust["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert training.condition == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}


def test_spot_launch_creates_only_managed_instances_and_terminates_only_its_replacements(
    default_app: Synthesized,
) -> None:
    statements = _function_statements(default_app, c.spot_function_name("launch"))
    instances = "arn:aws:ec2:us-east-1:<AWS::AccountId>:instance/*"
    (run_instance,) = [s for s in statements if s.allows("ec2:RunInstances") and instances in s.resources]
    assert run_instance.condition == {"StringEquals": {f"aws:RequestTag/{c.TAG_MANAGED}": "true"}}
    (tagging,) = [s for s in statements if s.allows("ec2:CreateTags")]
    assert tagging.condition == {"StringEquals": {"ec2:CreateAction": "RunInstances"}}
    (terminate,) = [s for s in statements if s.allows("ec2:TerminateInstances")]
    assert terminate.resources == (instances,)
    assert terminate.condition == {
        "StringEquals": {f"aws:ResourceTag/{c.TAG_MANAGED}": "true"},
        "Null": {f"aws:ResourceTag/{c.TAG_REPLACES}": "false"},
    }
    # and promote tags and moves addresses only onto managed instances
    promote = _function_statements(default_app, c.spot_function_name("promote"))
    for statement in promote:
        if instances in statement.resources and (
            statement.allows("ec2:CreateTags") or statement.allows("ec2:AssociateAddress")
        ):
            assert statement.condition == {"StringEquals": {f"aws:ResourceTag/{c.TAG_MANAGED}": "true"}}


def test_capacity_reservations_are_created_tagged_and_only_those_cancelled(default_app: Synthesized) -> None:
    statements = iam.all_statements(default_app.template)
    tag = f"{c.TAG_CREATED_BY}"
    expected = {
        "ec2:CreateCapacityReservation": {"StringEquals": {f"aws:RequestTag/{tag}": c.APP_NAME}},
        "ec2:CreateTags": {"StringEquals": {"ec2:CreateAction": "CreateCapacityReservation"}},
        "ec2:CancelCapacityReservation": {"StringEquals": {f"aws:ResourceTag/{tag}": c.APP_NAME}},
    }
    # the reservation is open: ec2ops never points an instance at it, so no grant on reservations for that
    assert not [
        s
        for s in statements
        if s.allows("ec2:ModifyInstanceCapacityReservationAttributes")
        and any("capacity-reservation" in r for r in s.resources)
    ]
    for action, condition in expected.items():
        granting = [s for s in statements if s.allows(action) and any("capacity-reservation" in r for r in s.resources)]
        assert granting, action
        for statement in granting:
            assert statement.resources == ("arn:aws:ec2:us-east-1:<AWS::AccountId>:capacity-reservation/*",)
            assert statement.condition == condition, action


def test_a_lambda_writes_only_to_its_own_log_group(default_app: Synthesized) -> None:
    for resource in default_app.resources("AWS::Lambda::Function").values():
        own_group = resource["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        for statement in iam.role_statements(default_app.template, iam.role_of(resource)):
            if any(action.startswith("logs:") for action in statement.actions):
                assert statement.resources == (f"<{own_group}.Arn>",)


def test_lambda_roles_have_no_managed_policies(default_app: Synthesized) -> None:
    for resource in default_app.resources("AWS::Lambda::Function").values():
        role = default_app.template["Resources"][iam.role_of(resource)]
        assert role["Properties"].get("ManagedPolicyArns", []) == []
