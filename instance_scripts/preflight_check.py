"""Preflight on the training instance: driver, GPUs, CUDA from torch, the venv and free disk, before any data moves.

Stdlib only: it runs before the venv is trusted. Prints a JSON report; exit 0 when every check passed, 1 otherwise,
with `preflight failed: <name>: <detail>; ...` on stderr for the run's error message.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

GPU_FAMILY_PREFIXES = ("g", "p")
GPU_CHECKS = ("nvidia_driver", "gpu_count", "cuda_torch")
NVIDIA_SMI_QUERY = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
TORCH_PROBE = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('torch') else 3)"
TORCH_CUDA = (
    "import torch, json; print(json.dumps({'cuda': torch.cuda.is_available(), 'count': torch.cuda.device_count()}))"
)
PYTHON_VERSION = "import sys; print(sys.version)"
TORCH_MISSING_EXIT = 3
COMMAND_TIMEOUT_SECONDS = 120.0
GIB = 1024**3
TRUE_WORDS = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class PreflightOptions:
    instance_type: str
    python: str
    path: str = "/"
    min_free_gb: float = 20.0
    skip_gpu_checks: bool = False
    timeout_seconds: float = COMMAND_TIMEOUT_SECONDS


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str
    started: bool = True


def is_gpu_instance_type(instance_type: str) -> bool:
    """g* and p* families carry NVIDIA GPUs; an unknown (empty) type counts as GPU so no check is skipped silently."""
    family = instance_type.strip().lower().split(".", 1)[0]
    if not family:
        return True
    return family.startswith(GPU_FAMILY_PREFIXES)


def run_command(argv: Sequence[str], timeout: float) -> CommandResult:
    """Run argv without a shell; a missing binary or a timeout is a failed result, never an exception."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return CommandResult(127, "", f"{argv[0]}: not found", started=False)
    except PermissionError as error:
        return CommandResult(126, "", f"{argv[0]}: {error}")
    except subprocess.TimeoutExpired:
        return CommandResult(124, "", f"{argv[0]}: timed out after {timeout:g}s")
    return CommandResult(done.returncode, done.stdout, done.stderr)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _last_line(text: str) -> str:
    """The line that says why: a traceback ends with the error, a probe prints its answer last."""
    lines = _lines(text)
    return lines[-1] if lines else ""


def _command_failure(what: str, result: CommandResult) -> str:
    if not result.started:
        return f"{what} not found"
    reason = _last_line(result.stderr) or _last_line(result.stdout) or "no output"
    return f"{what} exited with code {result.returncode}: {reason}"


def check_nvidia(timeout: float) -> tuple[CheckResult, CheckResult]:
    """nvidia_driver and gpu_count from one nvidia-smi query: no driver means no countable GPU either."""
    result = run_command(NVIDIA_SMI_QUERY, timeout)
    if result.returncode != 0:
        detail = _command_failure("nvidia-smi", result)
        return CheckResult("nvidia_driver", False, detail), CheckResult("gpu_count", False, "nvidia-smi unavailable")
    gpus = _lines(result.stdout)
    drivers = sorted({fields[1].strip() for fields in (gpu.split(",") for gpu in gpus) if len(fields) >= 2})
    driver_detail = f"driver {', '.join(drivers)}" if drivers else "nvidia-smi ran but listed no GPU"
    driver = CheckResult("nvidia_driver", True, driver_detail)
    if not gpus:
        return driver, CheckResult("gpu_count", False, "0 GPUs visible to nvidia-smi")
    return driver, CheckResult("gpu_count", True, f"{len(gpus)} GPU(s): {'; '.join(gpus)}")


def check_cuda_torch(python: str, timeout: float) -> CheckResult:
    """CUDA as the training code sees it; skipped (ok) when the venv has no torch."""
    probe = run_command([python, "-c", TORCH_PROBE], timeout)
    if probe.returncode == TORCH_MISSING_EXIT:
        return CheckResult("cuda_torch", True, "torch not installed: skipped")
    if probe.returncode != 0:
        return CheckResult("cuda_torch", False, "cannot check torch: " + _command_failure(python, probe))
    result = run_command([python, "-c", TORCH_CUDA], timeout)
    if result.returncode != 0:
        return CheckResult("cuda_torch", False, _command_failure("torch CUDA probe", result))
    try:
        seen: Any = json.loads(_last_line(result.stdout))
        cuda, count = bool(seen["cuda"]), int(seen["count"])
    except (ValueError, KeyError, TypeError):
        return CheckResult("cuda_torch", False, f"unreadable torch CUDA probe output: {result.stdout.strip()[:200]!r}")
    if not cuda or count < 1:
        return CheckResult("cuda_torch", False, f"torch sees cuda={cuda}, {count} device(s)")
    return CheckResult("cuda_torch", True, f"torch sees cuda={cuda}, {count} device(s)")


