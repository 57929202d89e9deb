"""Drive after a fault: the state machine caught an error of a previous call; turn back from what EC2 shows."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ec2ops_lambda.models.resize_progress import Fault
from ec2ops_lambda.resize.drive import DriveSettings

from tests.unit.resize_drive.fake_ec2 import FakeEc2, Story

MakeStory = Callable[..., Story]
TIMEOUT = Fault(Error="States.Timeout", Cause=None)
LAMBDA_ERROR = Fault(
    Error="KeyError",
    Cause='{"errorMessage": "\'Reservations\'", "errorType": "KeyError", "stackTrace": []}',
)


def test_fault_on_the_first_call_aborts_with_nothing_changed(story: MakeStory) -> None:
    ec2 = FakeEc2()
    loop = story(ec2)
    progress = loop.call(fault=LAMBDA_ERROR)
    assert progress.done and progress.outcome == "aborted"
    assert progress.first_failure is not None
    assert progress.first_failure.error == "KeyError"
    assert progress.first_failure.cause == "'Reservations'"
    assert ec2.changes() == []


@pytest.mark.parametrize(
    ("phase", "reserve", "right_after", "outcome"),
    [
        ("reserve", True, "done", "aborted"),
        ("stop", True, "done", "aborted"),
        ("wait_stopped", False, "rollback_wait_stopped", "rolled_back"),
        ("modify", False, "rollback_wait_running", "rolled_back"),
        ("start", False, "rollback_start", "rolled_back"),
        ("wait_running", False, "rollback_stop", "rolled_back"),
        ("verify", False, "rollback_wait_stopped", "rolled_back"),
    ],
)
def test_fault_in_each_phase_goes_to_the_right_rollback_phase(
    story: MakeStory, phase: str, reserve: bool, right_after: str, outcome: str
) -> None:
    # Given a loop that has reached a phase (the instance mid-way: stopping, stopped on a new type, pending...)
    ec2 = FakeEc2(stop_polls=2, start_polls=2, checks={"m5.large": ["initializing", "ok"]})
    loop = story(ec2, reserve_capacity=reserve)
    if phase == "reserve":
        ec2.unreservable.add("m5.large")
    loop.run_until(phase)
    loop.clock.advance(10)
    # When the next call failed and the state machine calls drive with the fault
    progress = loop.call(fault=TIMEOUT)
    # Then the fault is the first failure and the loop is in the rollback phase that fits the instance
    assert progress.first_failure is not None
    assert progress.first_failure.error == "States.Timeout"
    assert progress.phase == right_after
    # and the rest of the loop ends with the instance as it was
    final = progress if progress.done else loop.run()
    assert final.outcome == outcome
    assert (ec2.state, ec2.instance_type) == ("running", "t3.large")


def test_fault_in_the_stop_phase_after_the_stop_was_made_is_rolled_back_not_aborted(story: MakeStory) -> None:
    # Given the stop call reached EC2 but the Lambda died before returning its progress
    ec2 = FakeEc2(stop_polls=2)
    loop = story(ec2)
    ec2.stop(ec2.instance_id)
    progress = loop.call(fault=TIMEOUT)
    # Then the instance is found stopping: not "nothing changed"
    assert progress.phase == "rollback_wait_stopped"
    assert loop.run().outcome == "rolled_back"
    assert (ec2.state, ec2.instance_type) == ("running", "t3.large")


def test_fault_after_a_type_change_the_progress_does_not_know_of(story: MakeStory) -> None:
    # Given the type change reached EC2 but its call timed out (progress still says t3.large)
    ec2 = FakeEc2()
    loop = story(ec2)
    loop.run_until("modify")
    ec2.set_type(ec2.instance_id, "m5.large")
    progress = loop.call(fault=TIMEOUT)
    # Then the rollback reads the real type and sets it back
    assert progress.phase == "rollback_start"
    assert loop.run().outcome == "rolled_back"
    assert (ec2.state, ec2.instance_type) == ("running", "t3.large")


def test_fault_during_rollback_counts_as_an_attempt(story: MakeStory) -> None:
    ec2 = FakeEc2(starts={"m5.large": ["error:InsufficientInstanceCapacity"] * 1, "m5a.large": ["error:Unsupported"]})
    loop = story(ec2)
    loop.run_until("rollback_stop")
    first = loop.progress.first_failure if loop.progress else None
    progress = loop.call(fault=TIMEOUT)
    assert progress.rollback_attempts == 1
    assert progress.first_failure == first
    assert loop.run().outcome == "rolled_back"


def test_faults_during_rollback_end_in_rollback_failed_when_attempts_are_used(story: MakeStory) -> None:
    # Given a deployment that allows two rollback attempts, and a rollback under way
    ec2 = FakeEc2(starts={"m5.large": ["error:InsufficientInstanceCapacity"], "m5a.large": ["error:Unsupported"]})
    loop = story(ec2)
    loop.settings = DriveSettings.model_validate({"RESIZE_ROLLBACK_ATTEMPTS": 2})
    loop.run_until("rollback_stop")
    # When two drive calls in a row fail
    assert not loop.call(fault=TIMEOUT).done
    changes = len(ec2.changes())
    progress = loop.call(fault=TIMEOUT)
    # Then the second one ends the loop without touching the instance again, saying where it stands
    assert progress.outcome == "rollback_failed"
    assert progress.rollback_attempts == 2
    assert len(ec2.changes()) == changes
    assert "t3.large" in progress.events[-1]


def test_fault_on_a_stopped_instance_before_the_type_change_aborts(story: MakeStory) -> None:
    ec2 = FakeEc2(state="stopped")
    loop = story(ec2, was_running=False)
    progress = loop.call(fault=TIMEOUT)
    assert progress.outcome == "aborted"
    assert (ec2.state, ec2.instance_type) == ("stopped", "t3.large")
