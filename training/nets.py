"""Generator / discriminator pairs: an MLP for 2-D toys, DCGANs for 28x28 grey and 32/64 RGB.

Discriminators return one raw score per (packed) sample, shape ``(B,)``: a logit or a critic value,
the loss decides which (see ``training.losses``).

Class-conditional pairs (``ModelArgs.num_classes > 0``) follow SNGAN / BigGAN:

- G: conditional batch norm (Dumoulin et al. 2017; de Vries et al. 2017). Every batch norm of G
  normalises without its own affine and takes its scale and shift from a per-class embedding, so
  the class steers every layer, not only the input; concatenating a one-hot to ``z`` (the
  original cGAN) lets a small G ignore it, and the class must be learnt back from the first layer.
- D: the projection discriminator (Miyato & Koyama 2018): ``D(x, y) = psi(phi(x)) + <e_y, phi(x)>``.
  Its logit is the log density ratio ``log p_data(x, y) / p_g(x, y)`` split into a class-free term
  and a class term, which is what the optimal D of the minimax game is, written for pairs; feeding
  ``y`` in as an extra input channel (AC-GAN-free cGAN) trained measurably worse in that paper, and
  an auxiliary classifier (AC-GAN) favours easily classified, less diverse samples.

Every network is built from one ``ModelArgs``, which checkpoints store (as nanoGPT's
``model_args``): training, export, evaluation and the lab rebuild exactly the trained shapes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from training.config import ARCHS, TrainConfig


@dataclass(frozen=True)
class ModelArgs:
    """Everything that decides the shapes of G and D: stored in checkpoints, read by every rebuild.

    ``batch_norm_in_d`` is the resolved choice (False under a gradient penalty, where batch norm
    would mix the per-sample penalty, and beside spectral norm, where it is pointless), so nobody
    has to re-derive it from flags and get it wrong.
    """

    arch: str
    z_dim: int
    width: int = 64
    channels: int = 1
    num_classes: int = 0  # 0: unconditional
    pack: int = 1
    spectral_norm: bool = False
    batch_norm_in_d: bool = True

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.num_classes and self.arch == "mlp":
            raise ValueError("class-conditional networks need an image arch (dcgan28/32/64)")
        for name in ("z_dim", "width", "channels", "pack"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @classmethod
    def for_config(cls, cfg: TrainConfig, channels: int, num_classes: int = 0) -> ModelArgs:
        """The networks a training config asks for, given what the dataset holds."""
        assert cfg.z_dim is not None  # resolved by TrainConfig
        return cls(
            arch=cfg.arch,
            z_dim=cfg.z_dim,
            width=cfg.width,
            channels=channels,
            num_classes=num_classes if cfg.conditional else 0,
            pack=cfg.pack,
            spectral_norm=cfg.spectral_norm,
            batch_norm_in_d=not cfg.gp_weight and not cfg.spectral_norm,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelArgs:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model argument(s) {', '.join(unknown)}")
        return cls(**data)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. 2016: all weights from N(0, 0.02); batch-norm scales from N(1, 0.02)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d) and module.affine:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


M = TypeVar("M", bound=nn.Module)


def _maybe_sn(layer: M, on: bool) -> M:
    if on:
        _sn(layer)  # parametrises the layer in place (and returns it)
    return layer


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


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose scale and shift are looked up per class: ``(1 + gain[y]) * bn(x) + bias[y]``.

    The gain starts near 1 and the shift at 0 (DCGAN's batch-norm init, per class), so an untrained
    conditional G starts as the unconditional one.
    """

    def __init__(self, features: int, num_classes: int, dims: int):
        super().__init__()
        self.bn = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(features, affine=False)
        self.gain = nn.Embedding(num_classes, features)
        self.bias = nn.Embedding(num_classes, features)
        nn.init.normal_(self.gain.weight, 0.0, 0.02)
        nn.init.zeros_(self.bias.weight)
        self.dims = dims

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        gain, bias = 1.0 + self.gain(y), self.bias(y)
        if self.dims == 2:
            gain, bias = gain[:, :, None, None], bias[:, :, None, None]
        return gain * self.bn(x) + bias


