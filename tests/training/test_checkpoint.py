"""Checkpoints: content, validation, RNG capture, and atomic replacement."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from training import checkpoint as ck
from training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from training.config import TrainConfig
from training.nets import ModelArgs, build_networks
from training.trainer import GanTrainer

CFG = TrainConfig(dataset="ring8", arch="mlp", width=4, batch_size=8, ema=0.9)


def _trainer() -> GanTrainer:
    torch.manual_seed(0)
    G, D = build_networks(ModelArgs("mlp", 2, 4))
    t = GanTrainer(CFG, G, D, torch.device("cpu"))
    t.step(lambda: torch.randn(8, 2))
    return t


def _save(run: Path, step: int, trainer: GanTrainer | None = None, keep: int = 2) -> Path:
    t = trainer or _trainer()
    return save_checkpoint(run, config=CFG, step=step, trainer_state=t.state_dict(), rng=[rng_state()],
                           sampler=[{"kind": "toy", "n": step}], extra={"log": [{}]}, keep=keep)  # fmt: skip


def test_round_trip_is_self_describing(tmp_path: Path) -> None:
    t = _trainer()
    path = _save(tmp_path, 7, t)
    assert path == tmp_path / "ckpt-latest.pt"
    state = load_checkpoint(tmp_path)  # a run folder works too
    assert state["format"] == "gan-ckpt/1" and state["step"] == 7 and state["world_size"] == 1
    assert TrainConfig.from_dict(state["config"]) == CFG
    assert set(state["trainer"]) >= {"G", "D", "G_ema", "opt_g", "opt_d", "ema_updates"}
    # weights_only loading: plain data and tensors, no pickled objects
    raw = torch.load(path, weights_only=True)
    assert raw["step"] == 7
    t2 = _trainer()
    t2.load_state_dict(state["trainer"])
    for a, b in zip(t.generator.parameters(), t2.generator.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert t2.ema_updates == t.ema_updates == 1


def test_rng_state_round_trip() -> None:
    state = rng_state()
    draws = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    torch.testing.assert_close(torch.rand(3), draws[0])
    np.testing.assert_array_equal(np.random.rand(3), draws[1])
    assert random.random() == draws[2]


def test_numbered_copies_are_pruned(tmp_path: Path) -> None:
    t = _trainer()
    for step in (10, 20, 30, 40):
        _save(tmp_path, step, t, keep=2)
    assert [p.name for p in ck.numbered_checkpoints(tmp_path)] == [
        "ckpt-000030.pt",
        "ckpt-000040.pt",
    ]
    assert load_checkpoint(tmp_path / "ckpt-000030.pt")["step"] == 30
    assert load_checkpoint(tmp_path)["step"] == 40


def test_crash_mid_write_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = _trainer()
    _save(tmp_path, 5, t)
    before = (tmp_path / "ckpt-latest.pt").read_bytes()
    real_save = torch.save

    def torn_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(100)  # half a file on disk...
        raise OSError("disk full")  # ...and the process dies

    monkeypatch.setattr(ck.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        _save(tmp_path, 6, t)
    monkeypatch.undo()
    assert (tmp_path / "ckpt-latest.pt").read_bytes() == before
    assert load_checkpoint(tmp_path)["step"] == 5
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temp file left behind


def test_kill_between_write_and_rename_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = _trainer()
    _save(tmp_path, 5, t)

    def killed(*_args):
        raise KeyboardInterrupt  # e.g. SIGINT between fsync and rename

    monkeypatch.setattr(ck.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 6, t)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path)["step"] == 5


def test_invalid_checkpoints_are_reported(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "ckpt-latest.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        load_checkpoint(tmp_path)
    torch.save({"format": "something-else/9"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a gan-ckpt/1 checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"format": "gan-ckpt/1", "step": 1}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="lacks config"):
        load_checkpoint(tmp_path / "partial.pt")


def test_config_mismatch_is_reported(tmp_path: Path) -> None:
    _save(tmp_path, 3)
    other = TrainConfig(**{**CFG.to_dict(), "loss": "hinge"})
    with pytest.raises(CheckpointError, match="different config: loss"):
        load_checkpoint(tmp_path, expect_config=other)
    longer = TrainConfig(**{**CFG.to_dict(), "steps": 10_000, "log_every": 1})
    # fields a resume may change are not a mismatch
    assert load_checkpoint(tmp_path, expect_config=longer)["step"] == 3
