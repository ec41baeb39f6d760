"""Generator / discriminator pairs: an MLP for 2-D toys, DCGANs for 28x28 grey and 32/64 RGB.

Discriminators return one raw score per (packed) sample, shape ``(B,)``: a logit or a critic value,
the loss decides which (see ``training.losses``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _sn


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. 2016: all weights from N(0, 0.02); batch-norm scales from N(1, 0.02)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _maybe_sn(layer: nn.Module, on: bool) -> nn.Module:
    return _sn(layer) if on else layer


class MLPGenerator(nn.Module):
    def __init__(self, z_dim: int, hidden: int = 256, out_dim: int = 2, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        d = z_dim
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    def __init__(
        self, in_dim: int = 2, hidden: int = 256, depth: int = 3, pack: int = 1, sn: bool = False
    ):
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim * pack
        for _ in range(depth):
            layers += [_maybe_sn(nn.Linear(d, hidden), sn), nn.LeakyReLU(0.2)]
            d = hidden
        layers.append(_maybe_sn(nn.Linear(d, 1), sn))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)


class DCGAN28Generator(nn.Module):
    """z -> 128x7x7 -> 64x14x14 -> Cx28x28: the classic MNIST DCGAN (same as the TorchServe peer's)."""

    def __init__(self, z_dim: int = 100, width: int = 64, channels: int = 1):
        super().__init__()
        self.width = width
        self.fc = nn.Sequential(
            nn.Linear(z_dim, 2 * width * 7 * 7), nn.BatchNorm1d(2 * width * 7 * 7), nn.ReLU()
        )
        self.conv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1),
            nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.conv(self.fc(z).view(z.shape[0], 2 * self.width, 7, 7))


class DCGAN28Discriminator(nn.Module):
    def __init__(
        self,
        width: int = 64,
        channels: int = 1,
        pack: int = 1,
        sn: bool = False,
        batch_norm: bool = True,
    ):
        super().__init__()
        self.net = nn.Sequential(
            _maybe_sn(nn.Conv2d(channels * pack, width, 4, 2, 1), sn),
            nn.LeakyReLU(0.2),
            _maybe_sn(nn.Conv2d(width, 2 * width, 4, 2, 1), sn),
            nn.BatchNorm2d(2 * width) if batch_norm else nn.Identity(),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            _maybe_sn(nn.Linear(2 * width * 7 * 7, 1), sn),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)


class DCGANGenerator(nn.Module):
    """The DCGAN paper's generator for 32x32 (3 up-samplings) or 64x64 (4) RGB images."""

    def __init__(self, z_dim: int = 100, width: int = 64, channels: int = 3, size: int = 64):
        super().__init__()
        n_up = {32: 3, 64: 4}[size]
        mult = 2 ** (n_up - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, width * mult, 4, 1, 0),
            nn.BatchNorm2d(width * mult),
            nn.ReLU(),
        ]
        for _ in range(n_up - 1):
            layers += [
                nn.ConvTranspose2d(width * mult, width * mult // 2, 4, 2, 1),
                nn.BatchNorm2d(width * mult // 2),
                nn.ReLU(),
            ]
            mult //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    def __init__(
        self,
        width: int = 64,
        channels: int = 3,
        size: int = 64,
        pack: int = 1,
        sn: bool = False,
        batch_norm: bool = True,
    ):
        super().__init__()
        n_down = {32: 3, 64: 4}[size]
        layers: list[nn.Module] = [
            _maybe_sn(nn.Conv2d(channels * pack, width, 4, 2, 1), sn),
            nn.LeakyReLU(0.2),
        ]
        mult = 1
        for _ in range(n_down - 1):
            layers += [
                _maybe_sn(nn.Conv2d(width * mult, width * mult * 2, 4, 2, 1), sn),
                nn.BatchNorm2d(width * mult * 2) if batch_norm else nn.Identity(),
                nn.LeakyReLU(0.2),
            ]
            mult *= 2
        layers += [_maybe_sn(nn.Conv2d(width * mult, 1, 4, 1, 0), sn), nn.Flatten()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)


def image_shape(arch: str, channels: int | None = None) -> tuple[int, int, int]:
    """``(C, H, W)`` an architecture produces; the channel count comes from the dataset."""
    size = {"dcgan28": 28, "dcgan32": 32, "dcgan64": 64}[arch]
    return (channels or (1 if arch == "dcgan28" else 3), size, size)


def build_networks(
    arch: str,
    z_dim: int,
    width: int = 64,
    channels: int = 1,
    pack: int = 1,
    spectral_norm: bool = False,
    batch_norm_in_d: bool = True,
) -> tuple[nn.Module, nn.Module]:
    """Return ``(G, D)`` initialised as in the DCGAN paper.

    ``batch_norm_in_d`` should be False for gradient-penalty critics (the penalty is per sample,
    batch norm mixes samples) and is pointless next to spectral norm.
    """
    bn = batch_norm_in_d and not spectral_norm
    if arch == "mlp":
        g: nn.Module = MLPGenerator(z_dim, hidden=4 * width)
        d: nn.Module = MLPDiscriminator(hidden=4 * width, pack=pack, sn=spectral_norm)
    elif arch == "dcgan28":
        g = DCGAN28Generator(z_dim, width, channels)
        d = DCGAN28Discriminator(width, channels, pack, spectral_norm, bn)
    elif arch in ("dcgan32", "dcgan64"):
        size = int(arch[-2:])
        g = DCGANGenerator(z_dim, width, channels, size)
        d = DCGANDiscriminator(width, channels, size, pack, spectral_norm, bn)
    else:
        raise ValueError(f"unknown arch {arch!r}")
    g.apply(dcgan_init)
    d.apply(dcgan_init)
    return g, d


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """Exponential moving average of G's weights (Karras et al.); buffers (BN stats) are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)
