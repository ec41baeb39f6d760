"""Training killed with SIGKILL, repeatedly and at arbitrary moments, then ``--resume``d: no file
in the run folder is ever corrupt (checkpoints, summaries and images are written atomically),
and the finished run's logged losses equal those of an uninterrupted run with the same seed
(deterministic on CPU with one thread).

(test_train.py has the in-process resume matrix and one SIGKILL; this one is the kill storm with
a file-by-file integrity check after every kill. It is owned by reliability.)
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STEPS = 160
ARGV = [
    "--dataset", "ring8", "--arch", "mlp", "--loss", "ns", "--width", "4",
    "--batch-size", "16", "--seed", "3", "--steps", str(STEPS),
    "--log-every", "5", "--ckpt-every", "10", "--sample-every", "40",
    "--num-threads", "1", "--no-progress",
]  # fmt: skip
TIMING = {"img_per_s", "s_per_epoch", "elapsed_s"}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _train(out: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "training.train", *ARGV, *extra, "--out", str(out)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _checkpoint_step(out: Path) -> int:
    try:
        return int(load_checkpoint(out)["step"])
    except Exception:
        return -1


def _kill_after_checkpoint(
    proc: subprocess.Popen[bytes], out: Path, step: int, delay: float
) -> None:
    """Wait for a checkpoint at ``step`` or later, let it run ``delay`` s more, SIGKILL it."""
    deadline = time.monotonic() + 240
    try:
        while _checkpoint_step(out) < step:
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, f"no checkpoint at step {step} in time"
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _records(out: Path, *, torn_tail_ok: bool) -> list[dict[str, Any]]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    records = []
    for index, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            # metrics.jsonl is appended line by line: a kill may tear its last line, which
            # --resume rewrites (atomically) from what the checkpoint covers.
            assert torn_tail_ok and index == len(lines) - 1, f"metrics.jsonl line {index + 1}"
    return records


def _losses(out: Path) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in r.items() if k not in TIMING} for r in _records(out, torn_tail_ok=False)
    ]


def _check_every_file(
    out: Path, *, after_kill: bool, killed_pids: set[int] | None = None
) -> dict[str, int]:
    """Open every file of the run folder the way its reader does; return counts by kind."""
    kinds: dict[str, int] = {}
    for path in sorted(out.rglob("*")):
        if path.is_dir():
            continue
        name = path.name
        if name.startswith(".") and ".tmp-" in name:
            # The temp file of an atomic write that a SIGKILL interrupted: never read, and the
            # file it was to replace is intact. Only a killed process may have left one.
            assert int(name.rsplit("-", 1)[1]) in (killed_pids or set()), path
            kinds["tmp"] = kinds.get("tmp", 0) + 1
            continue
        if path.suffix == ".pt":
            state = load_checkpoint(path)
            assert state["step"] > 0
        elif path.suffix == ".jsonl":
            _records(out, torn_tail_ok=after_kill)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".png":
            with Image.open(path) as image:
                image.load()
        elif name.startswith("events.out.tfevents."):
            # Appended by TensorBoard's writer, not atomic: its own reader must still read it
            # (a kill can tear the last record, which the reader drops).
            assert list(EventFileLoader(str(path)).Load()), path
            kinds["tfevents"] = kinds.get("tfevents", 0) + 1
            continue
        else:
            path.read_text()
        kinds[path.suffix] = kinds.get(path.suffix, 0) + 1
    return kinds


def test_sigkill_storm_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    uninterrupted = _train(straight)

    rng = random.Random(20261126)
    kills: list[tuple[int, int]] = []  # (checkpoint step awaited, step it resumed from)
    killed_pids: set[int] = set()
    proc = _train(killed)
    for target in (20, 70, 120):
        _kill_after_checkpoint(proc, killed, target, delay=rng.uniform(0.0, 0.3))
        assert proc.returncode == -signal.SIGKILL
        killed_pids.add(proc.pid)
        saved = _checkpoint_step(killed)
        assert target <= saved < STEPS, saved
        kinds = _check_every_file(killed, after_kill=True, killed_pids=killed_pids)
        assert kinds.get(".pt", 0) >= 2  # ckpt-latest.pt and step-numbered copies
        kills.append((target, saved))
        proc = _train(killed, "--resume")
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode() if proc.stderr else ""
    assert uninterrupted.wait(timeout=300) == 0

    kinds = _check_every_file(killed, after_kill=False, killed_pids=killed_pids)
    assert {".pt", ".json", ".jsonl", ".png", ".txt", "tfevents"} <= set(kinds), kinds
    assert _checkpoint_step(killed) == STEPS
    straight_losses, killed_losses = _losses(straight), _losses(killed)
    assert len(straight_losses) == STEPS // 5
    last_saved = kills[-1][1]
    after = [r for r in killed_losses if r["step"] > last_saved]
    assert after == [r for r in straight_losses if r["step"] > last_saved]
    assert killed_losses == straight_losses  # every step, not only those after the last kill
    command_log = (killed / "command.txt").read_text().splitlines()
    assert len(command_log) == 1 + len(kills)
    assert all(
        f"from step {saved}" in line
        for (_, saved), line in zip(kills, command_log[1:], strict=True)
    )
