"""Network shapes, DCGAN initialisation, packing, spectral norm and the EMA update."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from training.nets import ModelArgs, build_networks, image_shape, update_ema


def nets(arch: str, **kwargs):
    return build_networks(ModelArgs(arch=arch, **kwargs))


@pytest.mark.parametrize(
    ("arch", "channels", "shape"),
    [
        ("dcgan28", 1, (1, 28, 28)),
        ("dcgan28", 3, (3, 28, 28)),
        ("dcgan32", 3, (3, 32, 32)),
        ("dcgan64", 3, (3, 64, 64)),
    ],
)
def test_dcgan_shapes(arch: str, channels: int, shape: tuple[int, int, int]) -> None:
    G, D = nets(arch, z_dim=16, width=8, channels=channels)
    x = G(torch.randn(4, 16))
    assert x.shape == (4, *shape) and image_shape(arch, channels) == shape
    assert x.abs().max() <= 1.0  # tanh output, the [-1, 1] data range
    assert D(x).shape == (4,)


def test_mlp_shapes() -> None:
    G, D = nets("mlp", z_dim=2, width=8)
    assert G(torch.randn(5, 2)).shape == (5, 2)
    assert D(torch.randn(5, 2)).shape == (5,)


@pytest.mark.parametrize(
    ("arch", "sample"), [("mlp", (2,)), ("dcgan28", (1, 28, 28)), ("dcgan64", (3, 64, 64))]
)
def test_packed_discriminator_takes_k_samples(arch: str, sample: tuple[int, ...]) -> None:
    _, D = nets(arch, z_dim=8, width=4, channels=sample[0] if len(sample) == 3 else 1, pack=4)
    packed = torch.randn(3, 4 * sample[0], *sample[1:])
    assert D(packed).shape == (3,)
    with pytest.raises(RuntimeError):
        D(torch.randn(3, *sample))  # an unpacked batch is the wrong shape


def test_dcgan_init_statistics() -> None:
    """Radford et al.: weights ~ N(0, 0.02), BN scales ~ N(1, 0.02), zero biases."""
    torch.manual_seed(0)
    G, D = nets("dcgan64", z_dim=100, width=64, channels=3)
    weights = torch.cat([m.weight.flatten() for net in (G, D) for m in net.modules()
                         if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)])  # fmt: skip
    assert weights.numel() > 1_000_000
    assert abs(weights.mean().item()) < 1e-4
    assert weights.std().item() == pytest.approx(0.02, rel=0.01)
    bns = [m for net in (G, D) for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    scales = torch.cat([m.weight.flatten() for m in bns])
    assert scales.mean().item() == pytest.approx(1.0, abs=0.005)
    assert scales.std().item() == pytest.approx(0.02, rel=0.15)
    biases = [
        m.bias for net in (G, D) for m in net.modules() if getattr(m, "bias", None) is not None
    ]
    assert all((b == 0).all() for b in biases)


@pytest.mark.parametrize("arch", ["mlp", "dcgan28", "dcgan32"])
def test_spectral_norm_on_every_discriminator_layer(arch: str) -> None:
    _, D = nets(arch, z_dim=8, width=4, channels=3 if arch == "dcgan32" else 1, spectral_norm=True)
    layers = [m for m in D.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())  # BN is pointless next to SN
    _, plain = nets(arch, z_dim=8, width=4, channels=3 if arch == "dcgan32" else 1)
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())


def test_spectral_norm_bounds_the_layer_gain() -> None:
    torch.manual_seed(0)
    _, D = nets("mlp", z_dim=2, width=8, spectral_norm=True)
    for _ in range(30):  # power iterations run in training-mode forwards
        D(torch.randn(64, 2))
    first = D.net[0]
    assert torch.linalg.matrix_norm(first.weight, ord=2).item() == pytest.approx(1.0, rel=0.05)


def test_critic_without_batch_norm_for_gradient_penalty() -> None:
    _, D = nets("dcgan28", z_dim=8, width=4, batch_norm_in_d=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())


def test_update_ema() -> None:
    torch.manual_seed(0)
    G, _ = nets("dcgan28", z_dim=8, width=4)
    ema, _ = nets("dcgan28", z_dim=8, width=4)
    before = [p.clone() for p in ema.parameters()]
    G(torch.randn(4, 8))  # changes G's BN running stats
    update_ema(ema, G, decay=0.75)
    for p_ema, p0, p in zip(ema.parameters(), before, G.parameters(), strict=True):
        torch.testing.assert_close(p_ema, 0.75 * p0 + 0.25 * p)
    for b_ema, b in zip(ema.buffers(), G.buffers(), strict=True):
        torch.testing.assert_close(b_ema, b)
    update_ema(ema, G, decay=0.0)
    for p_ema, p in zip(ema.parameters(), G.parameters(), strict=True):
        torch.testing.assert_close(p_ema, p)
