"""Stacked MNIST: triples, mode numbers, KL to the uniform, the sampler, and the real reference."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.fake_data import write_idx
from fixtures.real_data import require_real_data

from training import stacked_mnist as sm
from training.config import TrainConfig
from training.data import DatasetError, default_arch, make_sampler


def numbered_digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Digit i has pixel (0, 0) = i and label i % 10: a stacked image says which digits it holds."""
    digits = np.zeros((n, 28, 28), np.uint8)
    digits[:, 0, 0] = np.arange(n)
    return digits, (np.arange(n) % 10).astype(np.uint8)


def test_stack_puts_three_independent_digits_in_the_channels() -> None:
    digits, labels = numbered_digits(200)
    images, modes = sm.stack(digits, labels, 5000, seed=1)
    assert images.shape == (5000, 3, 28, 28) and images.dtype == np.uint8
    which = images[:, :, 0, 0].astype(np.int64)  # (N, 3): the digit index in each channel
    # each channel's label read from its own digit gives the mode number
    np.testing.assert_array_equal(modes, sm.mode_numbers(labels[which]))
    # channels drawn independently: no two channels agree more often than chance (1 / 200)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert np.mean(which[:, a] == which[:, b]) < 0.02
    # the same seed gives the same triples, another seed others
    again, _ = sm.stack(digits, labels, 5000, seed=1)
    other, _ = sm.stack(digits, labels, 5000, seed=2)
    assert np.array_equal(images, again) and not np.array_equal(images, other)


def test_mode_numbers_cover_all_triples() -> None:
    triples = np.array([[d // 100, d // 10 % 10, d % 10] for d in range(1000)])
    np.testing.assert_array_equal(sm.mode_numbers(triples), np.arange(1000))


def test_mode_figures_of_extremes() -> None:
    uniform = sm.mode_figures(np.repeat(np.arange(1000), 26))
    assert uniform.modes == 1000 and abs(uniform.kl) < 1e-12 and uniform.n == 26000
    collapsed = sm.mode_figures(np.full(26000, 7))
    assert collapsed.modes == 1 and collapsed.kl == pytest.approx(math.log(1000))
    assert collapsed.largest_mode_fraction == 1.0
    half = sm.mode_figures(np.repeat(np.arange(500), 52))  # half the modes, evenly
    assert half.modes == 500 and half.kl == pytest.approx(math.log(2))
    with pytest.raises(ValueError):
        sm.mode_figures(np.array([1000]))


def test_uniform_floor_is_the_multinomial_bias() -> None:
    floor = sm.uniform_floor(n=26000, draws=40)
    # E[KL] of N uniform draws over K cells ~ (K - 1) / (2 N): chance alone, not a model's fault
    assert floor["kl_mean"] == pytest.approx(999 / 52000, rel=0.1)
    assert floor["modes_min"] == 1000


def test_sampler_serves_three_channel_triples(tmp_path: Path) -> None:
    digits, labels = numbered_digits(300)
    write_idx(tmp_path, digits, labels=labels)
    cfg = TrainConfig(
        dataset="stacked-mnist", arch="dcgan28", batch_size=16, data_root=str(tmp_path)
    )
    assert default_arch("stacked-mnist") == "dcgan28"
    sampler = make_sampler(cfg, download=False)
    assert sampler.channels == 3 and sampler.info["n_images"] == min(sm.N_TRAIN, 64 * 300)
    batch = sampler()
    assert isinstance(batch, torch.Tensor) and batch.shape == (16, 3, 28, 28)
    u8 = ((batch + 1) * 127.5).round().to(torch.uint8)
    assert int(u8[:, :, 0, 0].max()) < 300  # every channel is one of the training digits


def test_stacked_mnist_refuses_conditional(tmp_path: Path) -> None:
    digits, labels = numbered_digits(100)
    write_idx(tmp_path, digits, labels=labels)
    cfg = TrainConfig(
        dataset="stacked-mnist", arch="dcgan28", batch_size=16, conditional=True,
        data_root=str(tmp_path),
    )  # fmt: skip
    with pytest.raises(DatasetError, match="drop --conditional"):
        make_sampler(cfg, download=False)


def test_real_stacked_images_cover_every_mode() -> None:
    require_real_data("mnist")
    ref = sm.real_reference(n=26000)
    # The classifier reads real triples almost always right, and real data covers all 1,000
    # modes with a KL close to chance: the floor every model is judged against.
    assert ref["modes"] == 1000
    assert ref["triple_error_rate"] < 0.03
    assert ref["kl"] < 0.03 and ref["kl"] == pytest.approx(ref["true_labels"]["kl"], abs=0.003)
    assert ref["mean_confidence"] > 0.9 and ref["kl_of_marginals"] < 0.01
    assert all(sum(h) == pytest.approx(1.0, abs=1e-3) for h in ref["digit_histograms"])


def test_classifier_sees_a_collapsed_generator() -> None:
    """Images that repeat one real triple score one mode (whatever its channels show)."""
    require_real_data("mnist")
    images, modes = sm.load_stacked("test", n=50)
    repeated = np.repeat(images[:1], 300, axis=0)
    figs = sm.mode_figures(sm.mode_numbers(sm.classify_channels(repeated)))
    assert figs.modes == 1 and figs.kl == pytest.approx(math.log(1000))
    varied = sm.mode_numbers(sm.classify_channels(images))
    assert np.mean(varied == modes) > 0.9


@pytest.mark.slow
def test_trained_stacked_model_exports_and_is_scored(tmp_path: Path) -> None:
    """The RGB path end to end: train on stacked triples, export, and the metrics count modes."""
    from training import export
    from training.metrics import evaluate_model_dir
    from training.metrics_text import render_report
    from training.train import main as train_main

    digits, labels = numbered_digits(40)
    digits[:, 4:24, 10:18] = 200  # something to learn besides the index pixel
    write_idx(tmp_path / "data", digits, labels=labels)
    run = tmp_path / "run"
    common = ["--dataset", "stacked-mnist", "--data-root", str(tmp_path / "data")]
    assert train_main([*common, "--width", "4", "--batch-size", "16", "--steps", "2",
                       "--pack", "2", "--no-progress", "--out", str(run)]) == 0  # fmt: skip
    out = tmp_path / "models" / "stacked-mnist"
    manifest = export.export_run(
        run, "stacked-mnist", out, data_root=str(tmp_path / "data"), evaluate=False
    )
    assert manifest["image"]["channels"] == 3
    figures = sm.evaluate_model(out, n=600)
    assert 1 <= figures["modes"] <= 600 and figures["n"] == 600
    assert 0.1 <= figures["mean_confidence"] <= 1.0 and len(figures["digit_histograms"]) == 3
    report = evaluate_model_dir(out, n=20, seed_sets=(0,), data_root=tmp_path / "data")
    stacked = report["stacked_mnist"]
    assert stacked["n"] == sm.N_EVAL and 1 <= stacked["modes"] <= 1000
    assert "unavailable" in stacked["real"]  # the fake root has no test split
    assert "of 1000 modes" in render_report(report)
