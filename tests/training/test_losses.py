"""The six GAN objectives on hand-computed inputs, their gradients, and the gradient penalty."""

from __future__ import annotations

import math

import pytest
import torch

from training.config import TrainConfig
from training.losses import LOSSES, get_loss, gradient_penalty, pack_samples
from training.nets import ModelArgs, build_networks
from training.trainer import GanTrainer

REAL = torch.tensor([0.0, 2.0])
FAKE = torch.tensor([0.0, -1.0])


def sp(x: float) -> float:  # softplus, by hand
    return math.log1p(math.exp(x))


EXPECTED = {
    # name: (D loss, G loss) on REAL, FAKE
    "minimax": ((sp(0) + sp(-2)) / 2 + (sp(0) + sp(-1)) / 2, -(sp(0) + sp(-1)) / 2),
    "ns": ((sp(0) + sp(-2)) / 2 + (sp(0) + sp(-1)) / 2, (sp(0) + sp(1)) / 2),
    "wgan": (-0.5 - 1.0, 0.5),
    "wgan-gp": (-0.5 - 1.0, 0.5),
    "lsgan": (0.5 * (1 + 1) / 2 + 0.5 * (0 + 1) / 2, 0.5 * (1 + 4) / 2),
    "hinge": ((1 + 0) / 2 + (1 + 0) / 2, 0.5),
}


def test_registry_names_and_published_defaults() -> None:
    assert set(LOSSES) == set(EXPECTED)
    assert get_loss("wgan-gp").n_critic == 5 and get_loss("wgan-gp").gp_weight == 10.0
    assert get_loss("wgan").weight_clip == 0.01 and get_loss("wgan").optimizer == "rmsprop"
    assert get_loss("ns").outputs_logit and not get_loss("hinge").outputs_logit
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        get_loss("nope")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loss_values_by_hand(name: str) -> None:
    loss = get_loss(name)
    d, g = EXPECTED[name]
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert loss.g_loss(FAKE).item() == pytest.approx(g, rel=1e-6)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_losses_finite_at_extreme_logits(name: str) -> None:
    # Logit-space formulas: no log(0) when D is (over)confident.
    x = torch.tensor([-100.0, 100.0], requires_grad=True)
    loss = get_loss(name)
    total = loss.d_loss(x, x) + loss.g_loss(x)
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(x.grad).all()


def _grad_wrt_logit(name: str, logit: float) -> float:
    x = torch.tensor([logit], dtype=torch.float64, requires_grad=True)
    get_loss(name).g_loss(x).backward()
    return x.grad.item()


@pytest.mark.parametrize("logit", [-5.0, -10.0, -20.0])
def test_minimax_generator_saturates_where_ns_does_not(logit: float) -> None:
    """Goodfellow et al. sec. 3: d/dl log(1 - sigmoid(l)) = -sigmoid(l) -> 0 as D(G(z)) -> 0,
    while d/dl -log sigmoid(l) = -(1 - sigmoid(l)) -> -1: the non-saturating loss still learns."""
    d_gz = 1 / (1 + math.exp(-logit))
    g_minimax, g_ns = _grad_wrt_logit("minimax", logit), _grad_wrt_logit("ns", logit)
    assert g_minimax == pytest.approx(-d_gz, rel=1e-9)
    assert g_ns == pytest.approx(-(1 - d_gz), rel=1e-9)
    assert abs(g_minimax) < 7e-3 and abs(g_ns) > 0.99


def _linear_critic(weight: torch.Tensor):
    return lambda x: x.flatten(1) @ weight


@pytest.mark.parametrize("pack", [1, 2])
def test_gradient_penalty_of_linear_critics(pack: int) -> None:
    """f(x) = w.x has ||grad f|| = ||w|| everywhere: GP = (||w|| - 1)^2 exactly."""
    torch.manual_seed(0)
    real, fake = torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4)
    w = torch.randn(16 * pack, dtype=torch.float32)
    unit = w / w.norm()
    assert gradient_penalty(_linear_critic(unit), real, fake, pack).item() == pytest.approx(
        0.0, abs=1e-10
    )
    assert gradient_penalty(_linear_critic(2 * unit), real, fake, pack).item() == pytest.approx(
        1.0, rel=1e-5
    )
    assert gradient_penalty(_linear_critic(0.5 * unit), real, fake, pack).item() == pytest.approx(
        0.25, rel=1e-5
    )


def test_gradient_penalty_is_differentiable_in_critic_params() -> None:
    # ||w|| = 2: GP = 1 and dGP/dw = 2 (||w|| - 1) w / ||w|| = w
    w = torch.full((4,), 1.0, requires_grad=True)
    gp = gradient_penalty(lambda x: x @ w, torch.randn(6, 4), torch.randn(6, 4))
    gp.backward()
    torch.testing.assert_close(w.grad, torch.full((4,), 1.0))


def test_pack_samples_shapes() -> None:
    x = torch.arange(6 * 3 * 2 * 2, dtype=torch.float32).reshape(6, 3, 2, 2)
    packed = pack_samples(x, 3)
    assert packed.shape == (2, 9, 2, 2)
    torch.testing.assert_close(packed[1, 3:6], x[4])  # pack 1 holds samples 3, 4, 5
    assert pack_samples(x, 1) is x
    assert pack_samples(torch.zeros(4, 2), 2).shape == (2, 4)
    with pytest.raises(ValueError, match="multiple"):
        pack_samples(x, 4)


def test_wgan_step_clips_critic_weights() -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(dataset="ring8", arch="mlp", loss="wgan", width=4, batch_size=16)
    G, D = build_networks(ModelArgs("mlp", cfg.z_dim, cfg.width))
    trainer = GanTrainer(cfg, G, D, torch.device("cpu"))
    assert any(p.abs().max() > 0.01 for p in D.parameters())  # DCGAN init exceeds the clip
    trainer.step(lambda: torch.randn(16, 2))
    assert all(p.abs().max() <= 0.01 + 1e-9 for p in D.parameters())


def test_wgan_gp_step_reports_penalty_and_distance() -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(dataset="ring8", arch="mlp", loss="wgan-gp", width=4, batch_size=16)
    G, D = build_networks(ModelArgs("mlp", cfg.z_dim, cfg.width))
    stats = GanTrainer(cfg, G, D, torch.device("cpu")).step(lambda: torch.randn(16, 2))
    assert {"gp", "w_distance", "d_loss", "g_loss"} <= set(stats)
    assert stats["w_distance"] == pytest.approx(stats["d_real"] - stats["d_fake"])
