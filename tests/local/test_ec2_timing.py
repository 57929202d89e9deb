"""EC2 on ec2ops.local takes time as on AWS, so the app's wait loops really loop."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from ec2ops.local import LocalCloud


def test_stop_passes_through_stopping_and_the_wait_loop_polls_more_than_once(cloud: LocalCloud) -> None:
    # Given a running instance
    iid = cloud.launch_instance("t3.large")
    # When the probe state machine stops it and polls every 10 s until it is stopped
    result = cloud.run("probe-stop", {"instance_id": iid})
    # Then the instance went through `stopping`, and the loop polled while it was
    assert result.status == "SUCCEEDED"
    assert result.output["described"] == {"state": "stopped"}  # `[0].Field` paths give the value, as on AWS
    assert cloud.instance_history(iid)[-2:] == ["stopping", "stopped"]
    assert result.counts.states_entered["WaitForStop"] >= 3
    assert result.counts.api_calls["ec2:DescribeInstances"] == result.counts.states_entered["WaitForStop"]
    assert cloud.instance(iid)["State"]["Name"] == "stopped"


def test_stopping_lasts_until_the_clock_passes_its_due_time(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large")
    cloud.ec2.stop_instances(InstanceIds=[iid])
    assert cloud.instance(iid)["State"]["Name"] == "stopping"
    cloud.clock.advance(seconds=29)
    assert cloud.instance(iid)["State"]["Name"] == "stopping"
    cloud.clock.advance(seconds=31)
    assert cloud.instance(iid)["State"]["Name"] == "stopped"


def test_start_leaves_the_instance_pending_until_it_runs(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large")
    cloud.ec2.stop_instances(InstanceIds=[iid])
    cloud.clock.advance(minutes=2)
    cloud.ec2.start_instances(InstanceIds=[iid])
    assert cloud.instance(iid)["State"]["Name"] == "pending"
    cloud.clock.advance(seconds=30)
    assert cloud.instance(iid)["State"]["Name"] == "running"


def test_a_new_launch_is_pending_until_the_launch_time_has_passed(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large", running=False)
    assert cloud.instance(iid)["State"]["Name"] == "pending"
    cloud.clock.advance(seconds=31)
    assert cloud.instance(iid)["State"]["Name"] == "running"


def test_type_change_of_a_running_or_stopping_instance_is_refused_as_on_ec2(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large")
    with pytest.raises(ClientError) as running:
        cloud.ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "c7i.large"})
    cloud.ec2.stop_instances(InstanceIds=[iid])
    with pytest.raises(ClientError) as stopping:
        cloud.ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "c7i.large"})
    assert running.value.response["Error"]["Code"] == "IncorrectInstanceState"
    assert "not in the 'stopped' state" in stopping.value.response["Error"]["Message"]
    cloud.clock.advance(minutes=2)
    cloud.ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "c7i.large"})
    assert cloud.instance(iid)["InstanceType"] == "c7i.large"


def test_stop_of_a_pending_instance_is_refused(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large", running=False)
    with pytest.raises(ClientError) as error:
        cloud.ec2.stop_instances(InstanceIds=[iid])
    assert error.value.response["Error"]["Code"] == "IncorrectInstanceState"


def test_a_start_without_capacity_falls_back_to_stopped_with_the_reason(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large")
    cloud.ec2.stop_instances(InstanceIds=[iid])
    cloud.clock.advance(minutes=2)
    cloud.fall_back_on_next_start(instance_id=iid)
    cloud.ec2.start_instances(InstanceIds=[iid])  # "succeeds", as on EC2
    cloud.clock.advance(minutes=1)
    instance = cloud.instance(iid)
    assert instance["State"]["Name"] == "stopped"
    assert instance["StateReason"]["Code"] == "Server.InsufficientInstanceCapacity"
    assert cloud.instance_history(iid)[-2:] == ["pending", "stopped"]


def test_snapshots_are_pending_until_done_and_an_injected_failure_ends_in_error(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large", extra_volumes_gib=(20,))
    cloud.fail_next_snapshots(times=1, message="Snapshot failed: volume I/O error")
    snapshots = cloud.ec2.create_snapshots(InstanceSpecification={"InstanceId": iid})["Snapshots"]
    ids = [snapshot["SnapshotId"] for snapshot in snapshots]
    described = cloud.ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"]
    assert {snapshot["State"] for snapshot in described} == {"pending"}
    cloud.clock.advance(minutes=5)
    states = {s["SnapshotId"]: s for s in cloud.ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"]}
    assert states[ids[0]]["State"] == "error"
    assert states[ids[0]]["StateMessage"] == "Snapshot failed: volume I/O error"
    assert states[ids[1]]["State"] == "completed"
    assert states[ids[1]]["Progress"] == "100%"


def test_moto_stamps_times_from_the_emulator_clock(cloud: LocalCloud) -> None:
    cloud.clock.advance(days=40)
    iid = cloud.launch_instance("t3.large")
    snapshot = cloud.ec2.create_snapshots(InstanceSpecification={"InstanceId": iid})["Snapshots"][0]
    started = cloud.ec2.describe_snapshots(SnapshotIds=[snapshot["SnapshotId"]])["Snapshots"][0]["StartTime"]
    assert abs((started - cloud.clock.now()).total_seconds()) < 5


def test_raw_sdk_results_reach_the_execution_output_with_iso_timestamps(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large")
    result = cloud.run("probe-describe", {"instance_id": iid})
    assert result.status == "SUCCEEDED"
    launch_time = result.output["raw"]["Reservations"][0]["Instances"][0]["LaunchTime"]
    assert isinstance(launch_time, str)
    assert launch_time.startswith(str(cloud.clock.now().year))


def test_an_image_registered_from_a_snapshot_uses_that_snapshot(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large")
    snapshot = cloud.ec2.create_snapshots(InstanceSpecification={"InstanceId": iid})["Snapshots"][0]["SnapshotId"]
    image = cloud.ec2.register_image(
        Name="golden",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snapshot}}],
    )["ImageId"]
    described = cloud.ec2.describe_images(ImageIds=[image])["Images"][0]
    assert [m["Ebs"]["SnapshotId"] for m in described["BlockDeviceMappings"]] == [snapshot]
    with pytest.raises(ClientError) as error:
        cloud.ec2.delete_snapshot(SnapshotId=snapshot)
    assert error.value.response["Error"]["Code"] == "InvalidSnapshot.InUse"


def status_of(cloud: LocalCloud, iid: str) -> str:
    statuses = cloud.ec2.describe_instance_status(InstanceIds=[iid], IncludeAllInstances=True)["InstanceStatuses"]
    return str(statuses[0]["InstanceStatus"]["Status"])


def test_status_checks_initialize_after_a_start_then_pass(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large")
    assert status_of(cloud, iid) == "ok"
    cloud.ec2.stop_instances(InstanceIds=[iid])
    cloud.clock.advance(minutes=2)
    assert status_of(cloud, iid) == "not-applicable"
    cloud.ec2.start_instances(InstanceIds=[iid])
    cloud.clock.advance(seconds=30)
    assert status_of(cloud, iid) == "initializing"
    cloud.clock.advance(minutes=2)
    assert status_of(cloud, iid) == "ok"


def test_an_impaired_start_fails_its_status_checks(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large")
    cloud.ec2.stop_instances(InstanceIds=[iid])
    cloud.clock.advance(minutes=2)
    cloud.impair_next_start(instance_id=iid)
    cloud.ec2.start_instances(InstanceIds=[iid])
    cloud.clock.advance(minutes=5)
    assert status_of(cloud, iid) == "impaired"


def test_capacity_reservations_are_emulated_and_can_be_unavailable(cloud: LocalCloud) -> None:
    iid = cloud.launch_instance("t3.large")
    cloud.set_reservable("c7i.8xlarge", "us-east-1a", False)
    with pytest.raises(ClientError) as refused:
        cloud.ec2.create_capacity_reservation(
            InstanceType="c7i.8xlarge", InstancePlatform="Linux/UNIX", AvailabilityZone="us-east-1a", InstanceCount=1
        )
    assert refused.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
    reservation = cloud.ec2.create_capacity_reservation(
        InstanceType="c6i.8xlarge",
        InstancePlatform="Linux/UNIX",
        AvailabilityZone="us-east-1a",
        InstanceCount=1,
        InstanceMatchCriteria="targeted",
        EndDateType="unlimited",
    )["CapacityReservation"]
    rid = reservation["CapacityReservationId"]
    with pytest.raises(ClientError):  # only a stopped instance can be pointed at a reservation
        cloud.ec2.modify_instance_capacity_reservation_attributes(
            InstanceId=iid,
            CapacityReservationSpecification={"CapacityReservationTarget": {"CapacityReservationId": rid}},
        )
    cloud.ec2.stop_instances(InstanceIds=[iid])
    cloud.clock.advance(minutes=2)
    cloud.ec2.modify_instance_capacity_reservation_attributes(
        InstanceId=iid, CapacityReservationSpecification={"CapacityReservationTarget": {"CapacityReservationId": rid}}
    )
    described = cloud.ec2.describe_capacity_reservations(CapacityReservationIds=[rid])["CapacityReservations"][0]
    assert (described["State"], described["AvailableInstanceCount"]) == ("active", 0)
    cloud.ec2.cancel_capacity_reservation(CapacityReservationId=rid)
    assert cloud.ec2.describe_capacity_reservations()["CapacityReservations"][0]["State"] == "cancelled"
