"""What each execution did: AWS API calls by operation and Lambda invocations by function.

An execution's states, its SDK tasks and the Lambda handlers it invokes all run on threads that moto's Step
Functions interpreter starts for that execution; the interpreter's environment names the execution, so the
thread that evaluates a state is tagged with it (see moto_gaps.tag_threads_with_their_execution) and every call
made on that thread is counted against it.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

UNATTRIBUTED = "(outside any execution)"

_current = threading.local()


def set_current_execution(execution_arn: str | None) -> None:
    _current.execution = execution_arn


def current_execution() -> str:
    return getattr(_current, "execution", None) or UNATTRIBUTED


def set_current_function(function_name: str | None) -> None:
    _current.function = function_name


def current_function() -> str | None:
    return getattr(_current, "function", None)


@dataclass
class ExecutionCounts:
    """Counts for one execution; `state_transitions` is filled from the execution history."""

    api_calls: Counter[str] = field(default_factory=Counter)
    lambda_invocations: Counter[str] = field(default_factory=Counter)
    state_transitions: int = 0
    states_entered: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "state_transitions": self.state_transitions,
            "states_entered": dict(self.states_entered),
            "lambda_invocations": dict(self.lambda_invocations),
            "api_calls": dict(self.api_calls),
        }


class CallCounter:
    """Thread-safe tallies of API calls per execution and per Lambda function."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_execution: dict[str, ExecutionCounts] = {}
        self.by_function: dict[str, Counter[str]] = {}
        self.total: Counter[str] = Counter()

    def api_call(self, service: str, operation: str) -> None:
        key = f"{service}:{operation}"
        with self._lock:
            self.total[key] += 1
            self._counts(current_execution()).api_calls[key] += 1
            function = current_function()
            if function is not None:
                self.by_function.setdefault(function, Counter())[key] += 1

    def lambda_invocation(self, function_name: str) -> None:
        with self._lock:
            self._counts(current_execution()).lambda_invocations[function_name] += 1

    def for_execution(self, execution_arn: str) -> ExecutionCounts:
        with self._lock:
            counts = self._counts(execution_arn)
            return ExecutionCounts(
                Counter(counts.api_calls),
                Counter(counts.lambda_invocations),
                counts.state_transitions,
                Counter(counts.states_entered),
            )

    def _counts(self, execution: str) -> ExecutionCounts:
        return self._by_execution.setdefault(execution, ExecutionCounts())
