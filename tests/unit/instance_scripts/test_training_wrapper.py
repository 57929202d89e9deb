"""The training wrapper: a real child process, its log and checkpoints in S3 (moto), metrics, heartbeats, stopping."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
import training_wrapper
from moto import mock_aws
from training_wrapper import CommandHeartbeat, S3Uploader, StepFunctionsHeartbeat, Wrapper, WrapperConfig

BUCKET = "ec2ops-test-bucket"
PREFIX = "dev/run-1"
SCRIPT = Path(training_wrapper.__file__)


class RecordingUploader:
    """Keeps what each upload held at the time it happened."""

    def __init__(self) -> None:
        self.uploads: list[tuple[str, bytes]] = []

    def upload_file(self, path: Path, key: str) -> None:
        self.uploads.append((key, path.read_bytes()))

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.uploads]


class RecordingHeartbeat:
    def __init__(self, name: str = "recorder", fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.beats = 0

    def beat(self) -> None:
        self.beats += 1
        if self.fail:
            raise RuntimeError("ThrottlingException")


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def terminate_when_ready(wrapper: Wrapper, ready: Path) -> None:
    """What the SIGTERM handler does, from another thread once the child is up (signals need the main thread)."""

    def later() -> None:
        wait_for(ready.exists)
        wrapper.terminate()

    threading.Thread(target=later, daemon=True).start()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def config(workdir: Path) -> WrapperConfig:
    return WrapperConfig(
        command=[sys.executable, "train.py"],
        workdir=workdir,
        log_dir=workdir / "logs",
        checkpoint_dir=workdir / "checkpoints",
        models_dir=workdir / "models",
        checkpoint_request=workdir / ".ec2ops" / "checkpoint-now",
        output=workdir / "training.json",
        s3_prefix=PREFIX,
        upload_interval=0.1,
        heartbeat_interval=0.1,
        grace_seconds=5.0,
        checkpoint_settle=3.0,
        checkpoint_quiet=0.1,
    )


def child(workdir: Path, body: str) -> None:
    """The training script: gets EC2OPS_CHECKPOINT_DIR / EC2OPS_MODELS_DIR from the wrapper."""
    header = "import json, os, signal, sys, time\nfrom pathlib import Path\n"
    header += "CKPT = Path(os.environ['EC2OPS_CHECKPOINT_DIR'])\nMODELS = Path(os.environ['EC2OPS_MODELS_DIR'])\n"
    (workdir / "train.py").write_text(header + textwrap.dedent(body))


def record(config: WrapperConfig) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(config.output.read_text())
    return data


def s3_text(s3: Any, key: str) -> str:
    body: bytes = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return body.decode()


def test_successful_run_uploads_log_checkpoints_models_and_training_json(s3: Any, config: WrapperConfig) -> None:
    child(
        config.workdir,
        """
        print("starting", flush=True)
        print("METRIC loss=0.9 accuracy=0.5")
        print(json.dumps({"metric": "loss", "value": 0.3, "step": 10}))
        print("warning on stderr", file=sys.stderr)
        CKPT.mkdir(parents=True)
        (CKPT / "epoch-1.pt").write_text("weights")
        MODELS.mkdir(parents=True)
        (MODELS / "final" / "model.bin").parent.mkdir()
        (MODELS / "final" / "model.bin").write_text("model")
        """,
    )
    echo = io.StringIO()

    code = Wrapper(config, uploader=S3Uploader(BUCKET), echo=echo).run()

    assert code == 0
    result = record(config)
    assert result["status"] == "succeeded"
    assert result["exit_code"] == 0
    assert result["error"] is None
    assert result["command"] == [sys.executable, "train.py"]
    assert result["duration_seconds"] >= 0
    assert result["started_at"].endswith("Z")
    assert result["metrics"]["loss"] == {
        "last": 0.3,
        "count": 2,
        "series": [{"step": None, "value": 0.9}, {"step": 10, "value": 0.3}],
    }
    assert result["metrics"]["accuracy"]["last"] == 0.5
    assert sorted(result["artifacts"]) == [
        f"{PREFIX}/checkpoints/epoch-1.pt",
        f"{PREFIX}/logs/training.log",
        f"{PREFIX}/models/final/model.bin",
    ]
    log = s3_text(s3, f"{PREFIX}/logs/training.log")
    assert "starting\n" in log
    assert "warning on stderr\n" in log
    assert log == (config.log_dir / "training.log").read_text()
    assert "METRIC loss=0.9" in echo.getvalue()
    assert s3_text(s3, f"{PREFIX}/checkpoints/epoch-1.pt") == "weights"
    assert s3_text(s3, f"{PREFIX}/models/final/model.bin") == "model"
    assert json.loads(s3_text(s3, f"{PREFIX}/training.json")) == result


def test_failing_command_is_recorded_with_its_exit_code(s3: Any, config: WrapperConfig) -> None:
    child(config.workdir, "print('METRIC loss=1.5')\nsys.exit(3)\n")

    code = Wrapper(config, uploader=S3Uploader(BUCKET), echo=io.StringIO()).run()

    assert code == 3
    result = json.loads(s3_text(s3, f"{PREFIX}/training.json"))
    assert result["status"] == "failed"
    assert result["exit_code"] == 3
    assert result["error"] == "training command exited with code 3"
    assert result["metrics"]["loss"]["last"] == 1.5


def test_command_killed_by_a_signal_reports_128_plus_the_signal(config: WrapperConfig) -> None:
    child(config.workdir, "os.kill(os.getpid(), signal.SIGKILL)\n")

    code = Wrapper(config, echo=io.StringIO()).run()

    assert code == 137
    assert record(config)["error"] == "training command exited with code 137 (SIGKILL)"


def test_command_that_cannot_start_fails_with_127(config: WrapperConfig) -> None:
    missing = replace(config, command=["/nonexistent/python", "train.py"])

    code = Wrapper(missing, echo=io.StringIO()).run()

    assert code == 127
    result = record(missing)
    assert result["status"] == "failed"
    assert result["error"].startswith("training command could not start:")
    assert "could not start" in (missing.log_dir / "training.log").read_text()


def test_log_is_uploaded_while_training_runs(config: WrapperConfig) -> None:
    child(config.workdir, "print('first', flush=True)\ntime.sleep(0.6)\nprint('second')\n")
    uploader = RecordingUploader()

    Wrapper(config, uploader=uploader, echo=io.StringIO()).run()

    logs = [body.decode() for key, body in uploader.uploads if key == f"{PREFIX}/logs/training.log"]
    assert any("first" in log and "second" not in log for log in logs)
    assert "second" in logs[-1]


def test_checkpoint_sync_uploads_only_changed_files(config: WrapperConfig) -> None:
    uploader = RecordingUploader()
    wrapper = Wrapper(config, uploader=uploader)
    (config.checkpoint_dir / "sub").mkdir(parents=True)
    (config.checkpoint_dir / "a.pt").write_text("a")
    (config.checkpoint_dir / "sub" / "b.pt").write_text("b")

    first = wrapper.sync_checkpoints()
    second = wrapper.sync_checkpoints()
    (config.checkpoint_dir / "a.pt").write_text("a, later and longer")
    third = wrapper.sync_checkpoints()

    assert first == [f"{PREFIX}/checkpoints/a.pt", f"{PREFIX}/checkpoints/sub/b.pt"]
    assert second == []
    assert third == [f"{PREFIX}/checkpoints/a.pt"]


def test_failed_upload_is_retried_on_the_next_sync(config: WrapperConfig) -> None:
    class FlakyUploader(RecordingUploader):
        def upload_file(self, path: Path, key: str) -> None:
            if not self.uploads and not getattr(self, "failed", False):
                self.failed = True
                raise ConnectionError("endpoint unreachable")
            super().upload_file(path, key)

    wrapper = Wrapper(config, uploader=FlakyUploader())
    config.checkpoint_dir.mkdir()
    (config.checkpoint_dir / "a.pt").write_text("a")

    assert wrapper.sync_checkpoints() == []
    assert wrapper.sync_checkpoints() == [f"{PREFIX}/checkpoints/a.pt"]


def test_heartbeats_repeat_and_their_failures_are_not_fatal(
    config: WrapperConfig, caplog: pytest.LogCaptureFixture
) -> None:
    child(config.workdir, "time.sleep(0.45)\n")
    good, bad = RecordingHeartbeat(), RecordingHeartbeat("step functions", fail=True)

    code = Wrapper(config, heartbeats=[bad, good], echo=io.StringIO()).run()

    assert code == 0
    assert good.beats >= 3
    assert bad.beats == good.beats
    assert "heartbeat (step functions) failed: ThrottlingException" in caplog.text


def test_step_functions_heartbeat_sends_the_task_token() -> None:
    class FakeSfn:
        def __init__(self) -> None:
            self.calls: list[dict[str, str]] = []

        def send_task_heartbeat(self, **kwargs: str) -> None:
            self.calls.append(kwargs)

    client = FakeSfn()

    StepFunctionsHeartbeat("token-123", client=client).beat()

    assert client.calls == [{"taskToken": "token-123"}]


def test_heartbeat_command_runs_without_a_shell_and_reports_failure(tmp_path: Path) -> None:
    marker = tmp_path / "beats"
    code = f"import sys; open({str(marker)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')"

    CommandHeartbeat([sys.executable, "-c", code, "heartbeat", "$HOME"]).beat()

    assert marker.read_text() == "heartbeat $HOME\n"
    with pytest.raises(RuntimeError, match="exited with code 4: broken"):
        CommandHeartbeat([sys.executable, "-c", "import sys; print('broken', file=sys.stderr); sys.exit(4)"]).beat()


def test_heartbeats_come_from_the_task_token_env_and_the_command_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EC2OPS_TASK_TOKEN", "tok")
    args = training_wrapper.build_parser().parse_args(["--heartbeat-command", "python3 ec2ops_run_state.py heartbeat"])

    beats = training_wrapper.heartbeats_from_args(args)

    assert isinstance(beats[0], StepFunctionsHeartbeat)
    assert beats[0].task_token == "tok"
    assert isinstance(beats[1], CommandHeartbeat)
    assert beats[1].argv == ["python3", "ec2ops_run_state.py", "heartbeat"]


@pytest.mark.parametrize(
    ("line", "points"),
    [
        ("METRIC loss=0.25", [("loss", 0.25, None)]),
        ("2026-11-23 12:00:00 INFO METRIC lr=1e-4 val/loss=2", [("lr", 1e-4, None), ("val/loss", 2.0, None)]),
        ('{"metric": "loss", "value": 0.3, "step": 10}', [("loss", 0.3, 10)]),
        ('{"metric": "acc", "value": 1}', [("acc", 1.0, None)]),
        ("METRIC loss=abc", []),
        ('{"metric": "loss", "value": "0.3"}', []),
        ('{"metric": "done", "value": true}', []),
        ("{not json", []),
        ("epoch 1 loss=0.3", []),
    ],
)
def test_metric_lines(line: str, points: list[tuple[str, float, int | None]]) -> None:
    assert training_wrapper.parse_metrics(line) == points


def test_metric_series_keeps_the_last_thousand_points_and_counts_all() -> None:
    metrics = training_wrapper.Metrics()
    for step in range(1005):
        metrics.feed(json.dumps({"metric": "loss", "value": step, "step": step}))
    metrics.feed("METRIC loss=nan")

    loss = metrics.to_json()["loss"]

    assert loss["count"] == 1006
    assert len(loss["series"]) == 1000
    assert loss["series"][0] == {"step": 6, "value": 6.0}
    assert loss["last"] is None
    json.dumps(loss, allow_nan=False)


def test_terminate_forwards_sigterm_to_the_child_and_syncs(config: WrapperConfig) -> None:
    child(
        config.workdir,
        """
        def stop(signum, frame):
            (CKPT / "on-sigterm.pt").write_text("saved")
            Path("got-sigterm").write_text(str(signum))
            sys.exit(0)

        signal.signal(signal.SIGTERM, stop)
        CKPT.mkdir(parents=True)
        Path("ready").touch()
        time.sleep(30)
        """,
    )
    uploader = RecordingUploader()
    wrapper = Wrapper(config, uploader=uploader, echo=io.StringIO())
    terminate_when_ready(wrapper, config.workdir / "ready")

    code = wrapper.run()

    assert code == 143
    assert (config.workdir / "got-sigterm").read_text() == str(int(signal.SIGTERM))
    result = record(config)
    assert result["status"] == "killed"
    assert result["exit_code"] == 0
    assert f"{PREFIX}/checkpoints/on-sigterm.pt" in uploader.keys
    assert uploader.keys[-1] == f"{PREFIX}/training.json"


def test_terminate_kills_a_child_that_ignores_sigterm_after_the_grace_period(config: WrapperConfig) -> None:
    child(config.workdir, "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nPath('ready').touch()\ntime.sleep(30)\n")
    wrapper = Wrapper(replace(config, grace_seconds=0.3), echo=io.StringIO())
    terminate_when_ready(wrapper, config.workdir / "ready")
    started = time.monotonic()

    code = wrapper.run()

    assert code == 143
    assert time.monotonic() - started < 5
    result = record(config)
    assert result["status"] == "killed"
    assert result["exit_code"] == 137


def test_checkpoint_request_signals_the_child_syncs_then_removes_the_request(config: WrapperConfig) -> None:
    child(
        config.workdir,
        """
        saved = []

        def checkpoint(signum, frame):
            (CKPT / "requested.pt").write_text("now")
            print("checkpoint saved", flush=True)
            saved.append(time.monotonic())

        signal.signal(signal.SIGUSR1, checkpoint)
        CKPT.mkdir(parents=True)
        Path("ready").touch()
        while not saved or time.monotonic() - saved[0] < 0.4:
            time.sleep(0.02)
        """,
    )
    uploader = RecordingUploader()
    request = config.checkpoint_request
    seen_at_removal: list[str] = []

    def spot_watcher() -> None:
        wait_for((config.workdir / "ready").exists)
        request.parent.mkdir(parents=True, exist_ok=True)
        request.write_text('{"action": "terminate"}')
        wait_for(lambda: not request.exists())
        seen_at_removal.extend(uploader.keys)

    watcher = threading.Thread(target=spot_watcher, daemon=True)
    watcher.start()

    code = Wrapper(config, uploader=uploader, echo=io.StringIO()).run()
    watcher.join(5)

    assert code == 0
    assert f"{PREFIX}/checkpoints/requested.pt" in seen_at_removal
    assert not request.exists()
    assert "checkpoint saved" in (config.log_dir / "training.log").read_text()


@pytest.fixture
def restore_signal_handlers() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.usefixtures("restore_signal_handlers")
def test_main_takes_bucket_prefix_and_intervals_from_env(
    s3: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    child(workdir, "print('METRIC loss=0.1')\n")
    for name, value in {
        "EC2OPS_BUCKET": BUCKET,
        "EC2OPS_S3_PREFIX": PREFIX,
        "EC2OPS_LOG_UPLOAD_SECONDS": "0.1",
        "EC2OPS_HEARTBEAT_SECONDS": "0.1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("EC2OPS_TASK_TOKEN", raising=False)
    monkeypatch.delenv("EC2OPS_CHECKPOINT_DIR", raising=False)
    monkeypatch.delenv("EC2OPS_MODELS_DIR", raising=False)

    code = training_wrapper.main(["--workdir", str(workdir), "--", sys.executable, "train.py"])

    assert code == 0
    assert "METRIC loss=0.1" in capsys.readouterr().out
    result = json.loads(s3_text(s3, f"{PREFIX}/training.json"))
    assert result["metrics"]["loss"]["last"] == 0.1
    assert json.loads((workdir / "training.json").read_text()) == result


def test_main_without_a_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        training_wrapper.main(["--workdir", "/tmp"])

    assert exited.value.code == 2
    assert "give it after --" in capsys.readouterr().err


def test_sigterm_to_the_wrapper_process_stops_the_training_group(workdir: Path) -> None:
    child(
        workdir,
        """
        def stop(signum, frame):
            Path("got-sigterm").touch()
            sys.exit(0)

        signal.signal(signal.SIGTERM, stop)
        Path("ready").touch()
        time.sleep(30)
        """,
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("EC2OPS_")}
    wrapper = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--workdir", str(workdir), "--", sys.executable, "train.py"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for((workdir / "ready").exists)
        wrapper.send_signal(signal.SIGTERM)
        _, stderr = wrapper.communicate(timeout=10)
    finally:
        if wrapper.poll() is None:
            wrapper.kill()

    assert wrapper.returncode == 143
    assert (workdir / "got-sigterm").exists()
    assert json.loads((workdir / "training.json").read_text())["status"] == "killed"
    assert b"received SIGTERM" in stderr


def test_checkpoint_request_never_kills_a_child_without_a_sigusr1_handler(config: WrapperConfig) -> None:
    """SIGUSR1's default action ends a process: a job that cannot checkpoint on request keeps training."""
    child(
        config.workdir,
        """
        CKPT.mkdir(parents=True)
        (CKPT / "epoch-1.pt").write_text("from the last epoch")
        Path("ready").touch()
        while Path("ready").exists():
            time.sleep(0.02)
        print("finished normally")
        """,
    )
    uploader = RecordingUploader()
    request = config.checkpoint_request

    def spot_watcher() -> None:
        wait_for((config.workdir / "ready").exists)
        request.parent.mkdir(parents=True, exist_ok=True)
        request.write_text('{"action": "terminate"}')
        wait_for(lambda: not request.exists(), timeout=10)
        (config.workdir / "ready").unlink()

    watcher = threading.Thread(target=spot_watcher, daemon=True)
    watcher.start()

    code = Wrapper(replace(config, checkpoint_settle=0.5), uploader=uploader, echo=io.StringIO()).run()
    watcher.join(5)

    assert code == 0
    assert f"{PREFIX}/checkpoints/epoch-1.pt" in uploader.keys
    assert "finished normally" in (config.log_dir / "training.log").read_text()


