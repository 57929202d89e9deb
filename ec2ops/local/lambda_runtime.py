"""Runs the app's Lambda handlers in-process, with each function's configuration from the deployed template.

moto (without Docker) answers every invoke with the request payload. Here an invoke imports the function's
handler module from the Lambda asset, sets the function's environment variables, calls the handler with a
Lambda context, and answers as AWS does: the JSON result, or an `Unhandled` function error whose `errorType`
is the exception's class name (so `Retry`/`Catch` by name work in the state machines).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ec2ops.local import counters


@dataclass
class LambdaContext:
    """The attributes of the AWS Lambda context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    timeout_seconds: int = 60
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self._started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))


@dataclass(frozen=True)
class Invocation:
    function_name: str
    payload: Any
    result: Any
    error_type: str | None


# The process environment is global: one handler runs at a time, with its own variables.
_ENV_LOCK = threading.RLock()


class LambdaRuntime:
    """Imports and calls handlers; keeps a log of invocations for tests and the demo."""

    def __init__(
        self,
        code_root: Path,
        *,
        region: str,
        counter: counters.CallCounter,
        base_env: dict[str, str] | None = None,
    ) -> None:
        self.code_root = code_root.resolve()
        self.region = region
        self.counter = counter
        self.base_env = base_env or {}
        self.invocations: list[Invocation] = []
        if str(self.code_root) not in sys.path:
            sys.path.insert(0, str(self.code_root))

    def resolve_handler(self, handler: str) -> Callable[[Any, Any], Any]:
        module_name, _, attribute = handler.rpartition(".")
        if not module_name:
            raise ValueError(f"handler {handler!r} is not 'module.function'")
        module = importlib.import_module(module_name)
        function: Callable[[Any, Any], Any] = getattr(module, attribute)
        return function

    def invoke(
        self,
        *,
        function_name: str,
        function_arn: str,
        handler: str,
        environment: dict[str, str],
        memory_mb: int,
        timeout_s: int,
        payload: Any,
    ) -> tuple[bytes, str | None]:
        """Run one invocation; returns (response body, function error or None)."""
        self.counter.lambda_invocation(function_name)
        context = LambdaContext(
            function_name=function_name,
            memory_limit_in_mb=memory_mb,
            invoked_function_arn=function_arn,
            log_group_name=f"/aws/lambda/{function_name}",
            timeout_seconds=timeout_s,
        )
        env = {
            **self.base_env,
            **environment,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        }
        with _ENV_LOCK, _environment(env), _current_function(function_name):
            try:
                result = self.resolve_handler(handler)(payload, context)
                body = json.dumps(result, default=str).encode()
                self.invocations.append(Invocation(function_name, payload, result, None))
                return body, None
            except Exception as error:  # the runtime reports any exception as the function's error
                error_type = type(error).__name__
                self.invocations.append(Invocation(function_name, payload, None, error_type))
                body = json.dumps(
                    {
                        "errorMessage": str(error),
                        "errorType": error_type,
                        "requestId": context.aws_request_id,
                        "stackTrace": traceback.format_tb(error.__traceback__),
                    }
                ).encode()
                return body, "Unhandled"


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _current_function(function_name: str) -> Iterator[None]:
    previous = counters.current_function()
    counters.set_current_function(function_name)
    try:
        yield
    finally:
        counters.set_current_function(previous)
