"""The emulator clock and the in-process Lambda runtime, on their own."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ec2ops.local.clock import EmulatorClock
from ec2ops.local.counters import CallCounter
from ec2ops.local.lambda_runtime import LambdaRuntime

START = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_clock_moves_only_when_asked_and_tells_its_listeners() -> None:
    clock = EmulatorClock(START)
    seen: list[datetime] = []
    clock.on_advance(seen.append)
    assert clock.now() == START
    clock.sleep(30)
    clock.advance(hours=1)
    assert clock.now() == datetime(2026, 1, 1, 1, 0, 30, tzinfo=UTC)
    assert seen == [datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC), clock.now()]


def test_the_clock_never_goes_back() -> None:
    with pytest.raises(ValueError, match="only moves forward"):
        EmulatorClock(START).advance(seconds=-1)


def test_a_handler_sees_its_own_environment_and_the_process_keeps_its_own(tmp_path: Path) -> None:
    (tmp_path / "env_probe.py").write_text(
        "import os\n"
        "def handler(event, context):\n"
        "    return {'marker': os.environ['MARKER'], 'name': context.function_name, 'echo': event}\n"
        "def broken(event, context):\n"
        "    raise KeyError('no such thing')\n"
    )
    runtime = LambdaRuntime(tmp_path, region="us-east-1", counter=CallCounter())
    common = {"function_arn": "arn:aws:lambda:us-east-1:123456789012:function:f", "memory_mb": 128, "timeout_s": 3}
    body, error = runtime.invoke(
        function_name="f", handler="env_probe.handler", environment={"MARKER": "m1"}, payload={"a": 1}, **common
    )
    assert error is None
    assert body == b'{"marker": "m1", "name": "f", "echo": {"a": 1}}'
    assert "MARKER" not in os.environ
    body, error = runtime.invoke(function_name="f", handler="env_probe.broken", environment={}, payload={}, **common)
    assert error == "Unhandled"
    assert b'"errorType": "KeyError"' in body
