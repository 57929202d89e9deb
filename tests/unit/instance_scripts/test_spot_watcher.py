"""The spot watcher against a fake IMDSv2 on loopback: tokens, 404s, a notice, a rebalance recommendation."""

from __future__ import annotations

import json
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import spot_watcher
from spot_watcher import ImdsClient, SpotWatcher, WatcherConfig

NOTICE = {"action": "terminate", "time": "2026-11-23T12:02:00Z"}
REBALANCE = {"noticeTime": "2026-11-23T11:58:00Z"}


class FakeImds:
    """IMDSv2 as the watcher sees it; `notice_after` instance-action polls answer 404 before the notice shows."""

    def __init__(self) -> None:
        self.notice: str | None = None
        self.notice_after = 0
        self.rebalance: str | None = None
        self.expire_tokens_after_gets: int | None = None
        self.tokens: list[str] = []
        self.valid: set[str] = set()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.action_polls = 0
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
        with self.lock:
            self.requests.append((method, path, headers))
            if method == "PUT" and path == spot_watcher.TOKEN_PATH:
                if "x-aws-ec2-metadata-token-ttl-seconds" not in headers:
                    return 400, ""
                token = f"token-{len(self.tokens) + 1}"
                self.tokens.append(token)
                self.valid.add(token)
                return 200, token
            gets = sum(1 for request in self.requests if request[0] == "GET")
            if self.expire_tokens_after_gets is not None and gets > self.expire_tokens_after_gets:
                self.expire_tokens_after_gets = None
                self.valid.clear()
            if headers.get("x-aws-ec2-metadata-token") not in self.valid:
                return 401, ""
            if path == spot_watcher.INSTANCE_ACTION_PATH:
                self.action_polls += 1
                if self.notice is not None and self.action_polls > self.notice_after:
                    return 200, self.notice
                return 404, ""
            if path == spot_watcher.REBALANCE_PATH and self.rebalance is not None:
                return 200, self.rebalance
            return 404, ""

    @property
    def gets(self) -> list[tuple[str, str]]:
        return [
            (path, headers.get("x-aws-ec2-metadata-token", ""))
            for method, path, headers in self.requests
            if method == "GET"
        ]


@pytest.fixture
def imds() -> Iterator[tuple[FakeImds, str]]:
    fake = FakeImds()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            headers = {key.lower(): value for key, value in self.headers.items()}
            status, body = fake.handle(self.command, self.path, headers)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _answer  # noqa: N815
        do_PUT = _answer  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def replace_wait(config: WatcherConfig, seconds: float) -> WatcherConfig:
    return replace(config, checkpoint_wait=seconds)


@pytest.fixture
def config(tmp_path: Path) -> WatcherConfig:
    state = tmp_path / ".ec2ops"
    return WatcherConfig(
        checkpoint_request=state / "checkpoint-now",
        marker=state / "interrupted",
        stop_file=state / "stop-watcher",
        interval=0.02,
        checkpoint_wait=3.0,
        on_interruption=("python3", "ec2ops_run_state.py", "transition", "interrupted"),
    )


class Commands:
    """Records interruption commands, and whether the checkpoint request was still pending when each ran."""

    def __init__(self, request: Path) -> None:
        self.request = request
        self.calls: list[tuple[list[str], str, bool]] = []

    def __call__(self, argv: Sequence[str], notice: str, timeout: float) -> int:
        self.calls.append((list(argv), notice, self.request.exists()))
        return 0


def fake_wrapper(request: Path, seen: list[str]) -> threading.Thread:
    """What training_wrapper does with the request: reads it, syncs, removes it."""

    def confirm() -> None:
        deadline = time.monotonic() + 5
        while not request.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        seen.append(request.read_text())
        request.unlink()

    thread = threading.Thread(target=confirm, daemon=True)
    thread.start()
    return thread


def test_notice_requests_a_checkpoint_then_runs_the_command_once_and_writes_the_marker(
    imds: tuple[FakeImds, str], config: WatcherConfig
) -> None:
    fake, url = imds
    fake.notice, fake.notice_after = json.dumps(NOTICE), 2
    commands = Commands(config.checkpoint_request)
    seen: list[str] = []
    wrapper = fake_wrapper(config.checkpoint_request, seen)

    code = SpotWatcher(config, ImdsClient(url), command_runner=commands).run()
    wrapper.join(5)

    assert code == 0
    assert fake.action_polls == 3
    assert [json.loads(text) for text in seen] == [NOTICE]
    assert commands.calls == [(list(config.on_interruption), json.dumps(NOTICE), False)]
    assert json.loads(config.marker.read_text()) == NOTICE


def test_imdsv2_token_is_fetched_once_with_its_ttl_and_sent_on_every_get(
    imds: tuple[FakeImds, str], config: WatcherConfig
) -> None:
    fake, url = imds
    watcher = SpotWatcher(config, ImdsClient(url), command_runner=Commands(config.checkpoint_request))

    for _ in range(3):
        assert watcher.poll_once() is None

    puts = [headers for method, _, headers in fake.requests if method == "PUT"]
    assert [put["x-aws-ec2-metadata-token-ttl-seconds"] for put in puts] == ["21600"]
    assert fake.gets == [
        (path, "token-1") for _ in range(3) for path in (spot_watcher.INSTANCE_ACTION_PATH, spot_watcher.REBALANCE_PATH)
    ]


