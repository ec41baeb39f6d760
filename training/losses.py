"""The GAN objectives, selectable by name.

Every loss sees raw discriminator outputs (logits or critic values), never probabilities, so the
log-sigmoid terms stay numerically stable: with ``D(x) = sigmoid(l)``,
``-log D(x) = softplus(-l)`` and ``-log(1 - D(x)) = softplus(l)``.

- ``minimax``: the original game ``min_G max_D E[log D(x)] + E[log(1 - D(G(z)))]``. G descends
  ``log(1 - D(G(z)))``, whose gradient vanishes exactly when D confidently rejects the fakes (early
  training): the saturating loss, kept as the honest baseline.
- ``ns``: same D, but G ascends ``log D(G(z))`` (Goodfellow et al. 2014, sec. 3): same fixed point,
  strong gradients when G is bad.
- ``wgan``: critic estimates the Earth-Mover distance ``E[f(x)] - E[f(G(z))]`` over 1-Lipschitz f;
  Lipschitz is (crudely) enforced by clipping weights to ``[-c, c]``; n_critic = 5, RMSprop.
- ``wgan-gp``: the same critic, Lipschitz by a gradient penalty ``lambda (||grad f(x_hat)|| - 1)^2``
  on random interpolates (Gulrajani et al. 2017), lambda = 10, n_critic = 5, Adam(0, 0.9).
- ``lsgan``: least squares (Mao et al. 2017), a = 0, b = c = 1; penalises fakes far from the
  decision boundary even on the right side, so gradients do not vanish.
- ``hinge``: the margin loss of SAGAN / BigGAN / spectral-norm GANs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class GanLoss:
    name: str
    d_loss: Callable[[Tensor, Tensor], Tensor]
    g_loss: Callable[[Tensor], Tensor]
    n_critic: int = 1
    weight_clip: float | None = None
    gp_weight: float = 0.0
    # D's output is a log-odds of "real" (sigmoid gives a probability); otherwise realness needs a fitted calibration.
    outputs_logit: bool = False
    optimizer: str = "adam"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)


def _d_logistic(real: Tensor, fake: Tensor) -> Tensor:
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def _g_minimax(fake: Tensor) -> Tensor:
    # minimise log(1 - D(G(z))) = -softplus(l): saturates when D(G(z)) -> 0.
    return -F.softplus(fake).mean()


def _g_non_saturating(fake: Tensor) -> Tensor:
    return F.softplus(-fake).mean()


def _d_wasserstein(real: Tensor, fake: Tensor) -> Tensor:
    return fake.mean() - real.mean()


def _g_wasserstein(fake: Tensor) -> Tensor:
    return -fake.mean()


def _d_least_squares(real: Tensor, fake: Tensor) -> Tensor:
    return 0.5 * ((real - 1.0) ** 2).mean() + 0.5 * (fake**2).mean()


def _g_least_squares(fake: Tensor) -> Tensor:
    return 0.5 * ((fake - 1.0) ** 2).mean()


def _d_hinge(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


LOSSES: dict[str, GanLoss] = {
    loss.name: loss
    for loss in (
        GanLoss("minimax", _d_logistic, _g_minimax, outputs_logit=True),
        GanLoss("ns", _d_logistic, _g_non_saturating, outputs_logit=True),
        GanLoss(
            "wgan",
            _d_wasserstein,
            _g_wasserstein,
            n_critic=5,
            weight_clip=0.01,
            optimizer="rmsprop",
            lr_g=5e-5,
            lr_d=5e-5,
        ),
        GanLoss(
            "wgan-gp",
            _d_wasserstein,
            _g_wasserstein,
            n_critic=5,
            gp_weight=10.0,
            lr_g=1e-4,
            lr_d=1e-4,
            betas=(0.0, 0.9),
        ),
        GanLoss("lsgan", _d_least_squares, _g_least_squares),
        GanLoss("hinge", _d_hinge, _g_wasserstein),
    )
}


def get_loss(name: str) -> GanLoss:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None


def gradient_penalty(
    critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, pack: int = 1
) -> Tensor:
    """``E[(||grad_x f(x_hat)||_2 - 1)^2]`` on interpolates between real and fake samples.

    With packing, the interpolation weight is drawn per sample and the norm is taken over the
    whole pack, because the packed critic is one function of the pack.
    """
    alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device)
    x_hat = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
    out = critic(pack_samples(x_hat, pack))
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    per_pack = grad.reshape(real.shape[0] // pack, -1)
    return ((per_pack.norm(2, dim=1) - 1.0) ** 2).mean()


def pack_samples(x: Tensor, pack: int) -> Tensor:
    """PacGAN: stack ``pack`` consecutive samples on the feature/channel axis, ``(B, C, ...)`` to ``(B/pack, pack*C, ...)``."""
    if pack == 1:
        return x
    if x.shape[0] % pack:
        raise ValueError(f"batch of {x.shape[0]} is not a multiple of pack={pack}")
    return x.reshape(x.shape[0] // pack, pack * x.shape[1], *x.shape[2:])
