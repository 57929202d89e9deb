"""Drive, forward path: stop, wait, change the type, start, wait, verify; fallbacks when a type has no capacity."""

from __future__ import annotations

from collections.abc import Callable

from tests.unit.resize_drive.fake_ec2 import FakeEc2, Story, client_error

MakeStory = Callable[..., Story]


def test_running_instance_is_resized_through_every_phase(story: MakeStory) -> None:
    # Given a running t3.large whose stop, start and status checks each take a while
    ec2 = FakeEc2(stop_polls=1, start_polls=1, checks={"m5.large": ["initializing", "ok"]})
    loop = story(ec2)
    # When the loop runs to the end
    progress = loop.run()
    # Then it went through every forward phase, in order, and ended resized
    assert loop.phases() == ["wait_stopped", "modify", "start", "wait_running", "verify", "done"]
    assert progress.outcome == "resized"
    assert progress.first_failure is None
    assert (ec2.state, ec2.instance_type) == ("running", "m5.large")
    assert progress.current_type == "m5.large"
    # and each change was made once, in order, the type only once the instance was stopped
    assert ec2.changes() == [("stop",), ("set_type", "m5.large"), ("start", "m5.large")]
    # and the times that make the downtime are kept
    assert progress.stop_requested_at is not None and progress.running_at is not None
    assert progress.running_at > progress.stop_requested_at
    assert [entry.model_dump() for entry in progress.tried] == [
        {"type": "m5.large", "result": "resized", "detail": "running, status checks ok"}
    ]
    assert progress.events[0].startswith("2025-06-02T08:00:00.000Z resize of web-1 (i-0123456789abcdef0)")
    assert "stop requested" in progress.events[1]


def test_first_call_stops_at_once_and_sets_a_deadline(story: MakeStory) -> None:
    loop = story(FakeEc2(stop_polls=5))
    progress = loop.call()
    assert progress.phase == "wait_stopped"
    assert progress.candidate_index == 0
    assert progress.current_type == "t3.large"
    assert progress.phase_deadline is not None
    assert (progress.phase_deadline - loop.clock.now).total_seconds() == 600


def test_type_is_changed_only_after_stopped_never_while_stopping(story: MakeStory) -> None:
    # Given a stop that takes three looks to finish
    ec2 = FakeEc2(stop_polls=3)
    loop = story(ec2)
    progress = loop.run()
    # Then the loop waited (the fake refuses a type change while stopping, as EC2 does) and succeeded
    assert progress.outcome == "resized"
    assert loop.history[1].phase == loop.history[3].phase == "wait_stopped"


def test_stopped_instance_is_only_modified_and_stays_stopped(story: MakeStory) -> None:
    ec2 = FakeEc2(state="stopped")
    loop = story(ec2, was_running=False)
    progress = loop.call()
    assert progress.done and progress.outcome == "resized"
    assert (ec2.state, ec2.instance_type) == ("stopped", "m5.large")
    assert "start" not in ec2.names() and "stop" not in ec2.names()
    assert progress.stop_requested_at is None and progress.running_at is None


def test_capacity_error_on_start_tries_the_next_candidate(story: MakeStory) -> None:
    ec2 = FakeEc2(starts={"m5.large": ["error:InsufficientInstanceCapacity"]})
    loop = story(ec2)
    progress = loop.run()
    assert progress.outcome == "resized"
    assert (ec2.state, ec2.instance_type) == ("running", "m5a.large")
    assert progress.candidate_index == 1
    assert [(entry.type, entry.result) for entry in progress.tried] == [
        ("m5.large", "no capacity"),
        ("m5a.large", "resized"),
    ]
    assert "InsufficientInstanceCapacity" in progress.tried[0].detail
    assert ec2.changes() == [
        ("stop",),
        ("set_type", "m5.large"),
        ("start", "m5.large"),
        ("set_type", "m5a.large"),
        ("start", "m5a.large"),
    ]
    assert progress.first_failure is None


def test_unsupported_on_start_also_tries_the_next_candidate(story: MakeStory) -> None:
    ec2 = FakeEc2(starts={"m5.large": ["error:Unsupported"]})
    progress = story(ec2).run()
    assert progress.outcome == "resized"
    assert ec2.instance_type == "m5a.large"
    assert progress.tried[0].result == "unsupported"


def test_silent_fall_back_to_stopped_tries_the_next_candidate(story: MakeStory) -> None:
    # Given EC2 accepts the start of m5.large, then returns the instance to stopped for lack of capacity
    ec2 = FakeEc2(start_polls=1, starts={"m5.large": ["silent"]})
    loop = story(ec2)
    progress = loop.run()
    # Then the loop saw it, and moved on to the fallback
    assert progress.outcome == "resized"
    assert (ec2.state, ec2.instance_type) == ("running", "m5a.large")
    assert progress.tried[0].type == "m5.large"
    assert progress.tried[0].result == "no capacity"
    assert "Server.InsufficientInstanceCapacity" in progress.tried[0].detail


def test_status_checks_initializing_are_waited_for(story: MakeStory) -> None:
    ec2 = FakeEc2(checks={"m5.large": ["initializing"] * 10 + ["ok"]})
    loop = story(ec2)
    progress = loop.run()
    assert progress.outcome == "resized"
    assert ec2.names().count("status_checks") == 11