def check_venv(python: str, timeout: float) -> CheckResult:
    if not Path(python).exists() and shutil.which(python) is None:
        return CheckResult("venv", False, f"{python} does not exist")
    result = run_command([python, "-c", PYTHON_VERSION], timeout)
    if result.returncode != 0:
        return CheckResult("venv", False, _command_failure(python, result))
    version = (_lines(result.stdout) or ["unknown"])[0].split(" ", 1)[0]
    return CheckResult("venv", True, f"{python}: Python {version}")


def check_disk(path: str, min_free_gb: float) -> CheckResult:
    try:
        free = shutil.disk_usage(path).free
    except OSError as error:
        return CheckResult("disk", False, f"cannot read free space at {path}: {error}")
    detail = f"{free / GIB:.1f} GiB free at {path}, need {min_free_gb:g} GiB"
    return CheckResult("disk", free >= min_free_gb * GIB, detail)


def _skipped(reason: str) -> list[CheckResult]:
    return [CheckResult(name, True, reason) for name in GPU_CHECKS]


def run_checks(options: PreflightOptions) -> list[CheckResult]:
    checks: list[CheckResult] = []
    if options.skip_gpu_checks:
        checks.extend(_skipped("skipped by --skip-gpu-checks"))
    elif not is_gpu_instance_type(options.instance_type):
        checks.extend(_skipped("not a GPU instance type"))
    else:
        checks.extend(check_nvidia(options.timeout_seconds))
        checks.append(check_cuda_torch(options.python, options.timeout_seconds))
    checks.append(check_venv(options.python, options.timeout_seconds))
    checks.append(check_disk(options.path, options.min_free_gb))
    return checks


def build_report(options: PreflightOptions, checks: list[CheckResult]) -> dict[str, Any]:
    failed = [check.name for check in checks if not check.ok]
    return {
        "ok": not failed,
        "instance_type": options.instance_type or None,
        "checks": [asdict(check) for check in checks],
        "failed": failed,
    }


def failure_message(checks: list[CheckResult]) -> str:
    return "preflight failed: " + "; ".join(f"{check.name}: {check.detail}" for check in checks if not check.ok)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in TRUE_WORDS


def parse_args(argv: list[str] | None) -> tuple[PreflightOptions, str | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--instance-type", default=os.environ.get("EC2OPS_INSTANCE_TYPE", ""))
    parser.add_argument("--python", default=sys.executable, help="the venv's python (default: this interpreter)")
    parser.add_argument("--path", default="/", help="where the disk check measures free space")
    parser.add_argument("--min-free-gb", type=float, default=float(os.environ.get("EC2OPS_MIN_FREE_GB", "20")))
    parser.add_argument("--report", default=None, help="also write the JSON report to this path")
    parser.add_argument(
        "--skip-gpu-checks",
        action="store_true",
        default=_env_flag("EC2OPS_SKIP_GPU_CHECKS"),
        help="skip nvidia_driver, gpu_count and cuda_torch (env EC2OPS_SKIP_GPU_CHECKS=1)",
    )
    args = parser.parse_args(argv)
    options = PreflightOptions(
        instance_type=args.instance_type,
        python=args.python,
        path=args.path,
        min_free_gb=args.min_free_gb,
        skip_gpu_checks=args.skip_gpu_checks,
    )
    return options, args.report


def main(argv: list[str] | None = None) -> int:
    options, report_path = parse_args(argv)
    checks = run_checks(options)
    report = build_report(options, checks)
    text = json.dumps(report, indent=2)
    if report_path:
        target = Path(report_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text + "\n")
    print(text, flush=True)
    if not report["ok"]:
        print(failure_message(checks), file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
