"""The run folder: its lock, its files, and what a fresh start, ``--force`` or ``--resume`` does to them.

Only rank 0 touches it. Every file a reader may open while the run goes on (config.json,
metrics.jsonl when rewritten, summary.json) is written atomically (training.checkpoint).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from training import distributed
from training.checkpoint import LATEST, atomic_write, numbered_checkpoints
from training.config import TrainConfig
from training.data import Sampler

RUN_FILES = ("config.json", "metrics.jsonl", "curves.png", "summary.json", "command.txt", LATEST)
# TensorBoard's event files live here (training.run_log); a fresh start removes only those.
TENSORBOARD_DIR = "tensorboard"
REAL_GRID = "real.png"


class UsageError(Exception):
    """A bad option, option combination, run folder or dataset: one line on stderr, exit 2."""


def lock_run_dir(out: Path) -> IO[str] | None:
    """Hold an exclusive lock on ``out/.lock`` while training, so two processes never write one run."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        return None
    out.mkdir(parents=True, exist_ok=True)
    f = open(out / ".lock", "w")  # noqa: SIM115 - held open for the whole run
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise UsageError(f"another process is training in {out} right now") from None
    return f


def clear_run_dir(out: Path) -> None:
    """Remove what an earlier run wrote here (and only that)."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for p in numbered_checkpoints(out) if out.is_dir() else []:
        p.unlink()
    for folder, pattern in (
        (out / "samples", "step_*.png"),
        (out / "samples", REAL_GRID),
        (out / TENSORBOARD_DIR, "events.out.tfevents.*"),
    ):
        if folder.is_dir():
            for p in folder.glob(pattern):
                p.unlink()
    for folder in (out / "samples", out / TENSORBOARD_DIR):
        with contextlib.suppress(OSError):
            folder.rmdir()


def prepare_run_dir(
    cfg: TrainConfig,
    out: Path,
    ckpt: dict[str, Any] | None,
    command: Sequence[str],
    env: distributed.DistEnv,
) -> None:
    if ckpt is None:
        clear_run_dir(out)  # a fresh start (or --force, or a resume with nothing saved yet)
    out.mkdir(parents=True, exist_ok=True)
    # Temp files of writes a kill interrupted; we hold the lock, so no live writer owns them.
    for stale in [*out.glob(".*.tmp-*"), *out.glob("samples/.*.tmp-*")]:
        stale.unlink(missing_ok=True)
    text = json.dumps(cfg.to_dict(), indent=2) + "\n"  # as TrainConfig.save, but atomic
    atomic_write(out / "config.json", lambda f: f.write(text.encode()))
    start = ckpt["step"] if ckpt else 0
    # Log lines past the checkpoint belong to the killed attempt: the resumed run rewrites them.
    write_records(out / "metrics.jsonl", read_metrics(out / "metrics.jsonl", start))
    launcher = f"torchrun x{env.world_size}" if env.distributed else "python"
    line = f"{datetime.now(UTC).isoformat(timespec='seconds')}  [{launcher}, from step {start}]  {shlex.join(command)}\n"
    with open(out / "command.txt", "a") as f:
        f.write(line)


def read_metrics(path: Path, upto: float = math.inf) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line torn by a kill mid-write
            rec = json.loads(line)
            if rec.get("step", math.inf) <= upto:
                records.append(rec)
    return records


def write_records(path: Path, records: Sequence[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write(path, lambda f: f.write(text.encode()))


def write_summary(
    cfg: TrainConfig,
    out: Path,
    step: int,
    elapsed_s: float,
    records: list[dict[str, Any]],
    epoch_times: list[float],
    sampler: Sampler,
    env: distributed.DistEnv,
    fingerprints: list[dict[str, str]],
    device: torch.device,
) -> None:
    rates = [r["img_per_s"] for r in records if "img_per_s" in r]
    samples = sorted((out / "samples").glob("step_*.png"))
    summary = {
        "step": step,
        "steps": cfg.steps,
        "elapsed_s": round(elapsed_s, 1),
        "epochs": sampler.epoch,
        "epoch_times_s": [round(t, 1) for t in epoch_times],
        "median_img_per_s": float(np.median(rates)) if rates else None,
        "dataset": sampler.info,
        "checkpoint": LATEST,
        "last_samples": samples[-1].relative_to(out).as_posix() if samples else None,
        "world_size": env.world_size,
        "fingerprints": fingerprints,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        },
    }
    text = json.dumps(summary, indent=2) + "\n"
    atomic_write(out / "summary.json", lambda f: f.write(text.encode()))
