"""A tiny CPU "training" job for ec2ops training runs: fits y = 2x + 1 by SGD, stdlib only, no downloads.

It behaves as a real job should under training_wrapper.py: metrics on stdout (`METRIC loss=...` and JSON lines),
checkpoints to $EC2OPS_CHECKPOINT_DIR at each epoch end and on SIGUSR1 (the spot watcher's "checkpoint now"),
resume from the newest checkpoint, the model to $EC2OPS_MODELS_DIR/model.json. Data: ./data/*.csv (`x,y` rows)
when the run synced some, else generated points. It prints the config it received from the environment.

    python3 train_tiny.py --epochs 3 --steps-per-epoch 20 --sleep 0.02
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType

REQUESTS: set[str] = set()
"""What signals asked for ("checkpoint", "stop"); the training loop acts on them between steps."""


def _request(what: str) -> Callable[[int, FrameType | None], None]:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        REQUESTS.add(what)

    return handler


# First thing: a checkpoint request may arrive while the job is still starting.
signal.signal(signal.SIGUSR1, _request("checkpoint"))
signal.signal(signal.SIGTERM, _request("stop"))

import argparse  # noqa: E402 - after the signal handlers on purpose
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

BATCH = 8
TRUE_W, TRUE_B = 2.0, 1.0
STOPPED_EXIT_CODE = 143


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fit y = 2x + 1 by SGD; a stand-in for a real training job.")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=20)
    parser.add_argument("--sleep", type=float, default=0.02, help="seconds per step, to look like work")
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fail-with", type=int, default=None, help="exit with this code after the first epoch")
    return parser.parse_args(argv)


def load_points(data_dir: Path, seed: int) -> tuple[list[tuple[float, float]], str]:
    points: list[tuple[float, float]] = []
    for path in sorted(data_dir.glob("*.csv")) if data_dir.is_dir() else []:
        for line in path.read_text().splitlines():
            parts = line.strip().split(",")
            try:
                points.append((float(parts[0]), float(parts[1])))
            except (IndexError, ValueError):
                continue  # a header or a blank line
    if points:
        return points, f"{len(points)} points from {data_dir}/"
    rng = random.Random(seed)
    generated = [(x, TRUE_W * x + TRUE_B + rng.gauss(0, 0.05)) for x in (rng.uniform(-1, 1) for _ in range(256))]
    return generated, f"{len(generated)} generated points"


def newest_checkpoint(directory: Path) -> dict[str, float] | None:
    """The checkpoint with the highest step; names sort by step (checkpoint-00000040.json)."""
    for path in sorted(directory.glob("checkpoint-*.json"), reverse=True):
        try:
            data = json.loads(path.read_text())
            return {"epoch": int(data["epoch"]), "step": int(data["step"]), **data["weights"]}
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign file: try the next older one
    return None


def save_checkpoint(directory: Path, epoch: int, step: int, w: float, b: float, why: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"checkpoint-{step:08d}.json"
    partial = target.with_suffix(".tmp")
    partial.write_text(json.dumps({"epoch": epoch, "step": step, "weights": {"w": w, "b": b}}))
    partial.replace(target)  # never a half-written checkpoint under the real name
    print(f"checkpoint saved: {target.name} (epoch {epoch}, step {step}, {why})", flush=True)
    return target


def loss_of(points: list[tuple[float, float]], w: float, b: float) -> float:
    return sum((w * x + b - y) ** 2 for x, y in points) / len(points)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"config: {os.environ.get('EC2OPS_TRAINING_CONFIG', '{}')}", flush=True)
    config_vars = {name: value for name, value in sorted(os.environ.items()) if name.startswith("EC2OPS_CONFIG_")}
    print(f"config env: {json.dumps(config_vars)}", flush=True)
    print(f"python: {sys.executable}", flush=True)
    checkpoints = Path(os.environ.get("EC2OPS_CHECKPOINT_DIR") or "checkpoints")
    models = Path(os.environ.get("EC2OPS_MODELS_DIR") or "models")
    points, source = load_points(Path("data"), args.seed)
    print(f"data: {source}", flush=True)

    w, b, step, epoch = 0.0, 0.0, 0, 0
    resumed = newest_checkpoint(checkpoints)
    if resumed is not None:
        w, b, step, epoch = resumed["w"], resumed["b"], int(resumed["step"]), int(resumed["epoch"])
        print(f"resumed from epoch {epoch} (step {step}, w={w:.4f}, b={b:.4f})", flush=True)

    epochs_done_here = 0
    while epoch < args.epochs:
        while step < (epoch + 1) * args.steps_per_epoch:
            rng = random.Random(args.seed * 1_000_003 + step)
            batch = [points[rng.randrange(len(points))] for _ in range(BATCH)]
            grad_w = sum(2 * (w * x + b - y) * x for x, y in batch) / BATCH
            grad_b = sum(2 * (w * x + b - y) for x, y in batch) / BATCH
            w, b = w - args.lr * grad_w, b - args.lr * grad_b
            step += 1
            print(json.dumps({"metric": "loss", "value": round(loss_of(batch, w, b), 6), "step": step}), flush=True)
            time.sleep(args.sleep)
            if "checkpoint" in REQUESTS:
                REQUESTS.discard("checkpoint")
                save_checkpoint(checkpoints, epoch, step, w, b, "on SIGUSR1")
            if "stop" in REQUESTS:
                save_checkpoint(checkpoints, epoch, step, w, b, "on SIGTERM")
                print("stopped by SIGTERM", flush=True)
                return STOPPED_EXIT_CODE
        epoch += 1
        epochs_done_here += 1
        print(f"epoch {epoch}/{args.epochs} METRIC loss={loss_of(points, w, b):.6f}", flush=True)
        save_checkpoint(checkpoints, epoch, step, w, b, "epoch end")
        if args.fail_with is not None and epochs_done_here == 1:
            print(f"failing on purpose with exit code {args.fail_with}", flush=True)
            return int(args.fail_with)

    models.mkdir(parents=True, exist_ok=True)
    final_loss = loss_of(points, w, b)
    (models / "model.json").write_text(
        json.dumps({"w": w, "b": b, "loss": final_loss, "epochs": epoch, "steps": step}, indent=2) + "\n"
    )
    print(f"final weights: w={w:.4f} b={b:.4f} (target w={TRUE_W} b={TRUE_B}) METRIC final_loss={final_loss:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
