"""A fake EC2 instance metadata service (IMDSv2 only) on loopback, one per locally-run instance.

A training instance's scripts ask the metadata service who they are (bootstrap.sh with curl) and whether the
instance is about to go (spot_watcher.py with urllib, polling `spot/instance-action` and
`events/recommendations/rebalance` every 5 s). To run those scripts for real as local processes, each one gets
its own `MetadataServer` on 127.0.0.1 serving one `InstanceMetadata`; the emulator (or a test) changes that
metadata while the scripts run, e.g. `announce_interruption` when the market reclaims the instance.

It behaves as real IMDSv2 does where a script could tell the difference: a session token from
`PUT /latest/api/token` is required on every GET (401 without; no IMDSv1 fallback, as on instances launched
with `HttpTokens=required`), TTLs outside 1..21600 are refused (400), a PUT that carries `X-Forwarded-For` is
refused (403, AWS's guard against proxied token requests), notices are 404 until announced, user data is 404
when empty, and every answer is text/plain. Token expiry follows an injected clock so tests can expire tokens
without waiting.
"""

from __future__ import annotations

import json
import secrets
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal, cast

Market = Literal["spot", "on-demand"]
InstanceAction = Literal["terminate", "stop", "hibernate"]
# A directory of the metadata tree: names -> subdirectories or leaf documents.
Tree = dict[str, "Tree | bytes"]

TOKEN_PATH = "/latest/api/token"
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
ACCOUNT_ID = "123456789012"
# What instance roles' credentials look like to a script; the embedded AWS accepts any key.
CREDENTIALS_LIFETIME = timedelta(hours=6)
_ACTIONS = ("terminate", "stop", "hibernate")


