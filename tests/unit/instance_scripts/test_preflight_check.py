"""The GPU preflight: what passes, what fails and how it says so, with nvidia-smi and the venv faked on disk."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import preflight_check
import pytest

TWO_T4 = "Tesla T4, 535.104.05, 15360 MiB\nTesla T4, 535.104.05, 15360 MiB\n"


def executable(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH is one empty folder: nvidia-smi exists only when a test puts it there."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    for name in ("EC2OPS_INSTANCE_TYPE", "EC2OPS_MIN_FREE_GB", "EC2OPS_SKIP_GPU_CHECKS"):
        monkeypatch.delenv(name, raising=False)
    return folder


@pytest.fixture
def nvidia_smi(fake_path: Path) -> Callable[[str], Path]:
    def _install(body: str) -> Path:
        return executable(fake_path / "nvidia-smi", body)

    return _install


def preflight(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object], str]:
    code = preflight_check.main(["--min-free-gb", "0", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def by_name(report: dict[str, object]) -> dict[str, dict[str, object]]:
    checks = report["checks"]
    assert isinstance(checks, list)
    return {check["name"]: check for check in checks}


def test_passes_on_a_gpu_instance_with_driver_and_gpus(
    nvidia_smi: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    nvidia_smi(f"printf '{TWO_T4}'\n")

    code, report, err = preflight(capsys, "--instance-type", "g4dn.2xlarge")

    assert code == 0
    assert report["ok"] is True
    assert report["failed"] == []
    assert report["instance_type"] == "g4dn.2xlarge"
    checks = by_name(report)
    assert list(checks) == ["nvidia_driver", "gpu_count", "cuda_torch", "venv", "disk"]
    assert checks["nvidia_driver"]["detail"] == "driver 535.104.05"
    assert str(checks["gpu_count"]["detail"]).startswith("2 GPU(s): Tesla T4")
    assert checks["cuda_torch"] == {"name": "cuda_torch", "ok": True, "detail": "torch not installed: skipped"}
    assert err == ""


def test_fails_naming_the_driver_when_nvidia_smi_is_missing(
    fake_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, err = preflight(capsys, "--instance-type", "p4d.24xlarge")

    assert code == 1
    assert report["failed"] == ["nvidia_driver", "gpu_count"]
    assert err.strip() == "preflight failed: nvidia_driver: nvidia-smi not found; gpu_count: nvidia-smi unavailable"


def test_fails_when_nvidia_smi_exits_non_zero(
    nvidia_smi: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    nvidia_smi("echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.' >&2\nexit 9\n")

    code, report, err = preflight(capsys, "--instance-type", "g5.xlarge")

    assert code == 1
    assert report["failed"] == ["nvidia_driver", "gpu_count"]
    assert "nvidia_driver: nvidia-smi exited with code 9: NVIDIA-SMI has failed" in err


def test_fails_gpu_count_when_the_driver_lists_no_gpu(
    nvidia_smi: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    nvidia_smi("exit 0\n")

    code, report, err = preflight(capsys, "--instance-type", "g5.xlarge")

    assert code == 1
    assert report["failed"] == ["gpu_count"]
    assert err.strip() == "preflight failed: gpu_count: 0 GPUs visible to nvidia-smi"


def test_fails_cuda_torch_when_torch_sees_no_cuda(
    nvidia_smi: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nvidia_smi(f"printf '{TWO_T4}'\n")
    python = executable(
        tmp_path / "python",
        'case "$2" in\n'
        "  *find_spec*) exit 0 ;;\n"
        '  *torch.cuda*) echo \'{"cuda": false, "count": 0}\' ;;\n'
        "  *) echo '3.11.7 (main)' ;;\n"
        "esac\n",
    )

    code, report, err = preflight(capsys, "--instance-type", "g4dn.2xlarge", "--python", str(python))

    assert code == 1
    assert report["failed"] == ["cuda_torch"]
    assert "cuda_torch: torch sees cuda=False, 0 device(s)" in err


def test_passes_cuda_torch_when_torch_sees_the_gpus(
    nvidia_smi: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nvidia_smi(f"printf '{TWO_T4}'\n")
    python = executable(
        tmp_path / "python",
        'case "$2" in\n  *find_spec*) exit 0 ;;\n  *torch.cuda*) echo \'{"cuda": true, "count": 2}\' ;;\n'
        "  *) echo '3.11.7 (main)' ;;\nesac\n",
    )

    code, report, _ = preflight(capsys, "--instance-type", "g4dn.12xlarge", "--python", str(python))

    assert code == 0
    assert by_name(report)["cuda_torch"]["detail"] == "torch sees cuda=True, 2 device(s)"


def test_fails_naming_the_venv_when_its_python_is_missing(
    fake_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "venv" / "bin" / "python"

    code, report, err = preflight(capsys, "--instance-type", "t3.large", "--python", str(missing))

    assert code == 1
    assert report["failed"] == ["venv"]
    assert f"venv: {missing} does not exist" in err


def test_fails_naming_disk_when_free_space_is_short(fake_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, err = preflight(capsys, "--instance-type", "t3.large", "--min-free-gb", "1000000000")

    assert code == 1
    assert report["failed"] == ["disk"]
    assert err.startswith("preflight failed: disk: ")
    assert "need 1e+09 GiB" in err


def test_skip_flag_is_the_way_to_skip_gpu_checks_on_a_gpu_type(
    fake_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, _ = preflight(capsys, "--instance-type", "p4d.24xlarge", "--skip-gpu-checks")

    assert code == 0
    checks = by_name(report)
    for name in ("nvidia_driver", "gpu_count", "cuda_torch"):
        assert checks[name] == {"name": name, "ok": True, "detail": "skipped by --skip-gpu-checks"}


def test_skip_env_var_skips_gpu_checks(
    fake_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EC2OPS_SKIP_GPU_CHECKS", "1")
    monkeypatch.setenv("EC2OPS_INSTANCE_TYPE", "g5.xlarge")

    code, report, _ = preflight(capsys)

    assert code == 0
    assert report["instance_type"] == "g5.xlarge"
    assert by_name(report)["gpu_count"]["detail"] == "skipped by --skip-gpu-checks"


def test_non_gpu_instance_type_skips_gpu_checks(fake_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, _ = preflight(capsys, "--instance-type", "c5.2xlarge")

    assert code == 0
    assert by_name(report)["nvidia_driver"]["detail"] == "not a GPU instance type"


def test_unknown_instance_type_runs_gpu_checks(fake_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, _ = preflight(capsys)

    assert code == 1
    assert report["instance_type"] is None
    assert report["failed"] == ["nvidia_driver", "gpu_count"]


@pytest.mark.parametrize(
    ("instance_type", "gpu"),
    [("g4dn.2xlarge", True), ("p4d.24xlarge", True), ("g5.xlarge", True), ("t3.large", False), ("c6g.xlarge", False)],
)
def test_gpu_families(instance_type: str, gpu: bool) -> None:
    assert preflight_check.is_gpu_instance_type(instance_type) is gpu


def test_writes_the_report_file_it_prints(fake_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out" / "preflight.json"

    code, printed, _ = preflight(
        capsys, "--instance-type", "t3.large", "--python", sys.executable, "--report", str(target)
    )

    assert code == 0
    written = json.loads(target.read_text())
    assert written == printed
    assert written["ok"] is True
    assert [check["name"] for check in written["checks"]] == [
        "nvidia_driver",
        "gpu_count",
        "cuda_torch",
        "venv",
        "disk",
    ]
