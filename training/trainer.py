"""One GAN update (n_critic discriminator steps, then one generator step), with the regularisers.

Kept free of I/O, logging and data loading so the CLI (``training.train``), the mode-collapse lab
and the tests all run exactly the same update.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from training.config import TrainConfig
from training.losses import get_loss, gradient_penalty, pack_samples
from training.nets import update_ema


def make_optimizer(params, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    if get_loss(cfg.loss).optimizer == "rmsprop":
        # WGAN (Arjovsky et al.): momentum-based optimisers were unstable with weight clipping.
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2))


class GanTrainer:
    """Holds G, D, their optimisers and G's EMA; ``step`` performs one full GAN update.

    ``G`` and ``D`` may be DistributedDataParallel wrappers; ``generator`` is always the bare G.
    """

    def __init__(self, cfg: TrainConfig, G: nn.Module, D: nn.Module, device: torch.device):
        self.cfg = cfg
        self.loss = get_loss(cfg.loss)
        self.G, self.D = G, D
        self.device = device
        self.opt_g = make_optimizer(G.parameters(), cfg, cfg.lr_g)
        self.opt_d = make_optimizer(D.parameters(), cfg, cfg.lr_d)
        bare = G.module if hasattr(G, "module") else G
        self.generator: nn.Module = bare
        self.g_ema: nn.Module | None = (
            copy.deepcopy(bare).eval().requires_grad_(False) if cfg.ema > 0 else None
        )
        self.ema_updates = 0

    def sample_z(self, n: int) -> Tensor:
        return torch.randn(n, self.cfg.z_dim, device=self.device)

    def step(self, next_real: Callable[[], Tensor]) -> dict[str, float]:
        cfg, loss = self.cfg, self.loss
        stats: dict[str, float] = {}
        for _ in range(cfg.n_critic):
            real = next_real()
            with torch.no_grad():
                fake = self.G(self.sample_z(real.shape[0]))
            d_real = self.D(pack_samples(real, cfg.pack))
            d_fake = self.D(pack_samples(fake, cfg.pack))
            d_loss = loss.d_loss(d_real, d_fake)
            if cfg.gp_weight:
                gp = gradient_penalty(self.D, real, fake, cfg.pack)
                stats["gp"] = gp.item()
                d_loss = d_loss + cfg.gp_weight * gp
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
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

        fake = self.G(self.sample_z(cfg.batch_size))
        g_loss = loss.g_loss(self.D(pack_samples(fake, cfg.pack)))
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        if self.g_ema is not None:
            # Warm-up (as TF's ExponentialMovingAverage with num_updates): with a fixed 0.999 the
            # average would still be 37% random init after 1000 steps, and its samples noise.
            n = self.ema_updates
            update_ema(self.g_ema, self.generator, min(cfg.ema, (1 + n) / (10 + n)))
            self.ema_updates += 1
        stats["g_loss"] = g_loss.item()
        return stats

    def sampling_generator(self) -> nn.Module:
        """The generator to sample and export from: the EMA copy when enabled."""
        return self.g_ema if self.g_ema is not None else self.generator

    def state_dict(self) -> dict:
        bare_d = self.D.module if hasattr(self.D, "module") else self.D
        return {
            "G": self.generator.state_dict(),
            "D": bare_d.state_dict(),
            "G_ema": self.g_ema.state_dict() if self.g_ema is not None else None,
            "ema_updates": self.ema_updates,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        bare_d = self.D.module if hasattr(self.D, "module") else self.D
        self.generator.load_state_dict(state["G"])
        bare_d.load_state_dict(state["D"])
        if self.g_ema is not None and state.get("G_ema") is not None:
            self.g_ema.load_state_dict(state["G_ema"])
            self.ema_updates = int(state.get("ema_updates", 0))
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
