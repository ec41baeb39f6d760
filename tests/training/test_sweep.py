"""training.sweep: every candidate is a valid training config, and the ranking rule."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from training.sweep import CANDIDATES, KL_TARGET, _train_cmd, main, rank
from training.train import build_parser, resolve_config


def _args(**kw: object) -> argparse.Namespace:
    base = {"device": "cpu", "threads": 1, "seed": 0, "data_root": None}
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize("candidate", CANDIDATES, ids=lambda c: c.name)
def test_every_candidate_is_a_valid_mnist_config(candidate, tmp_path: Path) -> None:
    cmd = _train_cmd(candidate, tmp_path / candidate.name, _args(), None)
    assert cmd[1:3] == ["-m", "training.train"]
    cfg, _ = resolve_config(build_parser().parse_args(cmd[3:]))
    assert cfg.dataset == "mnist" and cfg.arch == "dcgan28"
    assert cfg.steps > 0 and cfg.ema == 0.999


def test_steps_override_wins(tmp_path: Path) -> None:
    cmd = _train_cmd(CANDIDATES[0], tmp_path / "x", _args(), 7)
    cfg, _ = resolve_config(build_parser().parse_args(cmd[3:]))
    assert cfg.steps == 7


def test_the_shipped_recipe_is_a_candidate() -> None:
    """The bundled model's config must stay reproducible with `--only` of its candidate."""
    names = {c.name for c in CANDIDATES}
    assert "w64-hinge-sn-ttur" in names


def test_rank_puts_the_class_balance_target_first_then_fid() -> None:
    rows = [
        {"name": "sharp-but-skewed", "kl": KL_TARGET + 0.03, "fid_c": 5.0},
        {"name": "balanced-worse", "kl": KL_TARGET - 0.01, "fid_c": 20.0},
        {"name": "balanced-better", "kl": KL_TARGET - 0.04, "fid_c": 15.0},
        {"name": "failed"},
    ]
    assert [r["name"] for r in rank(rows)] == [
        "balanced-better",
        "balanced-worse",
        "sharp-but-skewed",
        "failed",
    ]


def test_unknown_candidate_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--only", "nope"])
    assert "unknown candidate" in capsys.readouterr().err
