"""Fixtures of the drive loop tests: the fake EC2, a clock the test moves, and a story that runs the loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ec2ops_lambda import clock

from tests.unit.resize_drive.fake_ec2 import FakeClock, FakeEc2, Story, make_plan


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """`clock.utcnow()` answers this clock's time, as the emulator's clock would."""
    moved = FakeClock()
    monkeypatch.setattr(clock, "utcnow", moved.utcnow)
    return moved


@pytest.fixture
def story(fake_clock: FakeClock) -> Callable[..., Story]:
    """A drive loop over a fake EC2: `story(ec2=FakeEc2(...), **plan_fields)`."""

    def _story(ec2: FakeEc2 | None = None, **plan_fields: Any) -> Story:
        return Story(plan=make_plan(**plan_fields), ec2=ec2 or FakeEc2(), clock=fake_clock)

    return _story
