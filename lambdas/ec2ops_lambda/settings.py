"""Each function's settings, parsed from the environment the stack sets, at handler entry (never at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ec2ops_lambda.errors import ConfigurationError
from ec2ops_lambda.models.common import explain

_NO_LIMIT = {"", "none", "null"}


def _optional_limit(value: Any) -> Any:
    """`none`/`null`/empty in the environment means no limit, as null does in cdk.json."""
    if isinstance(value, str) and value.strip().lower() in _NO_LIMIT:
        return None
    return value


RetainCount = Annotated[Annotated[int, Field(ge=1, le=1000)] | None, BeforeValidator(_optional_limit)]
RetainDays = Annotated[Annotated[int, Field(ge=1, le=3650)] | None, BeforeValidator(_optional_limit)]


class _Settings(BaseModel):
    """Fields are named after their environment variables (aliases); unrelated variables are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    env: str = Field(default="dev", alias="EC2OPS_ENV", min_length=1)


class PlanSettings(_Settings):
    """Plan fills retention defaults and sets the deadline."""

    retain_count: RetainCount = Field(default=7, alias="SNAPSHOT_RETAIN_COUNT")
    retain_days: RetainDays = Field(default=30, alias="SNAPSHOT_RETAIN_DAYS")
    timeout_minutes: int = Field(default=60, alias="SNAPSHOT_TIMEOUT_MINUTES", ge=1, le=7 * 24 * 60)


class RecordSettings(_Settings):
    """Record writes the ledger."""

    ledger_table: str = Field(alias="LEDGER_TABLE", min_length=1)


class RecordFailureSettings(_Settings):
    """RecordFailure records and notifies best-effort: a missing setting skips that part, loudly, never the cleanup."""

    ledger_table: str | None = Field(default=None, alias="LEDGER_TABLE")
    topic_arn: str | None = Field(default=None, alias="TOPIC_ARN")


SettingsT = TypeVar("SettingsT", bound=_Settings)


def load(kind: type[SettingsT], environ: Mapping[str, str] | None = None) -> SettingsT:
    """The settings of one function from the environment, or a ConfigurationError naming each bad variable."""
    source = os.environ if environ is None else environ
    aliases = {field.alias for field in kind.model_fields.values() if field.alias}
    values = {name: source[name] for name in aliases if name in source}
    try:
        return kind.model_validate(values)
    except ValidationError as error:
        raise ConfigurationError(
            f"{kind.__name__} from the function's environment: "
            + "; ".join(explain(error, kind))
            + ". The stack sets these variables: redeploy (cdk deploy) or fix cdk.json."
        ) from None