def test_token_is_refreshed_when_imds_answers_401(imds: tuple[FakeImds, str], config: WatcherConfig) -> None:
    fake, url = imds
    fake.notice, fake.notice_after = json.dumps(NOTICE), 1
    fake.expire_tokens_after_gets = 2
    commands = Commands(config.checkpoint_request)

    code = SpotWatcher(replace_wait(config, 0.1), ImdsClient(url), command_runner=commands).run()

    assert code == 0
    assert fake.tokens == ["token-1", "token-2"]
    assert ("/latest/meta-data/spot/instance-action", "token-2") in fake.gets
    assert len(commands.calls) == 1


def test_rebalance_recommendation_is_logged_once_and_nothing_else_happens(
    imds: tuple[FakeImds, str], config: WatcherConfig, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = imds
    fake.rebalance = json.dumps(REBALANCE)
    commands = Commands(config.checkpoint_request)
    watcher = SpotWatcher(config, ImdsClient(url), command_runner=commands)

    def stop_after_polls() -> None:
        while fake.action_polls < 5:
            time.sleep(0.01)
        config.stop_file.parent.mkdir(parents=True, exist_ok=True)
        config.stop_file.touch()

    threading.Thread(target=stop_after_polls, daemon=True).start()

    code = watcher.run()

    assert code == 0
    assert watcher.rebalance_seen == json.dumps(REBALANCE)
    assert caplog.text.count("rebalance recommendation") == 1
    assert commands.calls == []
    assert not config.checkpoint_request.exists()
    assert not config.marker.exists()


def test_stop_file_ends_the_watch_before_any_poll(imds: tuple[FakeImds, str], config: WatcherConfig) -> None:
    fake, url = imds
    config.stop_file.parent.mkdir(parents=True)
    config.stop_file.touch()

    assert SpotWatcher(config, ImdsClient(url)).run() == 0
    assert fake.requests == []


def test_unconfirmed_checkpoint_is_waited_for_then_the_notice_is_acted_on(
    imds: tuple[FakeImds, str], config: WatcherConfig, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = imds
    fake.notice = json.dumps(NOTICE)
    commands = Commands(config.checkpoint_request)
    started = time.monotonic()

    code = SpotWatcher(replace_wait(config, 0.2), ImdsClient(url), command_runner=commands).run()

    assert code == 0
    assert time.monotonic() - started >= 0.2
    assert "checkpoint not confirmed within 0.2s" in caplog.text
    assert len(commands.calls) == 1
    assert config.marker.exists()


def test_a_second_notice_is_not_acted_on_again(config: WatcherConfig) -> None:
    commands = Commands(config.checkpoint_request)
    watcher = SpotWatcher(replace_wait(config, 0.0), ImdsClient("http://127.0.0.1:9"), command_runner=commands)

    watcher.handle_interruption(NOTICE)
    watcher.handle_interruption({"action": "stop", "time": "2026-11-23T12:03:00Z"})

    assert len(commands.calls) == 1
    assert json.loads(config.marker.read_text()) == NOTICE


def test_unreachable_imds_is_logged_once_and_polling_goes_on(
    config: WatcherConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    watcher = SpotWatcher(config, ImdsClient(f"http://127.0.0.1:{port}", timeout=0.5))

    assert watcher.poll_once() is None
    assert watcher.poll_once() is None

    assert caplog.text.count("IMDS unavailable") == 1


@pytest.fixture
def restore_signal_handlers() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.usefixtures("restore_signal_handlers")
def test_main_reads_endpoint_and_interval_from_env_and_runs_the_command_line(
    imds: tuple[FakeImds, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = imds
    fake.notice, fake.notice_after = json.dumps(NOTICE), 1
    monkeypatch.setenv("EC2OPS_IMDS_ENDPOINT", url)
    monkeypatch.setenv("EC2OPS_SPOT_POLL_SECONDS", "0.02")
    monkeypatch.delenv("EC2OPS_CHECKPOINT_REQUEST", raising=False)
    ran = tmp_path / "ran.txt"
    script = (
        f"import os, sys; open({str(ran)!r}, 'a').write(sys.argv[1] + ' ' + os.environ['EC2OPS_SPOT_NOTICE'] + '\\n')"
    )
    command = shlex.join([sys.executable, "-c", script, "interrupted"])

    code = spot_watcher.main(["--workdir", str(tmp_path), "--checkpoint-wait", "0.1", "--on-interruption", command])

    assert code == 0
    assert ran.read_text().splitlines() == [f"interrupted {json.dumps(NOTICE)}"]
    state = tmp_path / ".ec2ops"
    assert json.loads((state / "interrupted").read_text()) == NOTICE
    assert json.loads((state / "checkpoint-now").read_text()) == NOTICE
