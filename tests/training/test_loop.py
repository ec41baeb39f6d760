"""The training loop (training.loop): the progress bar, samples/real.png, what metrics.jsonl logs."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import sys
import termios
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.fake_data import fake_mnist, write_idx
from PIL import Image

from training.loop import StatAverager
from training.train import main

# 48 images in batches of 8: an epoch every 6 steps.
IDX = ["--dataset", "mnist", "--width", "4", "--batch-size", "8", "--no-tensorboard"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_the_progress_bar_stays_one_line_across_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal (stdout and stderr both), 20 steps over 3 epoch ends redraw one line."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 200, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:  # a full pty buffer would block the writer
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    terminal = os.fdopen(slave, "w", buffering=1)
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(sys, "stdout", terminal)
    out = tmp_path / "run"
    argv = [*IDX, "--data-root", str(fake_mnist(tmp_path / "data")), "--steps", "20"]
    code = main([*argv, "--log-every", "5", "--sample-every", "100", "--out", str(out)])
    monkeypatch.undo()
    terminal.close()
    reader.join(timeout=10)
    os.close(master)
    assert code == 0
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", b"".join(chunks).decode())
    lines = text.replace("\r\n", "\n").split("\n")
    assert len(lines) == 3, repr(text)  # the bar's one line, then the result
    bar, done, rest = lines
    assert done.startswith("done: 20 steps") and rest == "", repr(text)
    frames = [f for f in bar.split("\r") if f.strip()]
    assert frames and all(f.startswith("run:") for f in frames), frames
    assert "last_ep=" in frames[-1] and "ep=3.33" in frames[-1]  # epochs go to the postfix


def test_real_grid_beside_the_first_samples(tmp_path: Path) -> None:
    images = np.random.default_rng(3).integers(0, 256, (70, 28, 28), dtype=np.uint8)
    root = write_idx(tmp_path / "data", images)
    out = tmp_path / "run"
    argv = [*IDX, "--data-root", str(root), "--steps", "2", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    real = np.asarray(Image.open(out / "samples" / "real.png"))
    fake = Image.open(out / "samples" / "step_000002.png")
    assert real.shape == (fake.height, fake.width)  # laid out as the sample grids are
    # The first 64 training images, 8 per row, 2 px gaps, shown at x2.
    for i in (0, 9, 63):
        r, c = divmod(i, 8)
        y, x = 2 * (2 + r * 30), 2 * (2 + c * 30)
        assert np.array_equal(real[y : y + 56 : 2, x : x + 56 : 2], images[i])


def test_conditional_real_grid_has_a_row_per_class(tmp_path: Path) -> None:
    images = np.random.default_rng(4).integers(0, 256, (200, 28, 28), dtype=np.uint8)
    root = write_idx(tmp_path / "data", images)  # labels i % 10
    out = tmp_path / "run"
    argv = [*IDX, "--conditional", "--data-root", str(root), "--steps", "1", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    real = np.asarray(Image.open(out / "samples" / "real.png"))
    for cls, col in ((3, 0), (7, 4)):
        y, x = 2 * (2 + cls * 30), 2 * (2 + col * 30)
        first = np.flatnonzero(np.arange(200) % 10 == cls)[col]
        assert np.array_equal(real[y : y + 56 : 2, x : x + 56 : 2], images[first])


def test_log_lines_carry_grad_norms_and_the_decayed_learning_rates(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = [*IDX, "--data-root", str(fake_mnist(tmp_path / "data")), "--no-progress"]
    argv += ["--steps", "8", "--log-every", "2", "--lr-decay", "0.5", "--lr-g", "1e-3"]
    assert main([*argv, "--lr-d", "4e-3", "--out", str(out)]) == 0
    recs = _records(out)
    assert all(r["g_grad_norm"] > 0 and r["d_grad_norm"] > 0 for r in recs)
    # The rate of the logged update (0-based 1, 3, 5, 7): full for the first half of the run,
    # then (8 - update) / 4 of it (trainer.lr_factor).
    assert [r["lr_g"] for r in recs] == pytest.approx([1e-3, 1e-3, 0.75e-3, 0.25e-3])
    assert [r["lr_d"] for r in recs] == pytest.approx([4e-3, 4e-3, 3e-3, 1e-3])


def test_stat_averager_counts_each_key_and_reads_old_checkpoints() -> None:
    a = StatAverager()
    a.add({"d_loss": 1.0})
    a.add({"d_loss": 3.0, "g_grad_norm": 5.0})
    b = StatAverager()
    b.load_state_dict(a.state_dict())
    assert b.pop() == {"d_loss": 2.0, "g_grad_norm": 5.0}  # the norm was measured once
    old = StatAverager()  # a checkpoint written before per-key counts
    old.load_state_dict({"sums": {"d_loss": 4.0}, "count": 2})
    assert old.pop() == {"d_loss": 2.0}
