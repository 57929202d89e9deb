"""The emulator's clock: virtual time that moves only when something waits or a test advances it.

Real AWS time passes on its own; in the emulator it passes when a Wait state, a Retry backoff or a Lambda's
sleep asks for it, or when a test calls `advance`. Runs are fast and deterministic, and every wait loop still
sees the world change between polls (EC2 transitions are due at clock times, see ec2_timing).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Listener = Callable[[datetime], None]


class EmulatorClock:
    """Virtual UTC time. `sleep` and `advance` move it forward; listeners run after each move."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._notifying = threading.local()

    def now(self) -> datetime:
        """Timezone-aware UTC now."""
        with self._lock:
            return self._now

    def naive_now(self) -> datetime:
        """Naive UTC now, the form moto stores."""
        return self.now().replace(tzinfo=None)

    def timestamp(self) -> float:
        return self.now().timestamp()

    def on_advance(self, listener: Listener) -> None:
        """Call `listener(now)` after every move of the clock (EC2 transitions, due schedules)."""
        self._listeners.append(listener)

    def advance(self, *, seconds: float = 0, minutes: float = 0, hours: float = 0, days: float = 0) -> datetime:
        """Move time forward, then let the world catch up (transitions settle, schedules fire)."""
        delta = timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days)
        if delta < timedelta(0):
            raise ValueError(f"the clock only moves forward (asked to move by {delta})")
        with self._lock:
            self._now += delta
            now = self._now
        self._notify(now)
        return now

    def sleep(self, seconds: float) -> None:
        """What a waiting state machine or Lambda does: time passes at once, the thread yields."""
        if seconds > 0:
            self.advance(seconds=seconds)
        time.sleep(0.0005)

    def _notify(self, now: datetime) -> None:
        # A listener may itself move the clock (a schedule that starts a workflow); don't recurse.
        if getattr(self._notifying, "active", False):
            return
        self._notifying.active = True
        try:
            for listener in list(self._listeners):
                listener(now)
        finally:
            self._notifying.active = False
