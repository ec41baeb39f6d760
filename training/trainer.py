"""One GAN update (n_critic discriminator steps, then one generator step), with the regularisers.

Kept free of I/O, logging and data loading so the CLI (``training.train``), the mode-collapse lab
and the tests all run exactly the same update.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from training.config import TrainConfig
from training.losses import get_loss, gradient_penalty, pack_samples
from training.nets import update_ema


def _with_labels(D: nn.Module, labels: Tensor, images: Tensor) -> Tensor:
    return D(images, labels)


def lr_factor(step: int, steps: int, decay: float) -> float:
    """1 until the last ``decay`` fraction of training, then linearly down to 0 at the end.

    A large constant rate spreads G over the modes fast; letting it fall to 0 lets G and D settle
    instead of circling the equilibrium (the mode-collapse lab, docs/mode-collapse.md).
    """
    if decay <= 0:
        return 1.0
    return min(1.0, (steps - step) / (decay * steps))


def make_optimizer(
    params: Iterable[nn.Parameter], cfg: TrainConfig, lr: float | None
) -> torch.optim.Optimizer:
    assert lr is not None and cfg.beta1 is not None and cfg.beta2 is not None  # resolved
    if get_loss(cfg.loss).optimizer == "rmsprop":
        # WGAN (Arjovsky et al.): momentum-based optimisers were unstable with weight clipping.
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2))


def grad_norm(module: nn.Module) -> float:
    """L2 norm of all of ``module``'s gradients together (what clip_grad_norm_ would clip)."""
    norms = [p.grad.detach().norm() for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def _bare(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    inner = getattr(module, "module", module)
    assert isinstance(inner, nn.Module)
    return inner


class GanTrainer:
    """Holds G, D, their optimisers and G's EMA; ``step`` performs one full GAN update.

    ``G`` and ``D`` may be DistributedDataParallel wrappers; ``generator`` is always the bare G.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        G: nn.Module,
        D: nn.Module,
        device: torch.device,
        num_classes: int = 0,
    ):
        self.cfg = cfg
        self.num_classes = num_classes
        self.loss = get_loss(cfg.loss)
        self.G, self.D = G, D
        self.device = device
        self.opt_g = make_optimizer(G.parameters(), cfg, cfg.lr_g)
        self.opt_d = make_optimizer(D.parameters(), cfg, cfg.lr_d)
        bare = _bare(G)
        self.generator: nn.Module = bare
        self.g_ema: nn.Module | None = (
            copy.deepcopy(bare).eval().requires_grad_(False) if cfg.ema > 0 else None
        )
        self.ema_updates = 0
        # When set, the next step also reports gradient norms and learning rates: the loop sets
        # it on the steps it logs, so the extra pass over the gradients is paid only there.
        self.measure = False

    def sample_z(self, n: int) -> Tensor:
        assert self.cfg.z_dim is not None  # resolved by TrainConfig
        return torch.randn(n, self.cfg.z_dim, device=self.device)

    def set_step(self, step: int) -> None:
        """Apply the learning-rate schedule (``cfg.lr_decay``) for the update about to run."""
        if not self.cfg.lr_decay:
            return
        factor = lr_factor(step, self.cfg.steps, self.cfg.lr_decay)
        for opt, base in ((self.opt_g, self.cfg.lr_g), (self.opt_d, self.cfg.lr_d)):
            assert base is not None  # resolved by TrainConfig
            for group in opt.param_groups:
                group["lr"] = base * factor

    def step(self, next_real: Callable[[], Tensor | tuple[Tensor, Tensor]]) -> dict[str, float]:
        """One GAN update. ``next_real()`` gives images, or ``(images, labels)`` when conditional.

        Conditional: D judges real pairs (x, y) against fakes G(z, y) made for the same labels,
        so both sides of D's loss see the same class mix (and a gradient penalty interpolates
        within one class); G's step draws its labels uniformly.
        """
        cfg, loss = self.cfg, self.loss
        stats: dict[str, float] = {}
        labels: Tensor | None = None
        assert cfg.n_critic is not None  # resolved by TrainConfig
        for i in range(cfg.n_critic):
            batch = next_real()
            if isinstance(batch, tuple):
                real, labels = batch
            else:
                real = batch
            with torch.no_grad():
                fake = self._generate(self.sample_z(real.shape[0]), labels)
            d_real = self._judge(real, labels)
            d_fake = self._judge(fake, labels)
            d_loss = loss.d_loss(d_real, d_fake)
            if cfg.gp_weight:
                critic = (
                    self.D if labels is None else functools.partial(_with_labels, self.D, labels)
                )
                gp = gradient_penalty(critic, real, fake, cfg.pack)
                stats["gp"] = gp.item()
                d_loss = d_loss + cfg.gp_weight * gp
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            if self.measure and i == cfg.n_critic - 1:
                # Before G's backward, which also deposits gradients in D's parameters.
                stats["d_grad_norm"] = grad_norm(self.D)
            self.opt_d.step()
            if cfg.weight_clip:
                with torch.no_grad():
                    for p in self.D.parameters():
                        p.clamp_(-cfg.weight_clip, cfg.weight_clip)
        stats["d_loss"] = d_loss.item()
        stats["d_real"] = d_real.mean().item()
        stats["d_fake"] = d_fake.mean().item()
        if loss.outputs_logit:
            # D(x) and D(G(z)) as probabilities: the numbers the minimax theory talks about.
            stats["p_real"] = torch.sigmoid(d_real).mean().item()
            stats["p_fake"] = torch.sigmoid(d_fake).mean().item()
        if loss.name in ("wgan", "wgan-gp"):
            # The critic's estimate of the Earth-Mover distance: the curve WGAN says to watch.
            stats["w_distance"] = stats["d_real"] - stats["d_fake"]

        g_labels = None
        if labels is not None:
            g_labels = torch.randint(0, self.num_classes, (cfg.batch_size,), device=self.device)
        fake = self._generate(self.sample_z(cfg.batch_size), g_labels)
        g_loss = loss.g_loss(self._judge(fake, g_labels))
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        if self.measure:
            stats["g_grad_norm"] = grad_norm(self.G)
            stats["lr_g"] = float(self.opt_g.param_groups[0]["lr"])
            stats["lr_d"] = float(self.opt_d.param_groups[0]["lr"])
        self.opt_g.step()
        if self.g_ema is not None:
            # Warm-up (as TF's ExponentialMovingAverage with num_updates): with a fixed 0.999 the
            # average would still be 37% random init after 1000 steps, and its samples noise.
            n = self.ema_updates
            update_ema(self.g_ema, self.generator, min(cfg.ema, (1 + n) / (10 + n)))
            self.ema_updates += 1
        stats["g_loss"] = g_loss.item()
        return stats

    def _generate(self, z: Tensor, labels: Tensor | None) -> Tensor:
        return self.G(z) if labels is None else self.G(z, labels)

    def _judge(self, images: Tensor, labels: Tensor | None) -> Tensor:
        if labels is None:
            return self.D(pack_samples(images, self.cfg.pack))
        return self.D(images, labels)

    def sampling_generator(self) -> nn.Module:
        """The generator to sample and export from: the EMA copy when enabled."""
        return self.g_ema if self.g_ema is not None else self.generator

    def state_dict(self) -> dict[str, Any]:
        bare_d = _bare(self.D)
        return {
            "G": self.generator.state_dict(),
            "D": bare_d.state_dict(),
            "G_ema": self.g_ema.state_dict() if self.g_ema is not None else None,
            "ema_updates": self.ema_updates,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        bare_d = _bare(self.D)
        self.generator.load_state_dict(state["G"])
        bare_d.load_state_dict(state["D"])
        if self.g_ema is not None and state.get("G_ema") is not None:
            self.g_ema.load_state_dict(state["G_ema"])
            self.ema_updates = int(state.get("ema_updates", 0))
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