def test_catches_signal_reads_the_process_signal_mask() -> None:
    previous = signal.signal(signal.SIGUSR2, lambda *_: None)
    try:
        assert training_wrapper.catches_signal(os.getpid(), signal.SIGUSR2) is True
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert training_wrapper.catches_signal(os.getpid(), signal.SIGUSR2) is False
    assert training_wrapper.catches_signal(2**22 + 12345, signal.SIGUSR1) is None


def test_training_env_passes_values_verbatim_and_only_valid_names() -> None:
    config = {
        "quote": "a'b\"c",
        "subst": "$(touch /tmp/x) `id`",
        "lines": "line1\nline2",
        "size": 64,
        "nested": {"a": [1, None]},
        "not-a-name": "x",
        "1st": "x",
        "nul": "a\0b",
    }

    env = training_wrapper.training_env(config)

    assert json.loads(env.pop("EC2OPS_TRAINING_CONFIG")) == config
    assert env == {
        "EC2OPS_CONFIG_QUOTE": "a'b\"c",
        "EC2OPS_CONFIG_SUBST": "$(touch /tmp/x) `id`",
        "EC2OPS_CONFIG_LINES": "line1\nline2",
        "EC2OPS_CONFIG_SIZE": "64",
        "EC2OPS_CONFIG_NESTED": '{"a": [1, null]}',
    }


