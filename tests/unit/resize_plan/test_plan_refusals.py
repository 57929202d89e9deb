"""Plan on moto: every refusal, with its named error and a message that says what is wrong; nothing is touched."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ec2ops_lambda.errors import (
    IncompatibleType,
    InstanceNotFound,
    InvalidInput,
    InvalidInstanceState,
    NotManaged,
    StopProtected,
    TypeNotOffered,
    UnknownInstanceType,
    UnsupportedInstance,
)
from ec2ops_lambda.handlers import resize_plan as handlers

from tests.unit.resize_plan.conftest import FALLBACK, FROM, TO, moto_instance, state_and_type
from tests.unit.world import FakeLambdaContext

Launch = Callable[..., str]
Planned = Callable[..., dict[str, Any]]


def refused(planned: Planned, instance_id: str, error: type[Exception], **fields: Any) -> str:
    """The refusal's message, after checking its error name."""
    with pytest.raises(error) as refusal:
        planned(instance_id, **fields)
    assert "Nothing was changed." in str(refusal.value)
    return str(refusal.value)


# --- the input and the payload ---------------------------------------------------------------------------------


def test_bad_input_is_refused_before_ec2_is_asked(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch()
    message = refused(planned, instance_id, InvalidInput, target_type="C7I.8XLARGE", snapshot="yes")
    assert "target_type: must be an instance type such as c7i.8xlarge" in message
    assert "snapshot: must be true or false (got 'yes')" in message
    assert state_and_type(ec2, instance_id) == ("running", FROM)


def test_a_payload_without_the_execution_id_is_invalid_input(
    launch: Launch, ec2: Any, context: FakeLambdaContext
) -> None:
    instance_id = launch()
    request = {"instance_id": instance_id, "target_type": TO, "reason": "x"}
    with pytest.raises(InvalidInput, match=r"\$\$\.Execution\.Id"):
        handlers.plan({"request": request, "change_id": "chg-1"}, context)


def test_the_current_type_as_a_fallback_is_invalid_input(launch: Launch, planned: Planned) -> None:
    message = refused(planned, launch(), InvalidInput, fallback_types=[FALLBACK, FROM])
    assert f"fallback_types lists {FROM}, the instance's current type" in message


# --- the instance ----------------------------------------------------------------------------------------------


def test_a_missing_instance_is_not_found(planned: Planned, ec2: Any) -> None:
    message = refused(planned, "i-0123456789abcdef0", InstanceNotFound)
    assert "instance i-0123456789abcdef0 does not exist in us-east-1" in message


def test_an_unmanaged_instance_is_refused(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch(managed=False)
    message = refused(planned, instance_id, NotManaged)
    assert "no ec2ops:managed tag" in message
    assert "add the tag ec2ops:managed=true" in message
    assert state_and_type(ec2, instance_id) == ("running", FROM)


@pytest.mark.parametrize("state", ["pending", "stopping", "shutting-down"])
def test_a_transitional_instance_is_refused(launch: Launch, planned: Planned, state: str) -> None:
    instance_id = launch()
    moto_instance(instance_id)._state.name = state
    message = refused(planned, instance_id, InvalidInstanceState)
    assert f"instance {instance_id} is {state}: only a running or stopped instance can be resized" in message
    assert moto_instance(instance_id).instance_type == FROM


def test_a_terminated_instance_is_in_an_invalid_state(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch()
    ec2.terminate_instances(InstanceIds=[instance_id])
    message = refused(planned, instance_id, InvalidInstanceState)
    assert f"instance {instance_id} is terminated" in message
    assert "going away" in message


def test_an_auto_scaling_member_is_refused(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch(tags={"aws:autoscaling:groupName": "workers"})
    message = refused(planned, instance_id, UnsupportedInstance)
    assert "belongs to the Auto Scaling group 'workers'" in message
    assert "a stopped member is replaced by its group" in message
    assert state_and_type(ec2, instance_id) == ("running", FROM)


def test_an_instance_store_root_is_refused(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch()
    moto_instance(instance_id).root_device_type = "instance-store"
    message = refused(planned, instance_id, UnsupportedInstance)
    assert "has an instance-store root device: it cannot be stopped" in message
    assert state_and_type(ec2, instance_id) == ("running", FROM)


def test_a_spot_instance_is_refused(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch()
    moto_instance(instance_id).lifecycle = "spot"
    message = refused(planned, instance_id, UnsupportedInstance)
    assert "spot capacity is replaced by ec2ops-spot-failover, not resized" in message
    assert state_and_type(ec2, instance_id) == ("running", FROM)


def test_stop_protection_on_a_running_instance_is_refused(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch()
    ec2.modify_instance_attribute(InstanceId=instance_id, DisableApiStop={"Value": True})
    message = refused(planned, instance_id, StopProtected)
    assert "has stop protection on (disableApiStop)" in message
    assert f"--instance-id {instance_id} --no-disable-api-stop" in message
    assert state_and_type(ec2, instance_id) == ("running", FROM)


def test_unmanaged_is_reported_before_an_invalid_state(launch: Launch, planned: Planned) -> None:
    instance_id = launch(managed=False)
    moto_instance(instance_id)._state.name = "pending"
    refused(planned, instance_id, NotManaged)


def test_invalid_state_is_reported_before_spot(launch: Launch, planned: Planned) -> None:
    instance_id = launch()
    moto_instance(instance_id).lifecycle = "spot"
    moto_instance(instance_id)._state.name = "stopping"
    refused(planned, instance_id, InvalidInstanceState)


# --- the target and the fallbacks --------------------------------------------------------------------------------


def test_an_unknown_target_type_is_refused(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch()
    message = refused(planned, instance_id, UnknownInstanceType, target_type="c7x.huge", fallback_types=[FALLBACK])
    assert "target type c7x.huge is not an instance type EC2 knows in us-east-1" in message
    assert state_and_type(ec2, instance_id) == ("running", FROM)


def test_an_unknown_fallback_is_refused_by_name(launch: Launch, planned: Planned) -> None:
    message = refused(planned, launch(), UnknownInstanceType, fallback_types=[FALLBACK, "c6z.8xlarge"])
    assert message.startswith("fallback type c6z.8xlarge is not an instance type EC2 knows")


def test_a_type_not_offered_in_the_az_is_refused(launch: Launch, planned: Planned, ec2: Any) -> None:
    # us-east-1e offers neither c7i.8xlarge nor c6i.8xlarge
    instance_id = launch(zone="us-east-1e")
    message = refused(planned, instance_id, TypeNotOffered)
    assert (
        f"target type {TO} is not offered in us-east-1e, the Availability Zone of build-box ({instance_id})" in message
    )
    assert state_and_type(ec2, instance_id) == ("running", FROM)


def test_a_fallback_not_offered_in_the_az_is_refused_by_name(launch: Launch, planned: Planned) -> None:
    message = refused(planned, launch(), TypeNotOffered, fallback_types=["trn1.32xlarge"])
    assert message.startswith("fallback type trn1.32xlarge is not offered in us-east-1a")


def test_an_arm64_target_for_an_x86_instance_is_incompatible(launch: Launch, planned: Planned, ec2: Any) -> None:
    instance_id = launch()
    message = refused(planned, instance_id, IncompatibleType, target_type="c7g.8xlarge")
    assert f"build-box ({instance_id}) cannot run as target type c7g.8xlarge" in message
    assert "its processors run arm64 code but the instance's AMI is x86_64" in message
    assert state_and_type(ec2, instance_id) == ("running", FROM)


def test_an_arm64_fallback_is_refused_by_name(launch: Launch, planned: Planned) -> None:
    message = refused(planned, launch(), IncompatibleType, fallback_types=[FALLBACK, "c7g.8xlarge"])
    assert "cannot run as fallback type c7g.8xlarge" in message


def test_more_network_interfaces_than_the_target_allows_is_incompatible(
    launch: Launch, planned: Planned, ec2: Any
) -> None:
    # Given build-box with three ENIs attached, and t3.nano allows two
    instance_id = launch()
    subnet_id = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["SubnetId"]
    for index in (1, 2):
        eni = ec2.create_network_interface(SubnetId=subnet_id)["NetworkInterface"]["NetworkInterfaceId"]
        ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=instance_id, DeviceIndex=index)
    message = refused(planned, instance_id, IncompatibleType, target_type="t3.nano")
    assert "it allows at most 2 network interfaces but the instance has 3 attached (detach 1" in message
    # while a type with room for them is fine
    assert planned(instance_id, target_type="t3.medium")["status"] == "go"


def test_ena_required_but_not_enabled_is_incompatible(launch: Launch, planned: Planned) -> None:
    # Given an instance on a type that does not require ENA, and ENA not enabled on it
    instance_id = launch("t2.large")
    message = refused(planned, instance_id, IncompatibleType, target_type="t3.large")
    assert "it requires ENA (enhanced networking), which is not enabled on the instance" in message
    # once ENA is enabled, the same resize is fine
    moto_instance(instance_id).ena_support = True
    assert planned(instance_id, target_type="t3.large")["status"] == "go"


def test_a_uefi_instance_cannot_move_to_a_legacy_bios_only_type(launch: Launch, planned: Planned) -> None:
    instance_id = launch()
    moto_instance(instance_id).boot_mode = "uefi"
    message = refused(planned, instance_id, IncompatibleType, target_type="t2.large")
    assert "it boots legacy-bios only but the instance boots uefi" in message


def test_a_paravirtual_instance_cannot_move_to_an_hvm_only_type(launch: Launch, planned: Planned) -> None:
    instance_id = launch("m1.small")
    moto_instance(instance_id).virtualization_type = "paravirtual"
    message = refused(planned, instance_id, IncompatibleType, target_type="m5.large")
    assert "it supports hvm virtualization only but the instance is paravirtual" in message


def test_the_target_is_checked_before_the_fallbacks(launch: Launch, planned: Planned) -> None:
    message = refused(planned, launch(), IncompatibleType, target_type="c7g.8xlarge", fallback_types=["c6z.8xlarge"])
    assert "target type c7g.8xlarge" in message
