"""The instance's user data: instance_scripts/bootstrap.sh with the run's settings, shell-safe whatever they hold.

The settings travel as base64 of their JSON on the one line `EC2OPS_SETTINGS_B64=''` of bootstrap.sh. base64's
alphabet has no quote, `$`, backtick or newline, so no value of the training config can end up evaluated by bash;
bootstrap.sh decodes it with Python and hands values to processes as environment and argv, never as shell text.
"""

from __future__ import annotations

import base64
import json
from functools import lru_cache
from importlib import resources
from typing import Any

SETTINGS_LINE = "EC2OPS_SETTINGS_B64=''"
USER_DATA_LIMIT = 16384
"""EC2's limit on user data, before base64."""
INSTANCE_SCRIPTS = (
    "ec2ops_run_state.py",
    "ec2ops_task.py",
    "preflight_check.py",
    "training_wrapper.py",
    "spot_watcher.py",
)
"""What the instance downloads from cached-datasets/scripts/ec2ops/ (the Launch step uploads them)."""


@lru_cache(maxsize=8)
def instance_script(name: str) -> bytes:
    """A file of instance_scripts/, as shipped inside the Lambda asset (linked into the package)."""
    return resources.files("ec2ops_lambda").joinpath("instance_scripts", name).read_bytes()


def render(settings: dict[str, Any]) -> str:
    """bootstrap.sh with the settings line filled; ValueError when the result exceeds EC2's limit."""
    template = instance_script("bootstrap.sh").decode()
    if template.count(SETTINGS_LINE) != 1:
        raise ValueError(f"bootstrap.sh must hold exactly one line {SETTINGS_LINE!r}")
    encoded = base64.b64encode(json.dumps(settings, separators=(",", ":")).encode()).decode()
    rendered = template.replace(SETTINGS_LINE, f"EC2OPS_SETTINGS_B64='{encoded}'")
    size = len(rendered.encode())
    if size > USER_DATA_LIMIT:
        raise ValueError(
            f"the user data would be {size} bytes, over EC2's {USER_DATA_LIMIT}: shorten the training config or "
            "the command"
        )
    return rendered


def settings_of(user_data: str) -> dict[str, Any]:
    """The settings a rendered user data carries (for tests and the demo)."""
    for line in user_data.splitlines():
        if line.startswith("EC2OPS_SETTINGS_B64='"):
            decoded: dict[str, Any] = json.loads(base64.b64decode(line.split("'")[1]))
            return decoded
    raise ValueError("no settings line in this user data")
