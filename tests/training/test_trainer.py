"""One GAN update (training.trainer): the lr schedule, and what ``measure`` adds to the stats."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from training.config import TrainConfig
from training.nets import ModelArgs, build_networks
from training.trainer import GanTrainer, grad_norm, lr_factor


def _trainer(**kw: Any) -> GanTrainer:
    torch.manual_seed(0)
    cfg = TrainConfig(dataset="ring8", arch="mlp", width=4, batch_size=16, **kw)
    assert cfg.z_dim is not None
    G, D = build_networks(ModelArgs("mlp", cfg.z_dim, cfg.width))
    return GanTrainer(cfg, G, D, torch.device("cpu"))


def _real() -> torch.Tensor:
    return torch.randn(16, 2)


def test_lr_decay_schedule() -> None:
    assert lr_factor(0, 100, 0.0) == 1.0
    assert lr_factor(49, 100, 0.5) == 1.0
    assert lr_factor(50, 100, 0.5) == 1.0
    assert lr_factor(75, 100, 0.5) == pytest.approx(0.5)
    assert lr_factor(99, 100, 0.5) == pytest.approx(0.02)


def test_set_step_applies_the_decay_to_both_optimisers() -> None:
    t = _trainer(lr_decay=0.5, steps=100, lr_g=1e-3, lr_d=4e-3)
    t.set_step(75)
    assert t.opt_g.param_groups[0]["lr"] == pytest.approx(5e-4)
    assert t.opt_d.param_groups[0]["lr"] == pytest.approx(2e-3)


def test_grad_norm_is_the_norm_of_all_gradients_together() -> None:
    layer = torch.nn.Linear(3, 2)
    assert grad_norm(layer) == 0.0  # no gradients yet
    layer(torch.ones(4, 3)).sum().backward()
    assert layer.weight.grad is not None and layer.bias.grad is not None
    by_hand = (layer.weight.grad.square().sum() + layer.bias.grad.square().sum()).sqrt()
    assert grad_norm(layer) == pytest.approx(float(by_hand))


def test_measured_steps_report_grad_norms_and_lrs_and_train_the_same() -> None:
    plain, measured = _trainer(lr_g=1e-3, lr_d=4e-3), _trainer(lr_g=1e-3, lr_d=4e-3)
    torch.manual_seed(1)
    stats = plain.step(_real)
    assert not {"g_grad_norm", "d_grad_norm", "lr_g", "lr_d"} & set(stats)
    measured.measure = True
    torch.manual_seed(1)
    stats_m = measured.step(_real)
    assert stats_m["g_grad_norm"] > 0 and stats_m["d_grad_norm"] > 0
    assert (stats_m["lr_g"], stats_m["lr_d"]) == (1e-3, 4e-3)
    # Measuring reads the gradients; the update is the same.
    assert {k: v for k, v in stats_m.items() if k in stats} == stats
    for a, b in zip(plain.G.parameters(), measured.G.parameters(), strict=True):
        assert torch.equal(a, b)


def test_d_grad_norm_is_ds_own_gradient_not_gs_backward_through_d() -> None:
    t = _trainer()
    t.measure = True
    seen: list[float] = []
    real_step = t.opt_d.step

    def step_d(*args: object, **kw: object) -> None:
        seen.append(grad_norm(t.D))  # D's gradient as its optimiser uses it
        real_step()

    t.opt_d.step = step_d
    stats = t.step(_real)
    assert stats["d_grad_norm"] == pytest.approx(seen[-1])
