"""The training CLI: errors, run-folder outputs, resume determinism, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.fake_data import fake_mnist
from PIL import Image

from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.idx import DEFAULT_DATA_ROOT
from training.train import lock_run_dir, main
from training.trainer import GanTrainer

ROOT = Path(__file__).resolve().parents[2]
TIMING = ("img_per_s", "s_per_epoch", "elapsed_s")
TOY = ["--dataset", "ring8", "--width", "4", "--batch-size", "16", "--no-progress"]


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models: more threads only add synchronisation on a shared 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def losses(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records(run)]


def run_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI expecting exit status 2; return its one-line message."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# --- errors ------------------------------------------------------------------------------------


def test_bad_loss_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.train",
            "--dataset",
            "ring8",
            "--loss",
            "bogus",
            "--out",
            str(tmp_path / "r"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith(
        "python -m training.train: error: argument --loss: invalid choice: 'bogus'"
    )
    assert "wgan-gp" in lines[0]  # the message lists the valid choices
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--dataset", "mnist", "--data-root", "{tmp}/nothing"],
            "dataset 'mnist' (train) not found",
        ),
        (["--dataset", "folder:{tmp}/nothing"], "is not a directory"),
        (["--dataset", "cifar100"], "--dataset 'cifar100': choose one of"),
        (
            ["--dataset", "ring8", "--batch-size", "10", "--pack", "4"],
            "--batch-size 10 must be a multiple of --pack 4",
        ),
        (["--dataset", "ring8", "--arch", "dcgan64"], "does not fit --dataset 'ring8'"),
        (["--dataset", "ring8", "--ema", "1.5"], "--ema must be in [0, 1)"),
        (
            [
                "--dataset",
                "ring8",
                "--device",
                "cuda:7" if not torch.cuda.is_available() else "tpu",
            ],
            "--device",
        ),
        (["--dataset", "ring8", "--steps", "many"], "argument --steps: invalid int value"),
        (["--steps", "5"], "--dataset is required"),
        (["--resume"], "nothing to resume"),
        (["--dataset", "ring8", "--resume", "--force"], "contradict"),
    ],
)
def test_bad_options_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    err = run_error([a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--out", str(out)], capsys)
    assert message in err
    assert not (out / "config.json").exists()  # a failed start leaves no run behind


def test_existing_run_is_not_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main([*TOY, "--steps", "2", "--out", str(out)]) == 0
    assert "--resume to continue it, --force to start over" in run_error(
        [*TOY, "--steps", "2", "--out", str(out)], capsys
    )
    assert "--resume: --loss hinge (the run has ns)" in run_error(
        ["--resume", "--loss", "hinge", "--out", str(out)], capsys
    )
    assert main([*TOY, "--loss", "hinge", "--steps", "2", "--force", "--out", str(out)]) == 0
    assert TrainConfig.load(out / "config.json").loss == "hinge"
    assert len((out / "command.txt").read_text().splitlines()) == 1  # --force starts a new history


def test_a_run_folder_in_use_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    held = lock_run_dir(out)  # as a live training process holds it
    try:
        assert "another process is training in" in run_error(
            [*TOY, "--steps", "1", "--out", str(out)], capsys
        )
    finally:
        if held is not None:
            held.close()
    assert main([*TOY, "--steps", "1", "--out", str(out)]) == 0


# --- outputs -----------------------------------------------------------------------------------


def test_mnist_end_to_end(tmp_path: Path) -> None:
    root = (
        DEFAULT_DATA_ROOT
        if (DEFAULT_DATA_ROOT / "mnist").is_dir()
        else fake_mnist(tmp_path / "data")
    )
    out = tmp_path / "mnist"
    argv = [
        "--dataset",
        "mnist",
        "--data-root",
        str(root),
        "--arch",
        "dcgan28",
        "--loss",
        "ns",
        "--ema",
        "0.99",
        "--width",
        "4",
        "--batch-size",
        "8",
        "--steps",
        "4",
        "--log-every",
        "2",
        "--sample-every",
        "2",
        "--ckpt-every",
        "2",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    cfg = TrainConfig.load(out / "config.json")
    assert (cfg.dataset, cfg.arch, cfg.ema, cfg.width, cfg.steps) == (
        "mnist",
        "dcgan28",
        0.99,
        4,
        4,
    )
    recs = records(out)
    assert [r["step"] for r in recs] == [2, 4]
    assert {
        "d_loss",
        "g_loss",
        "p_real",
        "p_fake",
        "d_real",
        "d_fake",
        "img_per_s",
        "epoch",
        "s_per_epoch",
    } <= set(recs[0])
    assert "w_distance" not in recs[0]
    grid = Image.open(out / "samples" / "step_000004.png")
    side = 2 * (2 + 8 * (28 + 2))  # 8x8 grid of 28 px images with 2 px gaps, shown at x2
    assert grid.mode == "L" and grid.size == (side, side)
    assert Image.open(out / "curves.png").size[0] > 300
    state = load_checkpoint(out / "ckpt-latest.pt")
    assert state["step"] == 4 and state["trainer"]["G_ema"] is not None
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 4 and summary["dataset"]["kind"] == "idx"


def test_toy_run_writes_a_scatter_plot_and_wgan_metrics(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    assert (
        main(
            [
                *TOY,
                "--loss",
                "wgan-gp",
                "--pack",
                "2",
                "--steps",
                "3",
                "--log-every",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rec = records(out)[-1]
    assert {"w_distance", "gp"} <= set(rec) and rec["epoch"] is None
    assert Image.open(out / "samples" / "step_000003.png").mode == "RGBA"  # a matplotlib figure


def test_folder_run(tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
    out = tmp_path / "folder"
    assert (
        main(
            [
                "--dataset",
                f"folder:{imgs}",
                "--arch",
                "dcgan32",
                "--width",
                "4",
                "--batch-size",
                "4",
                "--steps",
                "2",
                "--spectral-norm",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert Image.open(out / "samples" / "step_000002.png").mode == "RGB"
    assert TrainConfig.load(out / "config.json").dataset == f"folder:{imgs.resolve()}"


# --- resume ------------------------------------------------------------------------------------


def crash_after(monkeypatch: pytest.MonkeyPatch, n_steps: int) -> None:
    """Make the (n_steps+1)-th trainer step die, like a kill in the middle of an update."""
    real_step = GanTrainer.step
    calls = {"n": 0}

    def step(self, next_real):
        calls["n"] += 1
        if calls["n"] > n_steps:
            raise RuntimeError("killed")
        return real_step(self, next_real)

    monkeypatch.setattr(GanTrainer, "step", step)


RESUME_CASES = {
    "toy-ns": [*TOY, "--loss", "ns"],
    "toy-wgan-gp-pack": [*TOY, "--loss", "wgan-gp", "--pack", "2"],
    "idx-hinge-ema-bn": [
        "--dataset",
        "mnist",
        "--width",
        "4",
        "--batch-size",
        "8",
        "--loss",
        "hinge",
        "--ema",
        "0.9",
        "--no-progress",
    ],
    "idx-lsgan-sn-ttur": [
        "--dataset",
        "mnist",
        "--width",
        "4",
        "--batch-size",
        "8",
        "--loss",
        "lsgan",
        "--spectral-norm",
        "--lr-d",
        "4e-4",
        "--lr-g",
        "1e-4",
        "--no-progress",
    ],
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_resume_reproduces_the_uninterrupted_run(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Train 12 steps straight; separately train, die at step 9 (checkpoint at 6), resume to 12.
    Every logged loss must be identical: same weights, optimiser moments, RNG draws and batches
    (the IDX cases use 48 images / batch 8 = 6 batches per epoch, so epochs wrap in between)."""
    argv = [
        *RESUME_CASES[case],
        "--data-root",
        str(fake_mnist(tmp_path / "data")),
        "--steps",
        "12",
        "--log-every",
        "1",
        "--ckpt-every",
        "6",
        "--sample-every",
        "100",
    ]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main([*argv, "--out", str(straight)]) == 0
    with monkeypatch.context() as m:
        crash_after(m, 9)
        with pytest.raises(RuntimeError, match="killed"):
            main([*argv, "--out", str(killed)])
    assert load_checkpoint(killed)["step"] == 6
    assert [r["step"] for r in records(killed)] == list(range(1, 10))
    assert main(["--resume", "--out", str(killed), "--no-progress"]) == 0
    assert losses(killed) == losses(straight)
    assert len(losses(killed)) == 12
    for a, b in zip(
        load_checkpoint(killed)["trainer"]["G"].values(),
        load_checkpoint(straight)["trainer"]["G"].values(),
        strict=True,
    ):
        assert torch.equal(a, b)


