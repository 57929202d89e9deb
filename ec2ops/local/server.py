"""Loopback mode: the same embedded AWS served over HTTP on 127.0.0.1, for other processes.

Another process (the CLI, an instance script run as a local process) talks to it with `--endpoint-url`.
The server shares moto's state with the in-process emulator. Calls that arrive over HTTP are observed like
in-process ones (EC2 time settles, calls are counted, armed faults answer) where the request names its
operation (query protocols' `Action`, JSON protocols' `X-Amz-Target`).
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from werkzeug.serving import BaseWSGIServer, make_server

from ec2ops.local.faults import ErrorResponse

CallHook = Callable[[str, str], ErrorResponse | None]
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
# signing name -> botocore event service id, where they differ
_SIGNING_TO_EVENT = {"states": "sfn", "monitoring": "cloudwatch", "email": "ses"}


class _ObservedApp:
    """WSGI middleware in front of moto's dispatcher."""

    def __init__(self, app: Any, on_call: CallHook) -> None:
        self.app = app
        self.on_call = on_call

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        service, operation = _identify(environ, body)
        if service and operation:
            error = self.on_call(service, operation)
            if error is not None:
                start_response(f"{error.status} Error", list(error.headers.items()))
                return [error.body]
        return self.app(environ, start_response)  # type: ignore[no-any-return]


def _identify(environ: dict[str, Any], body: bytes) -> tuple[str | None, str | None]:
    scope = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    service = scope.group(1) if scope else None
    if service:
        service = _SIGNING_TO_EVENT.get(service, service)
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return service, target.split(".")[-1]
    action = parse_qs(environ.get("QUERY_STRING", "")).get("Action") or parse_qs(body.decode(errors="ignore")).get(
        "Action"
    )
    return service, action[0] if action else None


class LoopbackServer:
    """moto's server app on 127.0.0.1:<port> in a daemon thread; `stop()` shuts it down."""

    def __init__(self, on_call: CallHook, port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        app = _ObservedApp(DomainDispatcherApplication(create_backend_app), on_call)
        self._server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True)
        self.port = self._server.server_port
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
