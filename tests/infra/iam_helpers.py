"""Reading IAM out of a synthesized template: state machine definitions, the actions their tasks need, and grants.

Tokens (Ref, Fn::GetAtt, ...) are replaced by readable placeholders such as `<MyFunction.Arn>` or
`<AWS::Partition>`, so a definition string parses as plain JSON and an ARN reads like cdk-nag prints it.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# A nested execution that the parent waits for: start it, watch it, stop it, and the managed rule that reports back.
_START_SYNC = frozenset(
    {
        "states:StartExecution",
        "states:DescribeExecution",
        "states:StopExecution",
        "events:PutTargets",
        "events:PutRule",
        "events:DescribeRule",
    }
)
# Step Functions service integrations (optimized, not aws-sdk) -> the IAM actions the execution role needs.
_OPTIMIZED: dict[str, frozenset[str]] = {
    "lambda:invoke": frozenset({"lambda:InvokeFunction"}),
    "sns:publish": frozenset({"sns:Publish"}),
    "sqs:sendMessage": frozenset({"sqs:SendMessage"}),
    "events:putEvents": frozenset({"events:PutEvents"}),
    "dynamodb:getItem": frozenset({"dynamodb:GetItem"}),
    "dynamodb:putItem": frozenset({"dynamodb:PutItem"}),
    "dynamodb:updateItem": frozenset({"dynamodb:UpdateItem"}),
    "dynamodb:deleteItem": frozenset({"dynamodb:DeleteItem"}),
    "states:startExecution": frozenset({"states:StartExecution"}),
    "states:startExecution.sync": _START_SYNC,
    "states:startExecution.sync:2": _START_SYNC,
    "states:startExecution.waitForTaskToken": frozenset({"states:StartExecution"}),
}
# aws-sdk integration service names whose IAM prefix differs.
_SDK_IAM_PREFIX = {"sfn": "states", "cloudwatchlogs": "logs", "eventbridge": "events"}
READ_ONLY_PREFIXES = ("Describe", "Get", "List")
_PARTITION = r"(?:<AWS::Partition>|aws[a-z-]*)"


@dataclass(frozen=True)
class Statement:
    """One Allow/Deny statement, its actions and resources as lists of placeholder strings."""

    source: str  # logical id of the policy or role it came from
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: dict[str, Any] | None
    principal: str | None = None  # resource policies only, as placeholder text

    def allows(self, action: str) -> bool:
        return self.effect == "Allow" and any(
            fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in self.actions
        )


def placeholder(value: Any) -> str:
    """A CloudFormation value as text: intrinsics become `<Logical.Attr>`, `<Logical>` or `<AWS::Region>`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return f"<{arg}>"
        if key == "Fn::GetAtt":
            logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return f"<{logical}.{attribute}>"
        if key == "Fn::Join":
            separator, parts = arg
            return str(separator).join(placeholder(part) for part in parts)
        if key == "Fn::Sub":
            text = arg if isinstance(arg, str) else arg[0]
            return re.sub(r"\$\{([^}]+)\}", r"<\1>", text)
    return f"<{json.dumps(value, sort_keys=True)}>"


# --- state machines --------------------------------------------------------------------------------------------
def state_machines(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical: resource
        for logical, resource in template["Resources"].items()
        if resource["Type"] == "AWS::StepFunctions::StateMachine"
    }


def definition(resource: dict[str, Any]) -> dict[str, Any]:
    """The state machine's definition as JSON, with tokens as placeholders (and substitutions applied)."""
    properties = resource["Properties"]
    if "Definition" in properties:
        return properties["Definition"]  # type: ignore[no-any-return]
    raw = properties["DefinitionString"]
    if isinstance(raw, dict) and "Fn::Join" in raw:
        separator, parts = raw["Fn::Join"]
        text = separator.join(part if isinstance(part, str) else placeholder(part) for part in parts)
    else:
        text = placeholder(raw)
    for key, value in properties.get("DefinitionSubstitutions", {}).items():
        text = text.replace("${" + key + "}", placeholder(value))
    return json.loads(text)  # type: ignore[no-any-return]


