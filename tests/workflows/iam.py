"""What the synthesized template grants each role, to compare with the calls the app really made."""

from __future__ import annotations

import fnmatch
from typing import Any

# botocore event service id -> IAM action prefix, where they differ
_IAM_PREFIX = {"sfn": "states", "cloudwatch": "cloudwatch", "logs": "logs"}
# API operations authorized by an IAM action of another name.
_IAM_ACTION = {
    "s3:HeadObject": "s3:GetObject",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
    "s3:CopyObject": "s3:PutObject",
}


def granted_actions(template: dict[str, Any], role_logical_id: str) -> list[tuple[str, Any]]:
    """(action pattern, resource) pairs of every Allow statement attached to the role in the template."""
    statements: list[dict[str, Any]] = []
    resources = template["Resources"]
    role = resources[role_logical_id]
    for policy in role.get("Properties", {}).get("Policies", []):
        statements += policy["PolicyDocument"]["Statement"]
    for resource in resources.values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        roles = resource["Properties"].get("Roles", [])
        if {"Ref": role_logical_id} in roles:
            statements += resource["Properties"]["PolicyDocument"]["Statement"]
    granted = []
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        actions = statement["Action"]
        for action in [actions] if isinstance(actions, str) else actions:
            granted.append((action, statement.get("Resource")))
    return granted


def iam_action(call: str) -> str:
    """`ec2:DescribeInstances` (botocore event form) -> the IAM action it needs."""
    service, operation = call.split(":", 1)
    action = f"{_IAM_PREFIX.get(service, service)}:{operation}"
    return _IAM_ACTION.get(action, action)


def is_granted(action: str, granted: list[tuple[str, Any]]) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern, _resource in granted)
