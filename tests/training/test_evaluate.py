"""Mode-collapse metrics (training.evaluate) on samples whose answer is known, and the RUN_DIR CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from training.checkpoint import rng_state, save_checkpoint
from training.config import TrainConfig
from training.evaluate import evaluate_generator, evaluate_samples, main
from training.lab import QUICK, Variant, train_run
from training.toy import mode_centers, mode_std


def _on_modes(dataset: str, per_mode: int, jitter: float = 0.0, seed: int = 0) -> np.ndarray:
    centers = mode_centers(dataset)
    x = np.repeat(centers, per_mode, axis=0)
    return x + np.random.default_rng(seed).normal(scale=jitter, size=x.shape)


@pytest.mark.parametrize("dataset", ["grid25", "ring8"])
def test_every_mode_equally_covered(dataset: str) -> None:
    k = len(mode_centers(dataset))
    m = evaluate_samples(_on_modes(dataset, 100), dataset)
    assert m["modes"] == m["n_modes"] == k
    assert m["hq_fraction"] == 1.0
    assert m["reverse_kl"] == pytest.approx(0.0, abs=1e-12)
    assert m["mode_counts"] == [100] * k


def test_true_distribution_scores_like_the_theory() -> None:
    # 1 - exp(-9/2) = 98.9% of a 2-D isotropic Gaussian lies within 3 std of its mean.
    rng = np.random.default_rng(0)
    centers = mode_centers("grid25")
    x = centers[rng.integers(25, size=20000)] + rng.normal(
        scale=mode_std("grid25"), size=(20000, 2)
    )
    m = evaluate_samples(x, "grid25")
    assert m["modes"] == 25
    assert m["hq_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=0.005)
    assert m["reverse_kl"] < 0.005


def test_all_samples_on_one_mode() -> None:
    x = np.tile(mode_centers("grid25")[7], (2500, 1))
    m = evaluate_samples(x, "grid25")
    assert m["modes"] == 1
    assert m["hq_fraction"] == 1.0
    assert m["reverse_kl"] == pytest.approx(math.log(25))


def test_half_the_ring() -> None:
    # HQ samples spread evenly over 4 of 8 modes: KL(p || u) = log(8 / 4).
    x = _on_modes("ring8", 50)[: 4 * 50]
    m = evaluate_samples(x, "ring8")
    assert m["modes"] == 4
    assert m["reverse_kl"] == pytest.approx(math.log(2))


def test_samples_far_from_every_mode() -> None:
    x = np.full((2500, 2), 100.0)
    m = evaluate_samples(x, "grid25")
    assert m["hq_fraction"] == 0.0
    assert m["modes"] == 0
    assert m["reverse_kl"] is None  # no HQ sample: no mode histogram to compare


def test_between_modes_is_not_high_quality() -> None:
    # (1, 1) is equidistant from four grid modes, 1.41 away: nearest mode exists, but not HQ.
    m = evaluate_samples(np.full((10, 2), 1.0), "grid25")
    assert (m["hq_fraction"], m["modes"]) == (0.0, 0)


def test_the_three_std_boundary() -> None:
    std = mode_std("grid25")
    inside = np.array([[2.9 * std, 0.0]])
    outside = np.array([[3.1 * std, 0.0]])
    assert evaluate_samples(inside, "grid25")["hq_fraction"] == 1.0
    assert evaluate_samples(outside, "grid25")["hq_fraction"] == 0.0


def test_only_high_quality_samples_enter_the_histogram() -> None:
    # 100 HQ samples on mode 0 plus 900 junk samples near mode 1: one mode, KL = log 25.
    centers = mode_centers("grid25")
    x = np.concatenate([np.tile(centers[0], (100, 1)), np.tile(centers[1] + 0.5, (900, 1))])
    m = evaluate_samples(x, "grid25")
    assert m["modes"] == 1
    assert m["hq_fraction"] == pytest.approx(0.1)
    assert m["reverse_kl"] == pytest.approx(math.log(25))


def test_non_finite_samples_are_never_high_quality() -> None:
    x = np.array([[np.nan, 0.0], [np.inf, 1.0], [0.0, 0.0]])
    m = evaluate_samples(x, "grid25")
    assert m["hq_fraction"] == pytest.approx(1 / 3)
    assert m["modes"] == 1


class _ToCenters(nn.Module):
    """A 'generator' that maps each latent to the mode picked by its first coordinate."""

    def __init__(self, dataset: str):
        super().__init__()
        self.register_buffer("centers", torch.tensor(mode_centers(dataset), dtype=torch.float32))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        u = torch.special.ndtr(z[:, 0])  # uniform in (0, 1)
        idx = (u * len(self.centers)).long().clamp_(0, len(self.centers) - 1)
        return self.centers[idx]


def test_evaluate_generator_uses_a_fixed_latent_draw() -> None:
    cfg = TrainConfig(dataset="ring8", arch="mlp", z_dim=3)
    G = _ToCenters("ring8").train()
    a = evaluate_generator(G, cfg, n=2500, seed=3)
    b = evaluate_generator(G, cfg, n=2500, seed=3)
    assert a == b
    assert a["n_samples"] == 2500
    assert a["modes"] == 8 and a["hq_fraction"] == 1.0 and a["reverse_kl"] < 0.01
    assert G.training  # restored after sampling in eval mode


def test_evaluate_generator_refuses_image_datasets() -> None:
    cfg = TrainConfig(dataset="mnist", arch="dcgan28")
    with pytest.raises(ValueError, match="2-D toy"):
        evaluate_generator(nn.Identity(), cfg)


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_cli_on_a_lab_run_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ema: float
) -> None:
    run_dir = tmp_path / "run"
    record = train_run(Variant("tiny", "ns", {"ema": ema}), "grid25", 0, QUICK, run_dir)
    assert (run_dir / "config.json").is_file() and (run_dir / "ckpt-latest.pt").is_file()
    assert main([str(run_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["generator"] == ("G_ema" if ema else "G")
    assert out["step"] == record["g_steps"]
    assert out["n_samples"] == 2500
    assert {"modes", "hq_fraction", "reverse_kl", "mode_counts"} <= out.keys()
    # The lab scores its runs on the same latent draw, so the CLI reproduces its numbers.
    assert (out["modes"], out["hq_fraction"], out["reverse_kl"]) == (
        record["modes"],
        record["hq_fraction"],
        record["reverse_kl"],
    )


def test_cli_on_a_missing_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    assert "error" in capsys.readouterr().err


def test_cli_refuses_an_image_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = TrainConfig(dataset="mnist", arch="dcgan28")
    save_checkpoint(
        tmp_path, config=cfg, step=1, trainer_state={}, rng=[rng_state()], sampler=[{}], keep=0
    )
    assert main([str(tmp_path)]) == 2
    assert "mnist run" in capsys.readouterr().err