def _iso(at: datetime) -> str:
    """IMDS's timestamp form, `2024-05-01T12:00:00Z`; naive datetimes are UTC (the form moto stores)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(document: Mapping[str, object]) -> bytes:
    return json.dumps(document, indent=2).encode()


@dataclass(eq=False)
class InstanceMetadata:
    """What one instance's metadata service serves. Mutable while the service runs; reads and writes take a lock.

    `region` defaults to the AZ's region and `local_ipv4` to a stable 10.0.0.x derived from the instance id, so a
    caller only has to name the instance, its type and its AZ.
    """

    instance_id: str
    instance_type: str
    availability_zone: str
    region: str = ""
    ami_id: str = "ami-12c6146b"
    local_ipv4: str = ""
    user_data: bytes = b""
    iam_role_name: str | None = None
    market: Market = "on-demand"
    launch_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    _instance_action: dict[str, str] | None = field(default=None, init=False, repr=False)
    _rebalance: dict[str, str] | None = field(default=None, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.market not in ("spot", "on-demand"):
            raise ValueError(f"market is 'spot' or 'on-demand', not {self.market!r}")
        if not self.region:
            self.region = self.availability_zone.rstrip("abcdefghijklmnopqrstuvwxyz")
        if not self.local_ipv4:
            self.local_ipv4 = f"10.0.0.{zlib.crc32(self.instance_id.encode()) % 250 + 4}"

    def announce_interruption(self, action: str, at: datetime) -> None:
        """The two-minute warning: `spot/instance-action` answers {"action": ..., "time": ...} from now on.

        `at` is when the instance will be interrupted (two minutes after the notice on AWS). Announcing again
        replaces the notice, as a repeated notice would.
        """
        if action not in _ACTIONS:
            raise ValueError(f"instance action is one of {_ACTIONS}, not {action!r}")
        with self._lock:
            self._instance_action = {"action": action, "time": _iso(at)}

    def announce_rebalance(self, at: datetime) -> None:
        """The rebalance recommendation: `events/recommendations/rebalance` answers {"noticeTime": ...}."""
        with self._lock:
            self._rebalance = {"noticeTime": _iso(at)}

    def clear_notices(self) -> None:
        """Withdraw both notices (a reused metadata object, or a test that wants them gone again)."""
        with self._lock:
            self._instance_action = None
            self._rebalance = None

    def tree(self, now: datetime) -> Tree:
        """The whole metadata tree as of `now` (credentials are dated from it), read in one consistent snapshot."""
        with self._lock:
            domain = "ec2.internal" if self.region == "us-east-1" else f"{self.region}.compute.internal"
            hostname = f"ip-{self.local_ipv4.replace('.', '-')}.{domain}".encode()
            meta: Tree = {
                "ami-id": self.ami_id.encode(),
                "ami-launch-index": b"0",
                "hostname": hostname,
                "instance-id": self.instance_id.encode(),
                "instance-life-cycle": self.market.encode(),
                "instance-type": self.instance_type.encode(),
                "local-hostname": hostname,
                "local-ipv4": self.local_ipv4.encode(),
                "placement": {
                    "availability-zone": self.availability_zone.encode(),
                    "region": self.region.encode(),
                },
            }
            if self._rebalance is not None:
                meta["events"] = {"recommendations": {"rebalance": _json(self._rebalance)}}
            if self._instance_action is not None:
                meta["spot"] = {"instance-action": _json(self._instance_action)}
            if self.iam_role_name:
                meta["iam"] = self._iam(self.iam_role_name, now)
            latest: Tree = {
                "dynamic": {"instance-identity": {"document": self._identity_document()}},
                "meta-data": meta,
            }
            if self.user_data:
                latest["user-data"] = bytes(self.user_data)
            return {"latest": latest}

    def _iam(self, role: str, now: datetime) -> Tree:
        credentials = {
            "Code": "Success",
            "LastUpdated": _iso(now),
            "Type": "AWS-HMAC",
            "AccessKeyId": "testing",
            "SecretAccessKey": "testing",
            "Token": "testing",
            "Expiration": _iso(now + CREDENTIALS_LIFETIME),
        }
        info = {
            "Code": "Success",
            "LastUpdated": _iso(now),
            "InstanceProfileArn": f"arn:aws:iam::{ACCOUNT_ID}:instance-profile/{role}",
            "InstanceProfileId": "AIPAEXAMPLEINSTANCEPROFILE",
        }
        return {"info": _json(info), "security-credentials": {role: _json(credentials)}}

    def _identity_document(self) -> bytes:
        return _json(
            {
                "accountId": ACCOUNT_ID,
                "architecture": "x86_64",
                "availabilityZone": self.availability_zone,
                "billingProducts": None,
                "devpayProductCodes": None,
                "marketplaceProductCodes": None,
                "imageId": self.ami_id,
                "instanceId": self.instance_id,
                "instanceType": self.instance_type,
                "kernelId": None,
                "pendingTime": _iso(self.launch_time),
                "privateIp": self.local_ipv4,
                "ramdiskId": None,
                "region": self.region,
                "version": "2017-09-30",
            }
        )


def _lookup(tree: Tree, path: str) -> Tree | bytes | None:
    node: Tree | bytes = tree
    for part in (p for p in path.split("/") if p):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _listing(directory: Tree) -> bytes:
    """A directory as IMDS lists it: one name per line, subdirectories with a trailing slash."""
    return "\n".join(f"{name}/" if isinstance(child, dict) else name for name, child in directory.items()).encode()


class _Handler(BaseHTTPRequestHandler):
    server_version = "EC2ws"
    sys_version = ""

    @property
    def imds(self) -> MetadataServer:
        return cast("_HTTPServer", self.server).imds

    def log_message(self, format: str, *args: object) -> None:
        """Instance scripts poll every few seconds; a line per request on stderr would drown the test output."""

    def do_PUT(self) -> None:
        path = self._count()
        if path != TOKEN_PATH:
            self._reply(405, b"Method Not Allowed")
            return
        if self.headers.get("X-Forwarded-For") is not None:
            self._reply(403, b"Forbidden")
            return
        ttl = self.imds.parse_ttl(self.headers.get(TOKEN_TTL_HEADER))
        if ttl is None:
            self._reply(400, b"Bad Request")
            return
        self._reply(200, self.imds.issue_token(ttl).encode(), {TOKEN_TTL_HEADER: str(ttl)})

    def do_GET(self) -> None:
        path = self._count()
        if path == TOKEN_PATH:
            self._reply(405, b"Method Not Allowed")
            return
        ttl = self.imds.token_ttl_left(self.headers.get(TOKEN_HEADER))
        if ttl is None:
            self._reply(401, b"Unauthorized")
            return
        node = _lookup(self.imds.metadata.tree(self.imds.now()), path)
        if node is None:
            self._reply(404, b"Not Found")
            return
        body = _listing(node) if isinstance(node, dict) else node
        self._reply(200, body, {TOKEN_TTL_HEADER: str(ttl)})

    def _refuse(self) -> None:
        self._count()
        self._reply(405, b"Method Not Allowed")

    do_POST = do_DELETE = do_PATCH = do_HEAD = _refuse  # noqa: N815 - http.server's dispatch names

    def _count(self) -> str:
        # The request body (if any) is never needed; drain it so the connection closes cleanly.
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        self.imds.count(path)
        return path

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, imds: MetadataServer) -> None:
        self.imds = imds
        super().__init__(("127.0.0.1", 0), _Handler)


class MetadataServer:
    """One instance's IMDSv2 on 127.0.0.1:<free port>, served from a daemon thread.

    The port is bound at construction, so `url` is known before `start()`; as a context manager it starts on
    entry and stops on exit. `requests` counts requests by path (token PUTs included) for tests to assert on.
    """

    def __init__(
        self,
        metadata: InstanceMetadata,
        *,
        token_ttl_max: int = 21600,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not 1 <= token_ttl_max <= 21600:
            raise ValueError(f"token_ttl_max is 1..21600 seconds, not {token_ttl_max}")
        self.metadata = metadata
        self.token_ttl_max = token_ttl_max
        self._clock = clock or (lambda: datetime.now(UTC))
        self.requests: Counter[str] = Counter()
        self._tokens: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self._server = _HTTPServer(self)
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None
        self._stopped = False

    def now(self) -> datetime:
        at = self._clock()
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at

    def start(self) -> MetadataServer:
        if self._stopped:
            raise RuntimeError("a stopped metadata server cannot be restarted; make a new one")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                # serve_forever notices shutdown() between polls; the default 0.5 s would make every stop slow.
                kwargs={"poll_interval": 0.05},
                name=f"imds-{self.metadata.instance_id}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> MetadataServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- what the handler threads call -------------------------------------------------------------------------

    def count(self, path: str) -> None:
        with self._lock:
            self.requests[path] += 1

    def parse_ttl(self, header: str | None) -> int | None:
        """The requested token TTL in seconds, or None when missing, not an integer or out of 1..token_ttl_max."""
        if header is None or not header.strip().isdigit():
            return None
        ttl = int(header.strip())
        return ttl if 1 <= ttl <= self.token_ttl_max else None

    def issue_token(self, ttl: int) -> str:
        token = secrets.token_urlsafe(40)
        now = self.now()
        with self._lock:
            # Drop expired tokens so a script that asks for a token per poll doesn't grow the table forever.
            self._tokens = {t: expiry for t, expiry in self._tokens.items() if expiry > now}
            self._tokens[token] = now + timedelta(seconds=ttl)
        return token

    def token_ttl_left(self, token: str | None) -> int | None:
        """Whole seconds the token has left (what IMDS echoes back), or None when it is unknown or expired."""
        if not token:
            return None
        with self._lock:
            expiry = self._tokens.get(token.strip())
        if expiry is None:
            return None
        left = (expiry - self.now()).total_seconds()
        return max(1, int(left)) if left > 0 else None