@pytest.mark.usefixtures("restore_signal_handlers")
def test_main_with_settings_runs_their_command_with_the_config_in_the_environment(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    child(
        workdir,
        """
        names = sorted(k for k in os.environ if k.startswith("EC2OPS_CONFIG_") or k == "EC2OPS_TRAINING_CONFIG")
        Path("env.json").write_text(json.dumps({k: os.environ[k] for k in names}))
        Path("argv.json").write_text(json.dumps(sys.argv[1:]))
        """,
    )
    config = {"prediction_length": 64, "tricky": "it's $(rm -rf /) `x`\nsecond line"}
    settings = tmp_path / "settings.json"
    settings.write_text(
        json.dumps({"command": [sys.executable, "train.py", "$HOME", "a b"], "training_config": config})
    )
    monkeypatch.delenv("EC2OPS_BUCKET", raising=False)
    monkeypatch.delenv("EC2OPS_TASK_TOKEN", raising=False)

    code = training_wrapper.main(["--workdir", str(workdir), "--settings", str(settings)])

    assert code == 0
    assert json.loads((workdir / "argv.json").read_text()) == ["$HOME", "a b"]
    assert json.loads((workdir / "env.json").read_text()) == {
        "EC2OPS_CONFIG_PREDICTION_LENGTH": "64",
        "EC2OPS_CONFIG_TRICKY": "it's $(rm -rf /) `x`\nsecond line",
        "EC2OPS_TRAINING_CONFIG": json.dumps(config),
    }
    assert json.loads((workdir / "training.json").read_text())["command"] == [
        sys.executable,
        "train.py",
        "$HOME",
        "a b",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"command": "python train.py"}', "command must be a non-empty list of strings"),
        ('{"command": []}', "command must be a non-empty list of strings"),
        ('{"command": ["python"], "training_config": [1]}', "training_config must be an object"),
        ("[1, 2]", "is not a JSON object"),
        ("{not json", "cannot read settings"),
    ],
)
def test_main_refuses_bad_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(content)

    with pytest.raises(SystemExit) as exited:
        training_wrapper.main(["--workdir", str(tmp_path), "--settings", str(settings)])

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_command_after_the_separator_wins_over_the_settings(workdir: Path, tmp_path: Path) -> None:
    child(workdir, "Path('ran').write_text(' '.join(sys.argv[1:]))\n")
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"command": ["false"], "training_config": {"a": 1}}))

    code = training_wrapper.main(
        ["--workdir", str(workdir), "--settings", str(settings), "--", sys.executable, "train.py", "given"]
    )

    assert code == 0
    assert (workdir / "ran").read_text() == "given"


@pytest.mark.usefixtures("restore_signal_handlers")
def test_a_resumed_run_does_not_upload_the_restored_checkpoints_again(
    s3: Any, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    restored = workdir / "checkpoints" / "epoch-2.pt"
    restored.parent.mkdir()
    restored.write_text("from the interrupted attempt")
    child(workdir, "(CKPT / 'epoch-3.pt').write_text('new')\n")
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"command": [sys.executable, "train.py"], "resume": True}))
    monkeypatch.delenv("EC2OPS_TASK_TOKEN", raising=False)
    monkeypatch.delenv("EC2OPS_CHECKPOINT_DIR", raising=False)

    code = training_wrapper.main(
        ["--workdir", str(workdir), "--settings", str(settings), "--bucket", BUCKET, "--s3-prefix", PREFIX]
    )

    assert code == 0
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/checkpoints/")["Contents"]}
    assert keys == {f"{PREFIX}/checkpoints/epoch-3.pt"}