class ConditionalGenerator(nn.Module):
    """The DCGAN generators above (same layers, same compute) with conditional batch norm.

    ``forward(z, y)``: ``y`` holds class indices (int64, shape ``(B,)``).
    """

    def __init__(self, arch: str, z_dim: int, width: int, channels: int, num_classes: int):
        super().__init__()
        self.arch, self.width = arch, width
        ups: list[
            tuple[int, int, int, int]
        ] = []  # (in, out, stride, padding) of each ConvTranspose
        if arch == "dcgan28":
            self.fc: nn.Module = nn.Linear(z_dim, 2 * width * 7 * 7)
            self.bn0 = ConditionalBatchNorm(2 * width * 7 * 7, num_classes, dims=1)
            ups = [(2 * width, width, 2, 1)]
        else:
            n_up = {"dcgan32": 3, "dcgan64": 4}[arch]
            mult = 2 ** (n_up - 1)
            self.fc = nn.ConvTranspose2d(z_dim, width * mult, 4, 1, 0)
            self.bn0 = ConditionalBatchNorm(width * mult, num_classes, dims=2)
            for _ in range(n_up - 1):
                ups.append((width * mult, width * mult // 2, 2, 1))
                mult //= 2
        self.ups = nn.ModuleList(nn.ConvTranspose2d(i, o, 4, s, p) for i, o, s, p in ups)
        self.bns = nn.ModuleList(ConditionalBatchNorm(o, num_classes, dims=2) for _, o, _, _ in ups)
        self.out = nn.ConvTranspose2d(width, channels, 4, 2, 1)

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        if self.arch == "dcgan28":
            h = torch.relu(self.bn0(self.fc(z), y)).view(z.shape[0], 2 * self.width, 7, 7)
        else:
            h = torch.relu(self.bn0(self.fc(z[:, :, None, None]), y))
        for up, bn in zip(self.ups, self.bns, strict=True):
            h = torch.relu(bn(up(h), y))
        return torch.tanh(self.out(h))


class ProjectionDiscriminator(nn.Module):
    """``D(x, y) = psi(phi(x)) + <embed(y), phi(x)>`` (Miyato & Koyama 2018) on the DCGAN trunks.

    ``phi`` is the unconditional D's convolutional trunk, flattened; ``psi`` its last linear layer.
    ``all_logits(x)`` gives the logit of every class at once, ``(B, K)``: the projection is a
    matrix product, so scoring an image against all classes costs one extra small matmul.
    """

    def __init__(
        self,
        arch: str,
        width: int,
        channels: int,
        num_classes: int,
        sn: bool = False,
        batch_norm: bool = True,
    ):
        super().__init__()
        layers: list[nn.Module] = [
            _maybe_sn(nn.Conv2d(channels, width, 4, 2, 1), sn),
            nn.LeakyReLU(0.2),
        ]
        n_down = {"dcgan28": 2, "dcgan32": 3, "dcgan64": 4}[arch]
        mult = 1
        for _ in range(n_down - 1):
            layers += [
                _maybe_sn(nn.Conv2d(width * mult, width * mult * 2, 4, 2, 1), sn),
                nn.BatchNorm2d(width * mult * 2) if batch_norm else nn.Identity(),
                nn.LeakyReLU(0.2),
            ]
            mult *= 2
        side = 7 if arch == "dcgan28" else 4
        self.features = width * mult * side * side
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        self.psi = _maybe_sn(nn.Linear(self.features, 1), sn)
        embed = nn.Embedding(num_classes, self.features)
        nn.init.normal_(embed.weight, 0.0, 0.02)  # before SN wraps it: SN keeps the direction
        self.embed = _maybe_sn(embed, sn)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = self.trunk(x)
        return self.psi(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)

    def all_logits(self, x: Tensor) -> Tensor:
        h = self.trunk(x)
        return self.psi(h) + h @ self.embed.weight.t()


def image_shape(arch: str, channels: int | None = None) -> tuple[int, int, int]:
    """``(C, H, W)`` an architecture produces; the channel count comes from the dataset."""
    size = {"dcgan28": 28, "dcgan32": 32, "dcgan64": 64}[arch]
    return (channels or (1 if arch == "dcgan28" else 3), size, size)


def build_networks(args: ModelArgs) -> tuple[nn.Module, nn.Module]:
    """Return ``(G, D)`` for ``args``, initialised as in the DCGAN paper."""
    bn = args.batch_norm_in_d and not args.spectral_norm
    sn = args.spectral_norm
    if args.conditional:
        if args.pack > 1:
            raise ValueError("PacGAN packing is not supported with class-conditional networks")
        g: nn.Module = ConditionalGenerator(
            args.arch, args.z_dim, args.width, args.channels, args.num_classes
        )
        d: nn.Module = ProjectionDiscriminator(
            args.arch, args.width, args.channels, args.num_classes, sn, bn
        )
    elif args.arch == "mlp":
        g = MLPGenerator(args.z_dim, hidden=4 * args.width)
        d = MLPDiscriminator(hidden=4 * args.width, pack=args.pack, sn=sn)
    elif args.arch == "dcgan28":
        g = DCGAN28Generator(args.z_dim, args.width, args.channels)
        d = DCGAN28Discriminator(args.width, args.channels, args.pack, sn, bn)
    else:
        size = int(args.arch[-2:])
        g = DCGANGenerator(args.z_dim, args.width, args.channels, size)
        d = DCGANDiscriminator(args.width, args.channels, size, args.pack, sn, bn)
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
