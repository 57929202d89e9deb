"""Drive, rollback: after any failure past the stop, back to the original type and state, or a loud rollback_failed."""

from __future__ import annotations

from collections.abc import Callable

from tests.unit.resize_drive.fake_ec2 import FakeEc2, Story, client_error

MakeStory = Callable[..., Story]
NO_CAPACITY = "error:InsufficientInstanceCapacity"


def test_no_candidate_left_rolls_back_to_the_original_type(story: MakeStory) -> None:
    # Given neither candidate can start
    ec2 = FakeEc2(stop_polls=1, start_polls=1, starts={"m5.large": [NO_CAPACITY], "m5a.large": [NO_CAPACITY]})
    loop = story(ec2)
    # When the loop runs
    progress = loop.run()
    # Then the instance runs again on its original type, verified
    assert progress.outcome == "rolled_back"
    assert (ec2.state, ec2.instance_type) == ("running", "t3.large")
    assert progress.current_type == "t3.large"
    assert progress.first_failure is not None
    assert progress.first_failure.error == "InsufficientInstanceCapacity"
    assert "m5.large" in progress.first_failure.cause and "m5a.large" in progress.first_failure.cause
    assert [(entry.type, entry.result) for entry in progress.tried] == [
        ("m5.large", "no capacity"),
        ("m5a.large", "no capacity"),
    ]
    assert loop.phases()[-4:] == ["rollback_start", "rollback_wait_running", "rollback_verify", "done"]
    assert ec2.changes()[-2:] == [("set_type", "t3.large"), ("start", "t3.large")]
    assert progress.running_at is not None and progress.stop_requested_at is not None


def test_impaired_status_checks_roll_back(story: MakeStory) -> None:
    # Given m5.large starts but fails its instance status check (an NVMe driver missing, say)
    ec2 = FakeEc2(checks={"m5.large": ["initializing", "impaired"]})
    loop = story(ec2)
    progress = loop.run()
    # Then it is stopped again, set back and started on t3.large
    assert progress.outcome == "rolled_back"
    assert (ec2.state, ec2.instance_type) == ("running", "t3.large")
    assert progress.first_failure is not None
    assert progress.first_failure.error == "StatusChecksFailed"
    assert "instance impaired" in progress.first_failure.cause
    assert progress.tried[-1].result == "status checks failed"
    assert ec2.changes() == [
        ("stop",),
        ("set_type", "m5.large"),
        ("start", "m5.large"),
        ("stop",),
        ("set_type", "t3.large"),
        ("start", "t3.large"),
    ]
    assert "rollback_wait_stopped" in loop.phases()


def test_status_checks_that_never_pass_roll_back_at_the_deadline(story: MakeStory) -> None:
    ec2 = FakeEc2(checks={"m5.large": ["initializing"]})
    loop = story(ec2)
    progress = loop.run()
    assert progress.outcome == "rolled_back"
    assert progress.first_failure is not None
    assert progress.first_failure.error == "StatusChecksTimedOut"
    assert ec2.instance_type == "t3.large"


def test_stop_that_never_finishes_rolls_back_and_fails_loudly(story: MakeStory) -> None:
    # Given an instance stuck in stopping
    ec2 = FakeEc2(stop_polls=10_000)
    progress = story(ec2).run(limit=2000)
    # Then after the stop deadline and every rollback attempt the loop gives up and says where the instance is
    assert progress.outcome == "rollback_failed"
    assert progress.first_failure is not None
    assert progress.first_failure.error == "StopTimedOut"
    assert progress.rollback_attempts == 5
    assert "stopping on t3.large" in progress.events[-1]


def test_rollback_start_without_capacity_is_retried_then_fails_loudly(story: MakeStory) -> None:
    # Given no candidate can start, and the original type has no capacity either for longer than the attempts
    ec2 = FakeEc2(
        starts={"m5.large": [NO_CAPACITY], "m5a.large": [NO_CAPACITY], "t3.large": [NO_CAPACITY] * 9},
    )
    loop = story(ec2)
    progress = loop.run()
    # Then the rollback tried the start five times, once per call, and ended rollback_failed
    assert progress.outcome == "rollback_failed"
    assert progress.rollback_attempts == 5
    assert ec2.changes().count(("start", "t3.large")) == 5
    assert (ec2.state, ec2.instance_type) == ("stopped", "t3.large")
    # and the first failure stays the one that turned the resize back
    assert progress.first_failure is not None
    assert progress.first_failure.error == "InsufficientInstanceCapacity"
    assert "m5a.large" in progress.first_failure.cause
    assert "stopped on t3.large" in progress.events[-1]
    assert "needs attention" in progress.events[-1]
    # and it waited longer after each failed start, doing nothing in between (capacity comes back slowly)
    waits = [line.split(" in ")[1] for line in progress.events if "next start on" in line]
    assert waits == ["30 s or later", "60 s or later", "120 s or later", "240 s or later"]
    assert sorted({p.rollback_attempts for p in loop.history if p.phase == "rollback_start"}) == [0, 1, 2, 3, 4]


