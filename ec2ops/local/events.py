"""EventBridge rules and EventBridge Scheduler schedules that really start what they target.

moto matches rule patterns but delivers only to SQS, logs and buses (a Step Functions or Lambda target raises
NotImplementedError), and it stores schedules without ever firing them. The router delivers a matched event to
Step Functions targets (input as the target says: `Input`, `InputPath` or `InputTransformer`), and fires
one-time `at(...)` and `rate(...)` schedules when the emulator clock passes their time.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from jsonpath_ng.ext import parse as jsonpath  # type: ignore[attr-defined]

StartExecution = Callable[[str, str, str], str]  # (state machine arn, name, input json) -> execution arn

_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Delivery:
    source: str  # "rule:<name>" or "schedule:<group>/<name>"
    target_arn: str
    execution_arn: str
    input: str


@dataclass
class _Collector:
    started: list[str] = field(default_factory=list)


class EventRouter:
    """Delivers events and schedules to Step Functions targets; remembers what it started."""

    def __init__(self, start_execution: StartExecution) -> None:
        self._start_execution = start_execution
        self.deliveries: list[Delivery] = []
        self._collectors = threading.local()
        self._fired_once: set[str] = set()
        self._next_rate_run: dict[str, datetime] = {}
        self._lock = threading.RLock()

    @contextmanager
    def collect(self) -> Iterator[list[str]]:
        """Within the block, collect the execution ARNs that deliveries on this thread start."""
        collector = _Collector()
        self._collectors.current = collector
        try:
            yield collector.started
        finally:
            self._collectors.current = None

    def deliver(self, source: str, target: dict[str, Any], event: dict[str, Any]) -> str | None:
        arn: str = target["Arn"]
        if ":states:" not in arn or ":stateMachine:" not in arn:
            return None
        payload = target_input(target, event)
        name = f"{_name_part(source)}-{uuid.uuid4().hex[:12]}"
        execution_arn = self._start_execution(arn, name, payload)
        with self._lock:
            self.deliveries.append(Delivery(source, arn, execution_arn, payload))
        collector: _Collector | None = getattr(self._collectors, "current", None)
        if collector is not None:
            collector.started.append(execution_arn)
        return execution_arn

    # --- schedules -------------------------------------------------------------------------------------
    def fire_due_schedules(self, now: datetime, scheduler_backend: Any) -> list[str]:
        """Start the targets of every due schedule; one-time schedules fire once (and are deleted if asked)."""
        started: list[str] = []
        for group in list(scheduler_backend.schedule_groups.values()):
            for schedule in list(group.schedules.values()):
                if schedule.state != "ENABLED":
                    continue
                key = schedule.arn
                created = datetime.fromtimestamp(float(schedule.creation_date), UTC)
                due = self._due(key, schedule.schedule_expression, now, created)
                if due is None:
                    continue
                event = {"schedule": schedule.arn, "time": now.isoformat()}
                execution = self.deliver(f"schedule:{group.name}/{schedule.name}", schedule.target, event)
                if execution:
                    started.append(execution)
                if _AT.match(schedule.schedule_expression):
                    self._fired_once.add(key)
                    if (schedule.action_after_completion or "NONE") == "DELETE":
                        group.delete_schedule(schedule.name)
        return started

    def _due(self, key: str, expression: str, now: datetime, created: datetime) -> datetime | None:
        at = _AT.match(expression)
        if at:
            when = datetime.fromisoformat(at.group(1)).replace(tzinfo=UTC)
            if key in self._fired_once or when > now:
                return None
            return when
        rate = _RATE.match(expression)
        if rate:
            period = timedelta(seconds=int(rate.group(1)) * _UNIT_SECONDS[rate.group(2).rstrip("s")])
            next_run = self._next_rate_run.setdefault(key, created + period)
            if next_run > now:
                return None
            while self._next_rate_run[key] <= now:  # one run per due time, however far the clock jumped
                self._next_rate_run[key] += period
            return next_run
        return None


def target_input(target: dict[str, Any], event: dict[str, Any]) -> str:
    """The JSON a target receives, per EventBridge's rules: Input, else InputPath, else InputTransformer."""
    if target.get("Input") is not None:
        return str(target["Input"])
    if target.get("InputPath"):
        matches = jsonpath(target["InputPath"]).find(event)
        return json.dumps(matches[0].value if matches else None)
    transformer = target.get("InputTransformer")
    if transformer:
        return transform_input(transformer.get("InputTemplate", ""), transformer.get("InputPathsMap", {}), event)
    return json.dumps(event)


_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.-]+)>")


def transform_input(template: str, paths: dict[str, str], event: dict[str, Any]) -> str:
    """EventBridge's input transformer: a placeholder outside a JSON string becomes the value as JSON;
    inside a string, its text. A path that matches nothing gives null (or nothing, inside a string)."""
    values: dict[str, Any] = {
        "aws.events.event.json": event,
        "aws.events.event": event,
        "aws.events.event.ingestion-time": event.get("time"),
    }
    for name, path in paths.items():
        matches = jsonpath(path).find(event)
        values[name] = matches[0].value if matches else None
    out: list[str] = []
    in_string = False
    index = 0
    while index < len(template):
        char = template[index]
        match = _PLACEHOLDER.match(template, index) if char == "<" else None
        if match and match.group(1) in values:
            value = values[match.group(1)]
            if in_string:
                out.append(
                    "" if value is None else json.dumps(value if isinstance(value, str) else json.dumps(value))[1:-1]
                )
            else:
                out.append(json.dumps(value))
            index = match.end()
            continue
        if char == '"' and (index == 0 or template[index - 1] != "\\"):
            in_string = not in_string
        out.append(char)
        index += 1
    return "".join(out)


def _name_part(source: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "-", source.split(":", 1)[-1])
    return cleaned[-60:].strip("-") or "event"
