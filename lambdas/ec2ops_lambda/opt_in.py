"""The opt-in rule every workflow applies first: the instance exists, and it carries ec2ops:managed=true."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ec2ops_lambda.errors import InstanceNotFound, NotManaged
from ec2ops_lambda.models.common import tags_dict

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import InstanceTypeDef

MANAGED_TAG = "ec2ops:managed"
MANAGED_VALUE = "true"


def require_instance(instance: InstanceTypeDef | None, instance_id: str, region: str) -> InstanceTypeDef:
    """The instance, or InstanceNotFound saying where it was looked for."""
    if instance is None:
        raise InstanceNotFound(
            f"instance {instance_id} does not exist in {region}: check the id, and that the workflow runs in the "
            "instance's account and region. Nothing was changed."
        )
    return instance


def require_managed(instance: InstanceTypeDef, instance_id: str, verb: str) -> dict[str, str]:
    """The instance's tags, or NotManaged saying which tag lets ec2ops `verb` it."""
    tags = tags_dict(instance.get("Tags"))
    if tags.get(MANAGED_TAG) != MANAGED_VALUE:
        has = f"its tag {MANAGED_TAG} is {tags[MANAGED_TAG]!r}" if MANAGED_TAG in tags else f"no {MANAGED_TAG} tag"
        raise NotManaged(
            f"instance {instance_id} is not managed by ec2ops ({has}): add the tag {MANAGED_TAG}={MANAGED_VALUE} "
            f"to the instance to let ec2ops {verb} it, then start again. Nothing was changed."
        )
    return tags