def iter_states(definition_json: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, also inside Parallel branches and Map processors."""
    for name, state in definition_json.get("States", {}).items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from iter_states(branch)
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from iter_states(state[key])


def task_resources(definition_json: dict[str, Any]) -> dict[str, str]:
    """State name -> Resource of every Task state."""
    return {name: state["Resource"] for name, state in iter_states(definition_json) if state.get("Type") == "Task"}


def required_actions(resource: str, lambda_logical_ids: set[str] | frozenset[str] = frozenset()) -> frozenset[str]:
    """The IAM actions a Task's Resource needs from the execution role; unknown integrations fail loudly."""
    match = re.fullmatch(rf"arn:{_PARTITION}:states:::(.+)", resource)
    if match:
        integration = match.group(1)
        sdk = re.fullmatch(r"aws-sdk:([a-z0-9]+):([A-Za-z0-9]+)(\.waitForTaskToken)?", integration)
        if sdk:
            service, operation = sdk.group(1), sdk.group(2)
            return frozenset({f"{_SDK_IAM_PREFIX.get(service, service)}:{operation[0].upper()}{operation[1:]}"})
        base = integration.removesuffix(".waitForTaskToken") if integration.startswith("lambda:") else integration
        if base in _OPTIMIZED:
            return _OPTIMIZED[base]
        raise KeyError(f"no IAM mapping for the integration {resource!r}: add it to iam_helpers._OPTIMIZED")
    is_function_arn = re.fullmatch(rf"arn:{_PARTITION}:lambda:[^:]*:[^:]*:function:.+", resource)
    if is_function_arn or lambda_target(resource, lambda_logical_ids):
        return frozenset({"lambda:InvokeFunction"})
    raise KeyError(f"no IAM mapping for the task resource {resource!r}")


def lambda_target(resource: str, lambda_logical_ids: set[str] | frozenset[str]) -> str | None:
    """`<MyFunction.Arn>` (a function of this template) -> `MyFunction`."""
    match = re.fullmatch(r"<([A-Za-z0-9]+)\.Arn>", resource)
    return match.group(1) if match and match.group(1) in lambda_logical_ids else None


# --- policies ---------------------------------------------------------------------------------------------------
def _statements(source: str, document: dict[str, Any]) -> list[Statement]:
    statements = []
    for raw in document.get("Statement", []):
        actions = raw.get("Action", [])
        resources = raw.get("Resource", [])
        resources = resources if isinstance(resources, list) else [resources]
        statements.append(
            Statement(
                source=source,
                effect=raw["Effect"],
                actions=tuple([actions] if isinstance(actions, str) else actions),
                resources=tuple(placeholder(r) for r in resources),
                condition=raw.get("Condition"),
                principal=_principal(raw["Principal"]) if "Principal" in raw else None,
            )
        )
    return statements


def _principal(raw: Any) -> str:
    """`{"AWS": <arn>}` -> `AWS=<arn>` (several principals joined by `,`); `"*"` stays `*`."""
    if not isinstance(raw, dict):
        return placeholder(raw)
    return ",".join(
        f"{kind}={placeholder(value)}"
        for kind, values in raw.items()
        for value in (values if isinstance(values, list) else [values])
    )


def all_statements(template: dict[str, Any]) -> list[Statement]:
    """Every statement of every identity and resource policy in the template."""
    found: list[Statement] = []
    for logical, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                found += _statements(logical, policy["PolicyDocument"])
        elif "PolicyDocument" in properties:  # identity policies, and bucket, topic, queue policies
            found += _statements(logical, properties["PolicyDocument"])
        elif kind == "AWS::KMS::Key":
            found += _statements(logical, properties["KeyPolicy"])
    return found


def role_statements(template: dict[str, Any], role_logical_id: str) -> list[Statement]:
    """The Allow and Deny statements attached to one role (inline, AWS::IAM::Policy, customer managed policies)."""
    resources = template["Resources"]
    found: list[Statement] = []
    for policy in resources[role_logical_id].get("Properties", {}).get("Policies", []):
        found += _statements(role_logical_id, policy["PolicyDocument"])
    for logical, resource in resources.items():
        if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        if {"Ref": role_logical_id} in resource["Properties"].get("Roles", []):
            found += _statements(logical, resource["Properties"]["PolicyDocument"])
    return found


def role_of(resource: dict[str, Any], key: str = "Role") -> str:
    """The logical id of the role a function (`Role`) or state machine (`RoleArn`) runs as."""
    reference = resource["Properties"][key]
    assert isinstance(reference, dict) and "Fn::GetAtt" in reference, f"{key} is not a role of this template"
    return str(reference["Fn::GetAtt"][0])


def allowed_actions(statements: list[Statement]) -> set[str]:
    return {action for s in statements if s.effect == "Allow" for action in s.actions}


def is_granted(action: str, statements: list[Statement]) -> bool:
    return any(statement.allows(action) for statement in statements)


def is_read_only(action: str) -> bool:
    _, _, operation = action.partition(":")
    return operation.startswith(READ_ONLY_PREFIXES)


def overly_broad(statement: Statement) -> list[str]:
    """Why an Allow statement is too broad: Action "*" or "<service>:*", or a mutating EC2 action on "*"
    without a Condition."""
    if statement.effect != "Allow" or is_key_admin_delegation(statement):
        return []
    problems = [f"{statement.source}: Action {a!r}" for a in statement.actions if a == "*" or a.endswith(":*")]
    if "*" in statement.resources and not statement.condition:
        problems += [
            f"{statement.source}: mutating {a!r} on Resource '*' without a Condition"
            for a in statement.actions
            if a.lower().startswith("ec2:") and not is_read_only(a)
        ]
    return problems


def is_key_admin_delegation(statement: Statement) -> bool:
    """The default KMS key policy statement: `kms:*` for the account root, which hands the key's access over to
    IAM policies (without it the key cannot be managed at all)."""
    return (
        statement.actions == ("kms:*",)
        and statement.principal is not None
        and re.fullmatch(rf"AWS=arn:{_PARTITION}:iam::<AWS::AccountId>:root", statement.principal) is not None
    )
