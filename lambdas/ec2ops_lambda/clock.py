"""The one source of time for the Lambda code, so tests and ec2ops.local can move it.

Call it as a module attribute (`clock.utcnow()`), never import the functions themselves: the emulator
replaces `ec2ops_lambda.clock.utcnow` and `ec2ops_lambda.clock.sleep`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    """Timezone-aware UTC now; replaced by the emulator's clock under ec2ops.local."""
    return datetime.now(UTC)


def sleep(seconds: float) -> None:
    """Wait; replaced by the emulator so waiting costs no real time."""
    time.sleep(seconds)
