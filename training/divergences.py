"""What a trained discriminator says about two distributions, and what it gives the generator.

- ``jsd_estimate``: train a discriminator on the minimax D loss to (near) optimality and read
  ``JSD_hat = (V(D, G) + log 4) / 2``: at the optimal D, ``V(D*, G) = -log 4 + 2 JSD``
  (Goodfellow et al. 2014, Thm. 1; checked numerically in tests/training/test_theory.py).
- ``em_estimate``: train a WGAN critic (weight-clipped or gradient-penalised) and read
  ``E_data[f] - E_g[f]``, the critic's estimate of the Earth-Mover distance (exact for the best
  1-Lipschitz f; a clipped critic is K-Lipschitz for some unknown K, so it estimates K * W).
- ``generator_grad_norms``: train a fresh D / critic against a fixed G and measure, as D trains,
  the norm of G's gradient under the minimax, the non-saturating and the WGAN generator losses
  (Arjovsky & Bottou 2017, Fig. 2).

All expectations are over fresh samples each step (no finite training set to overfit) and the
read-outs over a large held-out sample. The losses are the project's own (``training.losses``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from training.losses import get_loss, gradient_penalty

LOG4 = math.log(4.0)
Sampler = Callable[[int], Tensor]


def mlp(width: int = 64, depth: int = 2, d_in: int = 2) -> nn.Sequential:
    """A small LeakyReLU MLP critic: ``d_in -> width^depth -> 1``."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else width, width), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers, nn.Linear(width, 1), nn.Flatten(0))


@dataclass(frozen=True)
class CriticSpec:
    """How a critic is trained: which D loss, optimiser and Lipschitz control."""

    loss: str  # "minimax" (the logistic D loss), "wgan" (clipped) or "wgan-gp"
    lr: float
    steps: int
    batch: int = 256
    clip: float | None = None  # wgan: weight clip
    gp_weight: float = 0.0  # wgan-gp: lambda


# The settings the figures use: a logistic D trained hard with Adam (near optimal on these 2-D
# problems within a few hundred steps), the WGAN paper's clipped critic (RMSprop, clip 0.01, here
# a 10x learning rate so it converges in the same number of steps) and WGAN-GP's (lambda 10).
STRONG_D = CriticSpec("minimax", lr=2e-3, steps=500)
CLIPPED = CriticSpec("wgan", lr=5e-4, steps=500, clip=0.01)
GP = CriticSpec("wgan-gp", lr=1e-3, steps=500, gp_weight=10.0)


