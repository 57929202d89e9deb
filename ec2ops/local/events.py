"""EventBridge rules and EventBridge Scheduler schedules that really start what they target.

moto matches rule patterns but delivers only to SQS, logs and buses (a Step Functions or Lambda target raises
NotImplementedError), and it stores schedules without ever firing them. The router delivers a matched event to
Step Functions targets (input as the target says: `Input`, `InputPath` or `InputTransformer`) and to Lambda
targets (invoked asynchronously, as EventBridge invokes functions: on a thread of its own; what fails is kept in
`target_errors`), and fires one-time `at(...)` and `rate(...)` schedules when the emulator clock passes their time.

It also tracks the "Step Functions Execution Status Change" events being published for executions that end
(moto_gaps.sfn_emits_no_status_change_events), so a waiter can know that an execution's end has been routed.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from jsonpath_ng.ext import parse as jsonpath  # type: ignore[attr-defined]

StartExecution = Callable[[str, str, str], str]  # (state machine arn, name, input json) -> execution arn
InvokeFunction = Callable[[str, str], tuple[bytes, str | None]]  # (function arn, input json) -> (body, error)

_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Delivery:
    source: str  # "rule:<name>" or "schedule:<group>/<name>"
    target_arn: str
    execution_arn: str
    input: str


@dataclass(frozen=True)
class FunctionDelivery:
    """One asynchronous invocation of a Lambda target; `error` is the function error or exception, if any."""

    source: str
    function_arn: str
    input: str
    response: bytes | None
    error: str | None


@dataclass(frozen=True)
class TargetError:
    """A target that could not take its event (a function that raised, a missing function, ...)."""

    source: str
    target_arn: str
    error: str
    message: str
    input: str


@dataclass
class _Collector:
    started: list[str] = field(default_factory=list)


class EventRouter:
    """Delivers events and schedules to Step Functions targets; remembers what it started."""

    def __init__(self, start_execution: StartExecution, invoke_function: InvokeFunction | None = None) -> None:
        self._start_execution = start_execution
        self._invoke_function = invoke_function
        self.deliveries: list[Delivery] = []
        self.function_deliveries: list[FunctionDelivery] = []
        self.target_errors: list[TargetError] = []
        self._threads: list[threading.Thread] = []
        self._publishing: dict[str, int] = {}  # execution arn -> status change events being published
        self._idle = threading.Condition()
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
        """Deliver to a state machine (returns the execution ARN) or a Lambda function (async; returns None)."""
        arn: str = target["Arn"]
        if is_function_target(arn):
            self._invoke_async(source, arn, target_input(target, event))
            return None
        if not is_state_machine_target(arn):
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

    def _invoke_async(self, source: str, function_arn: str, payload: str) -> None:
        def invoke() -> None:
            response: bytes | None = None
            error: str | None = None
            message = ""
            try:
                if self._invoke_function is None:
                    raise NotImplementedError("this router has no Lambda runtime")
                response, error = self._invoke_function(function_arn, payload)
                if error is not None:
                    message = response.decode(errors="replace")
            except Exception as raised:  # kept for the tests to read, as EventBridge keeps failed deliveries
                error, message = type(raised).__name__, str(raised)
            with self._lock:
                self.function_deliveries.append(FunctionDelivery(source, function_arn, payload, response, error))
                if error is not None:
                    self.target_errors.append(TargetError(source, function_arn, error, message, payload))

        thread = threading.Thread(target=invoke, name=f"event-target-{_name_part(source)}", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def join(self, timeout: float = 30.0) -> None:
        """Wait (real seconds) for the Lambda targets invoked so far, and for status change events being routed."""
        deadline = time.monotonic() + timeout
        with self._idle:
            self._idle.wait_for(lambda: not self._publishing, timeout)
        while True:
            with self._lock:
                pending = [t for t in self._threads if t.is_alive()]
                self._threads = pending
            if not pending:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(pending)} Lambda target(s) still running after {timeout}s")
            pending[0].join(left)

    # --- status change events of executions ------------------------------------------------------------
    def begin_publication(self, execution_arn: str) -> None:
        with self._idle:
            self._publishing[execution_arn] = self._publishing.get(execution_arn, 0) + 1

    def end_publication(self, execution_arn: str) -> None:
        with self._idle:
            left = self._publishing.get(execution_arn, 1) - 1
            if left > 0:
                self._publishing[execution_arn] = left
            else:
                self._publishing.pop(execution_arn, None)
            self._idle.notify_all()

    def wait_published(self, execution_arn: str, timeout: float = 30.0) -> bool:
        """Wait until the status change event of this (ended) execution has been routed to its rules' targets."""
        with self._idle:
            return self._idle.wait_for(lambda: execution_arn not in self._publishing, timeout)

    def record_error(self, source: str, target_arn: str, error: BaseException, payload: str) -> None:
        with self._lock:
            self.target_errors.append(TargetError(source, target_arn, type(error).__name__, str(error), payload))

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


def is_state_machine_target(arn: str) -> bool:
    return ":states:" in arn and ":stateMachine:" in arn


def is_function_target(arn: str) -> bool:
    return ":lambda:" in arn and ":function:" in arn


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
