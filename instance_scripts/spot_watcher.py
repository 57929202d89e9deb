"""Watch instance metadata (IMDSv2) for a spot interruption notice and use the two minutes it gives.

On a notice, once: write the checkpoint request file and wait (up to --checkpoint-wait) for training_wrapper.py to
remove it (the checkpoint is in S3), run --on-interruption, write the --marker file with the notice, exit 0.
A rebalance recommendation is only logged (once). Exits 0 as well when --stop-file appears or on SIGTERM/SIGINT.
Stdlib only (urllib): it must run whatever state the venv is in.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

UTC = timezone.utc  # noqa: UP017 - the instance may run Python 3.10, which has no datetime.UTC
LOG = logging.getLogger("spot_watcher")

DEFAULT_IMDS = "http://169.254.169.254"
TOKEN_PATH = "/latest/api/token"
INSTANCE_ACTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
TOKEN_TTL_SECONDS = 21600
TOKEN_REFRESH_MARGIN_SECONDS = 60.0
HTTP_TIMEOUT_SECONDS = 2.0
COMMAND_TIMEOUT_SECONDS = 60.0
WAIT_TICK_SECONDS = 0.2


class ImdsError(Exception):
    """IMDS answered with something other than 200/404, or could not be reached."""


class _Unauthorized(ImdsError):
    """401: the token expired or IMDS restarted; a new token is fetched and the GET retried once."""


class ImdsClient:
    """IMDSv2: a session token from PUT, reused until near its TTL, renewed at once when IMDS answers 401."""

    def __init__(
        self,
        base_url: str = DEFAULT_IMDS,
        timeout: float = HTTP_TIMEOUT_SECONDS,
        ttl_seconds: int = TOKEN_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._token: str | None = None
        self._token_expires = 0.0

    def token(self) -> str:
        if self._token is None or self.clock() >= self._token_expires:
            request = urllib.request.Request(
                self.base_url + TOKEN_PATH,
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(self.ttl_seconds)},
            )
            body = self._open(request, "token")
            if body is None:
                raise ImdsError("token request answered 404")
            self._token = body.strip()
            self._token_expires = self.clock() + self.ttl_seconds - TOKEN_REFRESH_MARGIN_SECONDS
        return self._token

    def get(self, path: str) -> str | None:
        """The document at path, or None when IMDS says 404 (nothing to report)."""
        for attempt in range(2):
            request = urllib.request.Request(
                self.base_url + path, headers={"X-aws-ec2-metadata-token": self.token()}, method="GET"
            )
            try:
                return self._open(request, path)
            except _Unauthorized:
                self._token = None
                if attempt == 0:
                    LOG.info("IMDS token refused (401): fetching a new one")
        raise ImdsError(f"GET {path}: 401 after a fresh token")

    def _open(self, request: urllib.request.Request, what: str) -> str | None:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body: bytes = response.read()
                return body.decode("utf-8", errors="replace")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            if error.code == 401:
                raise _Unauthorized from error
            raise ImdsError(f"{what}: HTTP {error.code}") from error
        except (urllib.error.URLError, OSError) as error:
            raise ImdsError(f"{what}: {getattr(error, 'reason', error)}") from error


@dataclass(frozen=True)
class WatcherConfig:
    checkpoint_request: Path
    marker: Path
    stop_file: Path
    interval: float = 5.0
    checkpoint_wait: float = 60.0
    on_interruption: tuple[str, ...] = ()
    command_timeout: float = COMMAND_TIMEOUT_SECONDS


def run_command(argv: Sequence[str], notice: str, timeout: float) -> int:
    """The interruption command, without a shell; it also finds the notice in EC2OPS_SPOT_NOTICE."""
    env = {**os.environ, "EC2OPS_SPOT_NOTICE": notice}
    try:
        done = subprocess.run(list(argv), env=env, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        LOG.error("interruption command %s failed: %s", shlex.join(argv), error)
        return -1
    if done.returncode != 0:
        LOG.error("interruption command %s exited with code %s", shlex.join(argv), done.returncode)
    return done.returncode


class SpotWatcher:
    def __init__(
        self,
        config: WatcherConfig,
        imds: ImdsClient,
        command_runner: Callable[[Sequence[str], str, float], int] = run_command,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.imds = imds
        self.command_runner = command_runner
        self.now = now
        self.rebalance_seen: str | None = None
        self.notice: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._last_error: str | None = None

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        LOG.info("watching %s every %gs", self.imds.base_url, self.config.interval)
        while not self._stop.is_set():
            if self.config.stop_file.exists():
                LOG.info("stop file %s found: exiting", self.config.stop_file)
                return 0
            notice = self.poll_once()
            if notice is not None:
                self.handle_interruption(notice)
                return 0
            self._stop.wait(self.config.interval)
        LOG.info("stopped")
        return 0

    def poll_once(self) -> dict[str, Any] | None:
        """One look at IMDS: the interruption notice if there is one; a rebalance recommendation is logged once."""
        try:
            action = self.imds.get(INSTANCE_ACTION_PATH)
            if action is not None:
                return _parse_notice(action)
            rebalance = self.imds.get(REBALANCE_PATH)
        except ImdsError as error:
            if str(error) != self._last_error:
                LOG.warning("IMDS unavailable: %s (still polling)", error)
                self._last_error = str(error)
            return None
        self._last_error = None
        if rebalance is not None and self.rebalance_seen is None:
            self.rebalance_seen = rebalance.strip()
            LOG.warning("rebalance recommendation: %s (no action: waiting for an interruption notice)", rebalance)
        return None

    def handle_interruption(self, notice: dict[str, Any]) -> None:
        if self.notice is not None:
            return
        self.notice = notice
        text = json.dumps(notice)
        LOG.warning("spot interruption notice: %s%s", text, self._time_left(notice))
        self._request_checkpoint(text)
        if self.config.on_interruption:
            self.command_runner(self.config.on_interruption, text, self.config.command_timeout)
        self.config.marker.parent.mkdir(parents=True, exist_ok=True)
        self.config.marker.write_text(text + "\n")
        LOG.warning("interruption handled; marker written to %s", self.config.marker)

    def _request_checkpoint(self, text: str) -> bool:
        """Ask the wrapper for a checkpoint; it removes the file once the checkpoint is synced."""
        request = self.config.checkpoint_request
        request.parent.mkdir(parents=True, exist_ok=True)
        request.write_text(text + "\n")
        deadline = time.monotonic() + self.config.checkpoint_wait
        while request.exists():
            if time.monotonic() >= deadline:
                LOG.error("checkpoint not confirmed within %gs: going on without it", self.config.checkpoint_wait)
                return False
            time.sleep(min(WAIT_TICK_SECONDS, self.config.interval))
        LOG.warning("checkpoint synced")
        return True

    def _time_left(self, notice: dict[str, Any]) -> str:
        try:
            when = datetime.fromisoformat(str(notice["time"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            return ""
        return f" ({(when - self.now()).total_seconds():.0f}s left)"


def _parse_notice(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {"raw": text.strip()}
    return data if isinstance(data, dict) else {"raw": text.strip()}


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Act on a spot interruption notice from instance metadata.")
    env = os.environ.get
    parser.add_argument("--workdir", default=os.getcwd(), help="base of the default file paths (default: here)")
    parser.add_argument("--interval", type=float, default=_env_float("EC2OPS_SPOT_POLL_SECONDS", 5.0))
    parser.add_argument("--imds", default=env("EC2OPS_IMDS_ENDPOINT") or DEFAULT_IMDS)
    parser.add_argument(
        "--checkpoint-request",
        default=env("EC2OPS_CHECKPOINT_REQUEST"),
        help="file the wrapper watches (default <workdir>/.ec2ops/checkpoint-now)",
    )
    parser.add_argument("--checkpoint-wait", type=float, default=60.0)
    parser.add_argument("--on-interruption", default="", help="command run once on a notice (split like a shell)")
    parser.add_argument("--marker", default=None, help="default <workdir>/.ec2ops/interrupted")
    parser.add_argument(
        "--stop-file", default=None, help="exit when it appears (default <workdir>/.ec2ops/stop-watcher)"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> WatcherConfig:
    state = Path(args.workdir).resolve() / ".ec2ops"
    return WatcherConfig(
        checkpoint_request=Path(args.checkpoint_request) if args.checkpoint_request else state / "checkpoint-now",
        marker=Path(args.marker) if args.marker else state / "interrupted",
        stop_file=Path(args.stop_file) if args.stop_file else state / "stop-watcher",
        interval=args.interval,
        checkpoint_wait=args.checkpoint_wait,
        on_interruption=tuple(shlex.split(args.on_interruption)),
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s spot_watcher %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    watcher = SpotWatcher(config_from_args(args), ImdsClient(args.imds))

    def stop(signum: int, _frame: FrameType | None) -> None:
        LOG.info("received %s", signal.Signals(signum).name)
        watcher.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    return watcher.run()


if __name__ == "__main__":
    sys.exit(main())
