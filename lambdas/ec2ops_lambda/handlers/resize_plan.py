"""The ec2ops-resize Plan Lambda: parse, refuse or plan, return the plan the state machine keeps at `$.plan`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from ec2ops_lambda.aws.ec2 import Ec2
from ec2ops_lambda.aws.ec2_types import Ec2Types
from ec2ops_lambda.pricing import PriceBook
from ec2ops_lambda.resize import plan as plan_logic

logger = Logger(service="ec2ops-resize")


@logger.inject_lambda_context(clear_state=True)
def plan(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Plan: refuse bad input, an unfit instance or an unfit type before anything is touched."""
    ec2 = Ec2()
    result = plan_logic.make_plan(event, ec2=ec2, types=Ec2Types(ec2), prices=PriceBook())
    return result.model_dump(mode="json", by_alias=True)
