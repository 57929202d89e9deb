"""The console input of ec2ops-training-run, validated before anything is touched (docs/training-runs.md)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from ec2ops_lambda.errors import InvalidInput
from ec2ops_lambda.models.common import explain, shown

ENV_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
TYPE_PATTERN = r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"
MAX_CONFIG_BYTES = 1024
"""The config travels in the instance's user data (16 KB in all, bootstrap.sh included, base64 adds a third):
larger settings belong in a file under cached-datasets/ that the job reads."""
MAX_RUNTIME_HOURS = 72
MAX_ARGUMENTS = 64
EXAMPLE = (
    '{"env": "dev", "instance_type": "g4dn.2xlarge", "market": "spot", "max_runtime_hours": 6, '
    '"command": ["python", "train.py", "--epochs", "3"], "training_config": {"prediction_length": 64}}'
)


def _argument(value: str) -> str:
    if not value or "\x00" in value or len(value) > 4096:
        raise ValueError("each argument must be 1 to 4096 characters, without NUL")
    return value


def _config(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > MAX_CONFIG_BYTES:
        raise ValueError(
            f"is {size} bytes as JSON; at most {MAX_CONFIG_BYTES} fit in the instance's user data (put larger "
            "settings in a file under cached-datasets/ and pass its key)"
        )
    empty = [key for key in value if not key.strip()]
    if empty:
        raise ValueError("keys must not be empty")
    return value


def _relative_key(value: str | None) -> str | None:
    if value is not None and (".." in value.split("/") or value.startswith("/")):
        raise ValueError("must be a relative S3 key prefix without '..'")
    return value


class TrainingRequest(BaseModel):
    """What a user pastes in the console; unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: Annotated[str, Field(pattern=ENV_PATTERN)]
    instance_type: Annotated[str, Field(pattern=TYPE_PATTERN)]
    market: Literal["spot", "on-demand"] = "spot"
    max_runtime_hours: Annotated[float, Field(gt=0, le=MAX_RUNTIME_HOURS, allow_inf_nan=False)]
    command: Annotated[list[Annotated[str, AfterValidator(_argument)]], Field(min_length=1, max_length=MAX_ARGUMENTS)]
    training_config: Annotated[dict[str, Any], AfterValidator(_config)] = Field(default_factory=dict)
    data_prefix: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9._/-]{1,256}$"), AfterValidator(_relative_key)] = None
    python_env: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9._-]{1,128}\.tar\.gz$")] = None
    max_resumes: Annotated[int, Field(ge=0, le=5, strict=True)] = 2


_HINTS = {
    "env": "must be lowercase letters, digits and '-', starting with a letter, at most 32 characters (e.g. dev)",
    "instance_type": "must be an EC2 instance type such as g4dn.2xlarge",
    "max_runtime_hours": f"must be a number of hours above 0 and at most {MAX_RUNTIME_HOURS}",
    "command": 'must be a non-empty list of arguments, e.g. ["python", "train.py"]',
    "python_env": "must name a .tar.gz under cached-datasets/python-env/, e.g. venv-2026.tar.gz",
}


def parse_request(raw: Any) -> TrainingRequest:
    """The request, or InvalidInput naming every problem; nothing is touched before this succeeds."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"the training run input must be a JSON object (got {shown(raw)}), e.g. {EXAMPLE}")
    try:
        return TrainingRequest.model_validate(raw)
    except ValidationError as error:
        problems = explain(error, TrainingRequest, _HINTS)
        raise InvalidInput(
            "the training run input is not valid: "
            + "; ".join(problems)
            + f". Nothing was launched. Example: {EXAMPLE}"
        ) from None