def test_reservation_success_narrows_candidates_and_the_start_uses_the_open_reservation(story: MakeStory) -> None:
    # Given the target cannot be reserved but the fallback can
    ec2 = FakeEc2(unreservable={"m5.large"})
    loop = story(ec2, reserve_capacity=True)
    # When the loop runs
    first = loop.call()
    assert first.phase == "reserve" and first.candidate_index == 1
    progress = loop.run()
    # Then the fallback was reserved and used, and the target never tried for the start
    assert progress.outcome == "resized"
    assert progress.reserved_type == "m5a.large"
    assert progress.reservation_id in ec2.reservations
    assert ec2.reservations[progress.reservation_id]["zone"] == "us-east-1a"
    assert ec2.reservations[progress.reservation_id]["tags"]["ec2ops:change-id"] == "chg-1"
    assert ec2.changes() == [
        ("reserve", "m5.large"),
        ("reserve", "m5a.large"),
        ("stop",),
        ("set_type", "m5a.large"),
        ("start", "m5a.large"),
    ]
    # and the instance was never pointed at the reservation: it is open, the start ran in it by itself
    assert "set_reservation" not in ec2.names()
    assert ec2.reservation_target is None
    assert ec2.reservations[progress.reservation_id]["used_by"] == ec2.instance_id


def test_after_a_reserved_resize_and_the_cancel_a_plain_stop_and_start_works(story: MakeStory) -> None:
    # Given a reserved resize that worked, and its reservation cancelled (as finish does)
    ec2 = FakeEc2()
    progress = story(ec2, reserve_capacity=True).run()
    assert progress.outcome == "resized" and progress.reservation_id is not None
    assert ec2.cancel(progress.reservation_id)
    # When the user stops and starts the instance outside ec2ops
    ec2.stop(ec2.instance_id)
    assert ec2.observe(ec2.instance_id).state == "stopped"
    ec2.start(ec2.instance_id)
    # Then it starts: nothing on the instance refers to the cancelled reservation
    assert ec2.observe(ec2.instance_id).state == "running"
    assert ec2.reservation_target is None


def test_reserved_resize_of_an_instance_targeting_another_reservation_moves_it_to_open(story: MakeStory) -> None:
    # Given an instance that targets some other reservation, and a reserved resize
    ec2 = FakeEc2(reservation_target="cr-00000000000000old")
    progress = story(ec2, reserve_capacity=True).run()
    # Then the type change moves it to open capacity (never to ec2ops's reservation), and the start uses ours
    assert progress.outcome == "resized"
    assert [call for call in ec2.changes() if call[0] == "set_reservation"] == [("set_reservation", "open")]
    assert ec2.reservation_target is None
    assert progress.reservation_id is not None
    assert ec2.reservations[progress.reservation_id]["used_by"] == ec2.instance_id


def test_nothing_reservable_aborts_before_anything_is_touched(story: MakeStory) -> None:
    ec2 = FakeEc2(unreservable={"m5.large", "m5a.large"})
    progress = story(ec2, reserve_capacity=True).run()
    assert progress.outcome == "aborted"
    assert progress.first_failure is not None
    assert progress.first_failure.error == "CapacityUnavailable"
    assert "m5.large" in progress.first_failure.cause and "m5a.large" in progress.first_failure.cause
    assert [name for name in ec2.names() if name != "reserve"] == []
    assert (ec2.state, ec2.instance_type) == ("running", "t3.large")


def test_reserve_is_skipped_for_a_stopped_instance(story: MakeStory) -> None:
    ec2 = FakeEc2(state="stopped")
    progress = story(ec2, was_running=False, reserve_capacity=True).run()
    assert progress.outcome == "resized"
    assert "reserve" not in ec2.names()
    assert progress.reservation_id is None


def test_instance_targeting_an_old_reservation_is_set_to_open_capacity(story: MakeStory) -> None:
    # Given an instance left targeting a reservation (e.g. one an earlier resize made and cancelled)
    ec2 = FakeEc2(reservation_target="cr-00000000000000old")
    progress = story(ec2).run()
    # Then the type change also points it at open capacity, so the start can work
    assert progress.outcome == "resized"
    assert ec2.reservation_target is None
    assert ("set_reservation", "open") in ec2.changes()


def test_stop_refused_means_nothing_changed(story: MakeStory) -> None:
    ec2 = FakeEc2(fail_next={"stop": client_error("OperationNotPermitted", "stop protection is on")})
    progress = story(ec2).run()
    assert progress.outcome == "aborted"
    assert progress.first_failure is not None
    assert progress.first_failure.error == "OperationNotPermitted"
    assert "stop protection" in progress.first_failure.cause
    assert (ec2.state, ec2.instance_type) == ("running", "t3.large")


def test_type_change_refused_on_a_stopped_instance_means_nothing_changed(story: MakeStory) -> None:
    ec2 = FakeEc2(state="stopped", fail_next={"set_type": client_error("InvalidParameterCombination", "ENA")})
    progress = story(ec2, was_running=False).run()
    assert progress.outcome == "aborted"
    assert progress.first_failure is not None
    assert progress.first_failure.error == "InvalidParameterCombination"
    assert (ec2.state, ec2.instance_type) == ("stopped", "t3.large")


def test_a_failed_look_while_waiting_is_retried(story: MakeStory) -> None:
    ec2 = FakeEc2(stop_polls=2)
    loop = story(ec2)
    loop.call()
    ec2.fail_next["observe"] = client_error("RequestLimitExceeded", "slow down")
    progress = loop.run()
    assert progress.outcome == "resized"
    assert any("will look again" in line for line in progress.events)


def test_done_progress_is_returned_unchanged(story: MakeStory) -> None:
    ec2 = FakeEc2(state="stopped")
    loop = story(ec2, was_running=False)
    done = loop.run()
    calls = len(ec2.calls)
    again = loop.call()
    assert again == done
    assert len(ec2.calls) == calls
