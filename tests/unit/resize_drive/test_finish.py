"""Finish: cancel the reservation, replace the revert schedule, write one ledger item, release the lock."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import boto3
import pytest
from ec2ops_lambda import clock
from ec2ops_lambda.aws.instances import Ec2Instances
from ec2ops_lambda.aws.ledger import Ledger
from ec2ops_lambda.aws.lock import Lock
from ec2ops_lambda.errors import InvalidInput
from ec2ops_lambda.handlers import resize as handlers
from ec2ops_lambda.models.resize_progress import DrivePlan, FinishEvent, Progress, ResizeResult
from ec2ops_lambda.resize.finish import FinishSettings, finish, snapshot_ids
from ec2ops_lambda.resize.revert import RevertSchedules, revert_input

from tests.unit.resize_drive.fake_ec2 import FakeClock, FakeEc2, Story, make_plan
from tests.unit.world import REGION, FakeLambdaContext, ledger_items

Launch = Callable[..., str]
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:ec2ops-resize:chg-1"
STATE_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:ec2ops-resize"
ROLE = "arn:aws:iam::123456789012:role/ec2ops-scheduler"
FINISHED_AT = datetime(2025, 6, 2, 8, 30, 0, tzinfo=UTC)
SNAPSHOT = {"instance_id": "i-x", "snapshot_ids": ["snap-0aaaaaaaaaaaaaaaa", "snap-0bbbbbbbbbbbbbbbb"], "message": "ok"}


class World:
    """A moto instance, the ledger, the lock taken by this execution, the scheduler; a fake for reservations."""

    def __init__(self, ec2: Any, instance_id: str, table: str) -> None:
        self.ec2 = ec2
        self.instance_id = instance_id
        self.capacity = FakeEc2(instance_id=instance_id)
        self.lock = Lock(table, boto3.client("dynamodb", region_name=REGION))
        self.ledger = Ledger(table, boto3.client("dynamodb", region_name=REGION))
        self.schedules = RevertSchedules("default", boto3.client("scheduler", region_name=REGION))
        self.config = FinishSettings.model_validate(
            {"LEDGER_TABLE": table, "RESIZE_STATE_MACHINE_ARN": STATE_MACHINE, "SCHEDULER_ROLE_ARN": ROLE}
        )
        self.lock.acquire(instance_id, EXECUTION, "resize")

    def drive(self, fake: FakeEc2, **plan_fields: Any) -> tuple[DrivePlan, Progress]:
        """Run the drive loop on the fake, then bring the moto instance to the same state and type."""
        fake.instance_id = self.instance_id
        fake_clock = FakeClock()
        plan = make_plan(instance_id=self.instance_id, **plan_fields)
        with mock.patch.object(clock, "utcnow", fake_clock.utcnow):
            progress = Story(plan=plan, ec2=fake, clock=fake_clock).run()
        self.ec2.stop_instances(InstanceIds=[self.instance_id])
        self.ec2.modify_instance_attribute(InstanceId=self.instance_id, InstanceType={"Value": fake.instance_type})
        if fake.state == "running":
            self.ec2.start_instances(InstanceIds=[self.instance_id])
        self.capacity.reservations.update(fake.reservations)
        return plan, progress

    def finish(self, plan: DrivePlan, progress: Progress, snapshot: Any = None, **parts: Any) -> ResizeResult:
        event = FinishEvent(plan=plan, progress=progress, snapshot=snapshot, execution_id=EXECUTION)
        return finish(
            event,
            instances=parts.get("instances", Ec2Instances(self.ec2)),
            capacity=self.capacity,
            ledger=parts.get("ledger", self.ledger),
            lock=parts.get("lock", self.lock),
            schedules=self.schedules,
            config=self.config,
        )

    def lock_holder(self) -> str | None:
        item = (
            boto3.resource("dynamodb", region_name=REGION)
            .Table(self.config.ledger_table)
            .get_item(Key={"pk": f"lock#{self.instance_id}", "sk": "lock"})
            .get("Item")
        )
        return None if item is None else str(item["holder"])


@pytest.fixture
def world(ec2: Any, launch: Launch, ledger_table: str, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setattr(clock, "utcnow", lambda: FINISHED_AT)
    return World(ec2, launch(), ledger_table)


def test_resized_finish_records_releases_schedules_and_cancels(world: World) -> None:
    # Given a reserved resize to m5.large that worked, with a revert asked for in 55 hours
    plan, progress = world.drive(FakeEc2(stop_polls=2, start_polls=1), reserve_capacity=True, revert_after_hours=55)
    reservation_id = progress.reservation_id
    assert reservation_id is not None
    # When finish runs
    result = world.finish(plan, progress, SNAPSHOT)
    # Then the result says what a user wants to know
    assert result.status == "resized"
    assert result.error is None and result.cause is None
    assert (result.from_type, result.to_type) == ("t3.large", "m5.large")
    assert result.snapshot_ids == SNAPSHOT["snapshot_ids"]
    assert result.downtime_seconds == 70.0  # stop requested at +10 s, running seen at +80 s
    assert result.hourly_cost_delta == pytest.approx(0.0128)
    assert result.revert_at == FINISHED_AT + timedelta(hours=55)
    assert "Resized web-1" in result.message and "m5.large" in result.message
    assert "2025-06-04T15:30:00.000Z" in result.message
    assert "targets" not in result.message  # the reservation is open: nothing on the instance refers to it
    # and the reservation is cancelled, the lock released
    assert world.capacity.reservations[reservation_id]["state"] == "cancelled"
    assert world.lock_holder() is None
    # and the revert schedule will start the resize back to t3.large
    schedule = world.schedules.get(world.instance_id)
    assert schedule is not None
    assert schedule["ScheduleExpression"] == "at(2025-06-04T15:30:00)"
    assert json.loads(schedule["Target"]["Input"]) == revert_input(
        world.instance_id, "t3.large", "chg-1", "phase 2 needs more memory"
    )
    # and the ledger holds one item keyed by the time the drive loop began
    items = ledger_items(world.instance_id)
    assert len(items) == 1
    item = items[0]
    assert result.ledger is not None
    assert (item["pk"], item["sk"]) == (result.ledger.pk, result.ledger.sk)
    assert item["sk"] == "2025-06-02T08:00:00.000Z#resize#chg-1"
    assert item["kind"] == "resize"
    assert item["workflow"] == "resize"
    assert item["execution_id"] == EXECUTION
    assert item["why"] == "phase 2 needs more memory"
    assert item["detail"]["to_type"] == "m5.large"
    assert item["detail"]["snapshot_ids"] == SNAPSHOT["snapshot_ids"]
    assert item["detail"]["revert_schedule"]["at"] == "2025-06-04T15:30:00.000Z"
    assert item["detail"]["tried"][-1]["type"] == "m5.large"
    assert item["cost_effect"]["monthly_usd_upper_bound"] == Decimal("9.34")


def test_retried_finish_writes_the_ledger_once_and_keeps_one_schedule(world: World) -> None:
    plan, progress = world.drive(FakeEc2(), revert_after_hours=1)
    first = world.finish(plan, progress)
    second = world.finish(plan, progress)
    assert len(ledger_items(world.instance_id)) == 1
    assert first.ledger == second.ledger
    assert world.schedules.get(world.instance_id) is not None


def test_resize_without_revert_removes_the_earlier_revert(world: World) -> None:
    # Given a revert schedule left by an earlier resize
    world.schedules.create(
        world.instance_id,
        FINISHED_AT + timedelta(hours=3),
        state_machine_arn=STATE_MACHINE,
        role_arn=ROLE,
        payload=revert_input(world.instance_id, "t3.medium", "chg-0", "older"),
    )
    plan, progress = world.drive(FakeEc2())
    result = world.finish(plan, progress)
    assert result.revert_at is None
    assert world.schedules.get(world.instance_id) is None
    assert "earlier revert schedule" in result.message


def test_rolled_back_finish_names_the_first_failure_and_the_state_now(world: World) -> None:
    no_capacity = "error:InsufficientInstanceCapacity"
    plan, progress = world.drive(FakeEc2(starts={"m5.large": [no_capacity], "m5a.large": [no_capacity]}))
    earlier = world.schedules.create(
        world.instance_id,
        FINISHED_AT + timedelta(hours=3),
        state_machine_arn=STATE_MACHINE,
        role_arn=ROLE,
        payload=revert_input(world.instance_id, "t3.medium", "chg-0", "older"),
    )
    result = world.finish(plan, progress)
    assert result.status == "rolled_back"
    assert result.error == "ResizeRolledBack"
    assert result.cause is not None
    assert result.cause.startswith("InsufficientInstanceCapacity: no candidate type could start")
    assert "rolled back to t3.large" in result.cause
    assert "running on t3.large now" in result.cause
    assert result.to_type == "t3.large"
    assert result.hourly_cost_delta == 0.0
    assert result.cause in result.message
    # the earlier revert is left alone: the type did not change
    assert earlier and world.schedules.get(world.instance_id) is not None
    assert [item["kind"] for item in ledger_items(world.instance_id)] == ["resize-rolled-back"]
    assert world.lock_holder() is None


def test_nothing_reservable_finishes_as_capacity_unavailable(world: World) -> None:
    plan, progress = world.drive(FakeEc2(unreservable={"m5.large", "m5a.large"}), reserve_capacity=True)
    result = world.finish(plan, progress)
    assert result.status == "aborted"
    assert result.error == "CapacityUnavailable"
    assert result.cause is not None and "Nothing was changed" in result.cause
    assert result.downtime_seconds is None
    assert [item["kind"] for item in ledger_items(world.instance_id)] == ["resize-aborted"]


def test_rollback_failed_finish_says_where_the_instance_is(world: World) -> None:
    no_capacity = "error:InsufficientInstanceCapacity"
    fake = FakeEc2(starts={"m5.large": [no_capacity], "m5a.large": [no_capacity], "t3.large": [no_capacity] * 9})
    plan, progress = world.drive(fake)
    result = world.finish(plan, progress)
    assert result.status == "rollback_failed"
    assert result.error == "RollbackFailed"
    assert result.cause is not None
    assert "stopped on t3.large now" in result.cause
    assert "needs attention" in result.message
    assert [item["kind"] for item in ledger_items(world.instance_id)] == ["resize-rollback-failed"]


def test_ledger_failure_still_releases_the_lock_and_says_so(world: World) -> None:
    plan, progress = world.drive(FakeEc2())
    broken = Ledger("no-such-table", boto3.client("dynamodb", region_name=REGION))
    result = world.finish(plan, progress, ledger=broken)
    assert result.status == "resized"
    assert result.ledger is None
    assert "not recorded in the ledger" in result.message
    assert world.lock_holder() is None


def test_lock_that_cannot_be_released_raises(world: World) -> None:
    plan, progress = world.drive(FakeEc2())
    broken = Lock("no-such-table", boto3.client("dynamodb", region_name=REGION))
    with pytest.raises(Exception, match="ResourceNotFound"):
        world.finish(plan, progress, lock=broken)
    # the record was written before the release was tried
    assert len(ledger_items(world.instance_id)) == 1


def test_finish_refuses_a_loop_that_is_not_done(world: World) -> None:
    plan = make_plan(instance_id=world.instance_id)
    with pytest.raises(InvalidInput, match="not done"):
        world.finish(plan, Progress(phase="verify", current_type="m5.large"))
    # nothing was touched: the state machine's catch releases the lock
    assert world.lock_holder() == EXECUTION
    assert ledger_items(world.instance_id) == []


def test_snapshot_ids_from_the_nested_execution_output() -> None:
    ids = ["snap-0aaaaaaaaaaaaaaaa"]
    assert snapshot_ids({"snapshot_ids": ids}) == ids
    assert snapshot_ids({"Output": json.dumps({"snapshot_ids": ids}), "ExecutionArn": "arn"}) == ids
    assert snapshot_ids({"Output": {"snapshot_ids": ids}}) == ids
    assert snapshot_ids(None) == []
    assert snapshot_ids("not json") == []


def test_finish_handler_end_to_end_on_moto(
    world: World, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESIZE_STATE_MACHINE_ARN", STATE_MACHINE)
    monkeypatch.setenv("SCHEDULER_ROLE_ARN", ROLE)
    plan, progress = world.drive(FakeEc2(), revert_after_hours=2)
    result = handlers.finish(
        {
            "plan": plan.model_dump(mode="json"),
            "progress": progress.model_dump(mode="json"),
            "snapshot": None,
            "execution_id": EXECUTION,
        },
        context,
    )
    assert result["status"] == "resized"
    assert result["revert_at"] == "2025-06-02T10:30:00.000Z"
    assert result["ledger"]["sk"].endswith("#resize#chg-1")
    assert world.lock_holder() is None
