"""Injected AWS errors: the next N calls of one operation fail with a given error code.

Faults are answered at the botocore layer (where moto intercepts every in-process call), so they reach calls made
by tests, by state-machine SDK tasks and by Lambda handlers alike, and come back as the real error response of
that service's protocol: botocore raises the same `ClientError` it raises on AWS, and the Step Functions task
sees the error name AWS gives (`Ec2.Ec2Exception`, ...).
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from functools import lru_cache

import botocore.session

# Status codes AWS answers with, where not 400.
_STATUS_BY_CODE = {
    "InternalError": 500,
    "InternalFailure": 500,
    "ServiceUnavailable": 503,
    "SlowDown": 503,
    "Unavailable": 503,
}


@dataclass
class Fault:
    service: str
    event_service: str
    operation: str
    code: str
    message: str
    remaining: int
    status: int
    skip: int = 0


@dataclass(frozen=True)
class ErrorResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class FaultInjector:
    """Holds the armed faults; `take(service, operation)` consumes one when a call matches."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.fired: list[tuple[str, str, str]] = []

    def inject(
        self,
        service: str,
        operation: str,
        code: str,
        *,
        times: int = 1,
        message: str | None = None,
        status: int | None = None,
        after: int = 0,
    ) -> None:
        """Arm a fault: the `times` calls that follow the next `after` matching calls fail with `code`."""
        service = service.lower()
        if times < 1:
            raise ValueError(f"times must be at least 1 (got {times})")
        model = _service_model(service)
        if operation not in model.operation_names:
            raise ValueError(f"{service} has no operation {operation!r}: use the API name, e.g. 'StartInstances'")
        with self._lock:
            self._faults.append(
                Fault(
                    service,
                    model.service_id.hyphenize(),
                    operation,
                    code,
                    message or f"Injected fault: {code}",
                    times,
                    status or _STATUS_BY_CODE.get(code, 400),
                    after,
                )
            )

    def pending(self) -> int:
        with self._lock:
            return sum(fault.remaining for fault in self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, event_service: str, operation: str) -> ErrorResponse | None:
        """Consume a fault for this call; `event_service` is botocore's event name part (`ec2`, `sfn`)."""
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.event_service == event_service and fault.operation == operation:
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.remaining -= 1
                    self.fired.append((fault.service, operation, fault.code))
                    return error_response(fault.service, fault.code, fault.message, fault.status)
        return None


@lru_cache(maxsize=64)
def _service_model(service: str) -> botocore.model.ServiceModel:
    return botocore.session.get_session().get_service_model(service)


def error_response(service: str, code: str, message: str, status: int = 400) -> ErrorResponse:
    """The error body AWS sends for this service's protocol, so botocore parses it as it would on AWS."""
    protocol = _service_model(service).protocol
    request_id = str(uuid.uuid4())
    if protocol == "ec2":
        body = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{_xml(message)}</Message></Error>"
            f"</Errors><RequestID>{request_id}</RequestID></Response>"
        )
        return ErrorResponse(status, {"x-amzn-requestid": request_id}, body.encode())
    if protocol == "query":
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{_xml(message)}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return ErrorResponse(status, {"x-amzn-requestid": request_id}, body.encode())
    if protocol == "rest-xml":
        body = (
            f"<Error><Code>{code}</Code><Message>{_xml(message)}</Message><RequestId>{request_id}</RequestId></Error>"
        )
        return ErrorResponse(status, {"x-amz-request-id": request_id}, body.encode())
    headers = {"x-amzn-requestid": request_id, "x-amzn-ErrorType": code, "content-type": "application/json"}
    return ErrorResponse(status, headers, json.dumps({"__type": code, "message": message}).encode())


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
