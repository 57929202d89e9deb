"""Least privilege, read statically from the template: each role gets what its tasks need, and nothing broad."""

from __future__ import annotations

import pytest

from stacks import constants as c
from stacks.orchestration import LOG_ACTIONS
from stacks.workflows.snapshot import FUNCTION_ACTIONS
from tests.infra import iam_helpers as iam
from tests.infra.synth import Synthesized

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]


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
        if any(":instance/" in r for r in statement.resources) or "ec2:DeleteSnapshot" in mutating:
            assert statement.condition, f"{statement.source}: {mutating} on {statement.resources} without condition"


def test_each_lambda_role_grants_exactly_the_declared_actions(default_app: Synthesized) -> None:
    functions = {
        resource["Properties"]["FunctionName"]: resource
        for resource in default_app.resources("AWS::Lambda::Function").values()
    }
    roles = set()
    for short, declared in FUNCTION_ACTIONS.items():
        function = functions[c.snapshot_function_name(short)]
        role = iam.role_of(function)
        roles.add(role)
        granted = iam.allowed_actions(iam.role_statements(default_app.template, role))
        assert granted == declared | LOG_ACTIONS, f"{short}: extra {granted - declared - LOG_ACTIONS}"
    # and no two functions share a role
    assert len(roles) == len(FUNCTION_ACTIONS)


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