def _optimiser(spec: CriticSpec, params: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
    if spec.loss == "wgan":
        return torch.optim.RMSprop(params, lr=spec.lr)
    betas = (0.0, 0.9) if spec.loss == "wgan-gp" else (0.5, 0.999)
    return torch.optim.Adam(params, lr=spec.lr, betas=betas)


class CriticTrainer:
    """One critic, trained step by step on fresh draws of ``real`` and ``fake``."""

    def __init__(self, spec: CriticSpec, critic: nn.Module):
        self.spec, self.critic = spec, critic
        self.d_loss = get_loss(spec.loss).d_loss
        self.opt = _optimiser(spec, list(critic.parameters()))
        self.steps_done = 0

    def step(self, real: Tensor, fake: Tensor) -> float:
        fake = fake.detach()
        loss = self.d_loss(self.critic(real), self.critic(fake))
        if self.spec.gp_weight:
            loss = loss + self.spec.gp_weight * gradient_penalty(self.critic, real, fake)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.spec.clip:
            with torch.no_grad():
                for p in self.critic.parameters():
                    p.clamp_(-self.spec.clip, self.spec.clip)
        self.steps_done += 1
        return loss.item()

    def train(self, real: Sampler, fake: Sampler, steps: int | None = None) -> None:
        for _ in range(self.spec.steps if steps is None else steps):
            self.step(real(self.spec.batch), fake(self.spec.batch))


def value(critic: nn.Module, real: Tensor, fake: Tensor) -> float:
    """``V(D, G) = E_data[log D] + E_g[log(1 - D)]``: minus the minimax D loss, on logits."""
    with torch.no_grad():
        return -float(get_loss("minimax").d_loss(critic(real), critic(fake)))


def em_value(critic: nn.Module, real: Tensor, fake: Tensor) -> float:
    """``E_data[f] - E_g[f]``."""
    with torch.no_grad():
        return float(critic(real).mean() - critic(fake).mean())


def jsd_estimate(
    real: Sampler, fake: Sampler, spec: CriticSpec = STRONG_D, n_eval: int = 20_000, width: int = 64
) -> float:
    """``(V(D, G) + log 4) / 2`` at a D trained by ``spec``, on ``n_eval`` held-out samples each."""
    D = mlp(width)
    CriticTrainer(spec, D).train(real, fake)
    return (value(D, real(n_eval), fake(n_eval)) + LOG4) / 2


def em_estimate(
    real: Sampler, fake: Sampler, spec: CriticSpec = GP, n_eval: int = 20_000, width: int = 64
) -> float:
    f = mlp(width)
    CriticTrainer(spec, f).train(real, fake)
    return em_value(f, real(n_eval), fake(n_eval))


# --- the disjoint-supports example of the WGAN paper (Arjovsky et al. 2017, Example 1) ----------


def line(x: float, generator: torch.Generator | None = None) -> Sampler:
    """Uniform on the vertical segment ``{x} x [0, 1]``: P_0 is ``line(0)``, P_theta ``line(theta)``.

    For theta != 0 the supports are disjoint: JSD = log 2 and KL = inf whatever theta is, while
    the Earth-Mover distance is |theta|.
    """

    def draw(n: int) -> Tensor:
        z = torch.rand(n, 1, generator=generator)
        return torch.cat([torch.full_like(z, x), z], dim=1)

    return draw


def shifted(sampler: Sampler, shift: Tensor) -> Sampler:
    """``sampler`` translated by a learnable ``shift`` (gradients flow into it)."""
    return lambda n: sampler(n) + shift


# --- the generator's gradient as D gets stronger (Arjovsky & Bottou 2017, Fig. 2) --------------


def generator_grad_norm(G: nn.Module, critic: nn.Module, g_loss: str, z: Tensor) -> float:
    """``||grad_theta_G  g_loss(critic(G(z)))||`` over all of G's parameters."""
    G.zero_grad(set_to_none=True)
    loss = get_loss(g_loss).g_loss(critic(G(z)))
    grads = torch.autograd.grad(loss, [p for p in G.parameters() if p.requires_grad])
    return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))


def log_spaced(n: int, per_decade: int = 4) -> list[int]:
    """1, ~1.8, ~3.2, ... up to n: integer checkpoints evenly spaced on a log axis."""
    k = max(1, round(per_decade * math.log10(n)))
    return sorted({max(1, round(10 ** (i * math.log10(n) / k))) for i in range(k + 1)} | {n})


def grad_norms_while_d_trains(
    G: nn.Module,
    real: Sampler,
    spec: CriticSpec,
    g_losses: Sequence[str],
    critic: nn.Module,
    z: Tensor,
    z_dim: int,
    at: Sequence[int],
) -> dict[str, list[float]]:
    """Train ``critic`` by ``spec`` against the frozen ``G``; G's gradient norms at steps ``at``.

    Also records ``d_fake``, the mean D(G(z)) (a probability for the logistic D), which says
    why the minimax gradient vanishes: it is proportional to D(G(z)).
    """
    trainer = CriticTrainer(spec, critic)
    out: dict[str, list[float]] = {name: [] for name in g_losses}
    out["d_fake"] = []

    def fake(n: int) -> Tensor:
        with torch.no_grad():
            return G(torch.randn(n, z_dim))

    todo = sorted(set(at))
    for step in range(1, todo[-1] + 1):
        trainer.step(real(spec.batch), fake(spec.batch))
        if step in todo:
            for name in g_losses:
                out[name].append(generator_grad_norm(G, critic, name, z))
            with torch.no_grad():
                d = critic(G(z))
                out["d_fake"].append(
                    float(torch.sigmoid(d).mean() if spec.loss == "minimax" else d.mean())
                )
    return out
