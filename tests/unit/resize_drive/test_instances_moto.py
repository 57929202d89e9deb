"""aws/instances.py against moto: the calls and the shapes the phase machine reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ec2ops_lambda.aws.instances import Ec2Instances
from ec2ops_lambda.errors import InstanceNotFound

Launch = Callable[..., str]


def test_observe_reads_state_type_and_reason(ec2: Any, launch: Launch) -> None:
    instance_id = launch()
    instances = Ec2Instances(ec2)
    seen = instances.observe(instance_id)
    assert (seen.state, seen.instance_type) == ("running", "t3.large")
    assert seen.describe() == "running on t3.large"
    instances.stop(instance_id)
    stopped = instances.observe(instance_id)
    assert stopped.state == "stopped"
    assert stopped.reason_code == "Client.UserInitiatedShutdown"


def test_type_change_and_start_on_the_new_type(ec2: Any, launch: Launch) -> None:
    instance_id = launch()
    instances = Ec2Instances(ec2)
    instances.stop(instance_id)
    instances.set_type(instance_id, "m5.large")
    instances.start(instance_id)
    seen = instances.observe(instance_id)
    assert (seen.state, seen.instance_type) == ("running", "m5.large")
    checks = instances.status_checks(instance_id)
    assert (checks.state, checks.system, checks.instance) == ("running", "ok", "ok")


def test_status_checks_of_a_stopped_instance_are_answered(ec2: Any, launch: Launch) -> None:
    instance_id = launch()
    instances = Ec2Instances(ec2)
    instances.stop(instance_id)
    assert instances.status_checks(instance_id).state == "stopped"


def test_unknown_instance_is_instance_not_found(ec2: Any) -> None:
    with pytest.raises(InstanceNotFound):
        Ec2Instances(ec2).observe("i-0000000000000dead")