def test_resume_may_extend_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main([*TOY, "--steps", "4", "--log-every", "2", "--out", str(out)]) == 0
    assert main(["--resume", "--steps", "6", "--out", str(out), "--no-progress"]) == 0
    assert [r["step"] for r in records(out)] == [2, 4, 6]
    assert TrainConfig.load(out / "config.json").steps == 6


def test_sigterm_stops_at_a_step_boundary_with_a_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = GanTrainer.step
    calls = {"n": 0}

    def step(self, next_real):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-step
        return real_step(self, next_real)

    monkeypatch.setattr(GanTrainer, "step", step)
    out = tmp_path / "run"
    assert (
        main([*TOY, "--steps", "50", "--ckpt-every", "100", "--out", str(out)])
        == 128 + signal.SIGTERM
    )
    assert load_checkpoint(out)["step"] == 3


def _wait_for_step(out: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "training ended before it could be killed"
        if (out / "ckpt-latest.pt").is_file() and load_checkpoint(out)["step"] >= step:
            return
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at step {step} within {timeout}s")


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    """The real thing: SIGKILL a training process after a checkpoint, ``--resume`` it.

    The killed run is launched with a huge --steps (it must still be running when killed); the
    resume and the uninterrupted run both stop 20 steps after the checkpoint (--steps may change
    on resume and does not affect training)."""
    common = [*TOY, "--log-every", "10", "--ckpt-every", "20", "--sample-every", "100000"]
    cli = [sys.executable, "-m", "training.train", "--num-threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    proc = subprocess.Popen(
        [*cli, *common, "--steps", "1000000", "--out", str(killed)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_step(killed, 40, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    saved = load_checkpoint(killed)["step"]
    assert saved >= 40
    end = str(saved + 20)
    run = dict(cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    subprocess.run([*cli, *common, "--steps", end, "--out", str(straight)], **run)
    subprocess.run([*cli, "--resume", "--steps", end, "--no-progress", "--out", str(killed)], **run)
    assert losses(killed) == losses(straight)
    assert [r["step"] for r in losses(straight)] == list(range(10, saved + 21, 10))
