"""Pieces every workflow's models share: UTC timestamps, EC2 tags, validation errors in plain words."""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, ValidationError


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; a naive time (as moto stores) is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and `Z`: fixed width, so ledger keys sort by time as text."""
    utc = as_utc(moment)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


UtcDatetime = Annotated[
    AwareDatetime,
    AfterValidator(as_utc),
    PlainSerializer(iso, return_type=str, when_used="json"),
]
"""A timestamp that travels through Step Functions as `2025-01-31T12:00:00.000Z`."""


class Tag(BaseModel):
    """One EC2 tag, named as the EC2 API (and so the CreateSnapshots SDK task) wants it, on any pydantic 2."""

    model_config = ConfigDict(frozen=True)

    Key: str = Field(min_length=1, max_length=128)
    Value: str = Field(max_length=256)


def tags_dict(tags: Sequence[Mapping[str, Any]] | None) -> dict[str, str]:
    """EC2's [{Key, Value}] list as a dict, for lookups."""
    return {str(tag.get("Key")): str(tag.get("Value", "")) for tag in tags or []}


def shown(value: Any, limit: int = 60) -> str:
    """A value as a user typed it (JSON-ish), short enough for an error message."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _model_at(model: type[BaseModel], path: Sequence[str | int]) -> type[BaseModel] | None:
    """The nested model a location points into, to list its fields for an unknown-field error."""
    current: type[BaseModel] | None = model
    for part in path:
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            return None
        current = _first_model(current.model_fields[part].annotation)
    return current


def _first_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside `Model | None`, so nested unknown fields can list their siblings."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for member in typing.get_args(annotation):
            found = _first_model(member)
            if found is not None:
                return found
    return None


def _plain(kind: str, ctx: Mapping[str, Any], got: Any, hint: str | None) -> str:
    """One pydantic error type in words a console user understands."""
    seen = f" (got {shown(got)})"
    if hint is not None and kind in ("string_pattern_mismatch", "string_type", "model_type", "dict_type"):
        return f"{hint}{seen}"
    if kind == "missing":
        return "is required"
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty"
        return f"must be at least {ctx.get('min_length')} characters{seen}"
    if kind == "string_too_long":
        length = len(got) if isinstance(got, str) else "?"
        return f"must be at most {ctx.get('max_length')} characters (got {length})"
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        return f"must be at least {bound}{seen}" if kind == "greater_than_equal" else f"must be more than {bound}{seen}"
    if kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        return f"must be at most {bound}{seen}" if kind == "less_than_equal" else f"must be less than {bound}{seen}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number{seen}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false{seen}"
    if kind == "string_type":
        return f"must be text{seen}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a JSON object{seen}"
    if kind == "list_type":
        return f"must be a list{seen}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}{seen}"
    return f"{ctx.get('error', kind)}{seen}"


def explain(error: ValidationError, model: type[BaseModel], hints: Mapping[str, str] | None = None) -> list[str]:
    """Each problem of a failed validation as `field: what is wrong (got value)`, in input order."""
    problems: list[str] = []
    for item in error.errors(include_url=False):
        loc = [part for part in item["loc"] if isinstance(part, (str, int))]
        where = ".".join(str(part) for part in loc)
        if item["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            allowed = f" (allowed: {', '.join(parent.model_fields)})" if parent is not None else ""
            problems.append(f"unknown field '{where}'{allowed}")
            continue
        hint = (hints or {}).get(where)
        problems.append(f"{where or 'input'}: {_plain(item['type'], item.get('ctx') or {}, item.get('input'), hint)}")
    return problems


def caught_error(error: Any) -> tuple[str, str]:
    """(name, cause) of a Step Functions Catch result `{"Error", "Cause"}`; a Lambda's cause is the JSON of its
    error, of which the message is what people read."""
    name = str((error or {}).get("Error") or "States.TaskFailed")
    cause = str((error or {}).get("Cause") or "")
    try:
        parsed = json.loads(cause)
    except ValueError:
        return name, cause
    if isinstance(parsed, dict) and parsed.get("errorMessage"):
        cause = str(parsed["errorMessage"])
    return name, cause