def test_rollback_start_succeeds_after_a_few_attempts(story: MakeStory) -> None:
    ec2 = FakeEc2(starts={"m5.large": [NO_CAPACITY], "m5a.large": [NO_CAPACITY], "t3.large": [NO_CAPACITY] * 2})
    progress = story(ec2).run()
    assert progress.outcome == "rolled_back"
    assert progress.rollback_attempts == 2
    assert (ec2.state, ec2.instance_type) == ("running", "t3.large")


def test_rollback_start_that_falls_back_silently_counts_as_an_attempt(story: MakeStory) -> None:
    ec2 = FakeEc2(
        start_polls=1,
        starts={"m5.large": ["silent"], "m5a.large": ["silent"], "t3.large": ["silent", "ok"]},
    )
    progress = story(ec2).run()
    assert progress.outcome == "rolled_back"
    assert progress.rollback_attempts == 1
    assert (ec2.state, ec2.instance_type) == ("running", "t3.large")


def test_rollback_with_a_reservation_leaves_the_capacity_setting_alone(story: MakeStory) -> None:
    # Given a reserved m5.large that still cannot start (a reservation does not cover every failure)
    ec2 = FakeEc2(starts={"m5.large": ["error:Unsupported"]})
    loop = story(ec2, reserve_capacity=True)
    progress = loop.run()
    # Then there is no second candidate (the reservation fixed the type), and the rollback has nothing to untarget
    assert progress.outcome == "rolled_back"
    assert progress.first_failure is not None
    assert progress.first_failure.error == "Unsupported"
    assert "m5a.large" not in [entry.type for entry in progress.tried]
    assert "set_reservation" not in ec2.names()
    assert ec2.reservation_target is None
    assert (ec2.state, ec2.instance_type) == ("running", "t3.large")
    assert progress.reservation_id is not None  # finish cancels it


def test_open_reservation_taken_by_another_instance_rolls_back(story: MakeStory) -> None:
    # Given a reserved m5.large whose open reservation another instance takes before our start, which then fails
    ec2 = FakeEc2(starts={"m5.large": [NO_CAPACITY]})
    loop = story(ec2, reserve_capacity=True)
    progress = loop.run_until("stop")
    assert progress.reservation_id is not None
    ec2.reservations[progress.reservation_id]["used_by"] = "i-0fffffffffffffff0"
    progress = loop.run()
    # Then the usual no-capacity handling applies: no other candidate (the type is fixed), back on the original type
    assert progress.outcome == "rolled_back"
    assert progress.first_failure is not None
    assert progress.first_failure.error == "InsufficientInstanceCapacity"
    assert [(entry.type, entry.result) for entry in progress.tried] == [("m5.large", "no capacity")]
    assert (ec2.state, ec2.instance_type) == ("running", "t3.large")


def test_rollback_moves_an_instance_still_targeting_a_reservation_to_open(story: MakeStory) -> None:
    # Given an instance targeting an old reservation, whose type changes but whose move to open capacity is refused
    ec2 = FakeEc2(
        reservation_target="cr-00000000000000old",
        fail_next={"set_reservation": client_error("InvalidParameterValue", "no")},
    )
    progress = story(ec2).run()
    # Then the rollback sets the type back, moves it to open capacity, and it starts on its original type
    assert progress.outcome == "rolled_back"
    assert progress.first_failure is not None
    assert progress.first_failure.error == "InvalidParameterValue"
    assert [call for call in ec2.changes() if call[0] == "set_reservation"] == [("set_reservation", "open")] * 2
    assert ec2.reservation_target is None
    assert (ec2.state, ec2.instance_type) == ("running", "t3.large")


def test_an_error_inside_the_rollback_counts_as_an_attempt(story: MakeStory) -> None:
    ec2 = FakeEc2(starts={"m5.large": [NO_CAPACITY], "m5a.large": [NO_CAPACITY]})
    loop = story(ec2)
    loop.run_until("rollback_stop")
    ec2.fail_next["set_type"] = client_error("InternalError", "try again")
    progress = loop.run()
    assert progress.outcome == "rolled_back"
    assert progress.rollback_attempts == 1
    assert any("InternalError" in line for line in progress.events)


def test_instance_gone_during_rollback_fails_loudly(story: MakeStory) -> None:
    ec2 = FakeEc2(starts={"m5.large": [NO_CAPACITY], "m5a.large": [NO_CAPACITY]})
    loop = story(ec2)
    loop.run_until("rollback_stop")
    ec2.state = "terminated"
    progress = loop.run()
    assert progress.outcome == "rollback_failed"
    assert "terminated" in progress.events[-1]


def test_stopped_instance_modify_failure_after_type_change_is_rolled_back(story: MakeStory) -> None:
    # Given a stopped instance whose type changes but whose reservation setting is refused
    ec2 = FakeEc2(
        state="stopped",
        reservation_target="cr-00000000000000old",
        fail_next={"set_reservation": client_error("InvalidParameterValue", "no")},
    )
    progress = story(ec2, was_running=False).run()
    # Then it is set back to its type and stays stopped
    assert progress.outcome == "rolled_back"
    assert (ec2.state, ec2.instance_type) == ("stopped", "t3.large")
    assert "start" not in ec2.names()
