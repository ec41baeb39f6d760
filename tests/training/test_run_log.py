"""TensorBoard logs beside metrics.jsonl (training.run_log), and a run without the package."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from fixtures.fake_data import fake_mnist
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from training.run_log import MISSING_NOTE, SCALAR_TAGS
from training.train import main
from training.trainer import GanTrainer

IDX = ["--dataset", "mnist", "--width", "4", "--batch-size", "8", "--no-progress"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _board(run: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_scalars_and_images_reach_tensorboard(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = [*IDX, "--data-root", str(fake_mnist(tmp_path / "data")), "--steps", "4"]
    assert main([*argv, "--log-every", "2", "--sample-every", "2", "--out", str(out)]) == 0
    board = _board(out)
    scalars = set(board.Tags()["scalars"])
    wanted = ("d_loss", "g_loss", "p_real", "p_fake", "g_grad_norm", "d_grad_norm", "lr_g", "lr_d")
    assert {SCALAR_TAGS[k] for k in wanted} <= scalars
    for key in ("d_loss", "p_fake", "d_grad_norm"):
        logged = [(e.step, e.value) for e in board.Scalars(SCALAR_TAGS[key])]
        expected = [(r["step"], r[key]) for r in _records(out)]
        assert logged == [(s, pytest.approx(v)) for s, v in expected]
    assert [e.step for e in board.Images("samples")] == [2, 4]
    assert [e.step for e in board.Images("real")] == [0]


def test_a_resumed_run_replaces_what_the_killed_attempt_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    argv = [*IDX, "--data-root", str(fake_mnist(tmp_path / "data")), "--log-every", "1"]
    real_step, calls = GanTrainer.step, {"n": 0}

    def dies_at_6(self, next_real):
        calls["n"] += 1
        if calls["n"] == 6:
            raise RuntimeError("killed")
        return real_step(self, next_real)

    with monkeypatch.context() as m:
        m.setattr(GanTrainer, "step", dies_at_6)
        with pytest.raises(RuntimeError, match="killed"):
            main([*argv, "--steps", "8", "--ckpt-every", "3", "--out", str(out)])
    assert main(["--resume", "--out", str(out), "--no-progress"]) == 0  # from step 3
    logged = [(e.step, e.value) for e in _board(out).Scalars(SCALAR_TAGS["d_loss"])]
    expected = [(r["step"], r["d_loss"]) for r in _records(out)]
    assert [s for s, _ in logged] == list(range(1, 9))
    assert logged == [(s, pytest.approx(v)) for s, v in expected]


def test_without_the_package_the_run_says_so_once_and_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    out = tmp_path / "run"
    argv = [*IDX, "--data-root", str(fake_mnist(tmp_path / "data")), "--steps", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    assert capsys.readouterr().err.splitlines().count(MISSING_NOTE) == 1
    assert (out / "metrics.jsonl").is_file() and not (out / "tensorboard").exists()


def test_no_tensorboard_flag(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = [*IDX, "--data-root", str(fake_mnist(tmp_path / "data")), "--steps", "1"]
    assert main([*argv, "--no-tensorboard", "--out", str(out)]) == 0
    assert not (out / "tensorboard").exists()
