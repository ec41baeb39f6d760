"""The torch modules the exporter turns into ONNX, the export call and the parity check.

The graphs' inputs and outputs are the contract (docs/model-format.md):

- ``generator.onnx``: ``z`` float32 (B, z_dim) [+ ``class`` int64 (B,) when conditional]
  -> ``images`` float32 (B, C, H, W) in [-1, 1];
- ``discriminator.onnx``: ``images`` float32 (B, C, H, W) -> ``logits`` float32, (B,) or (B, K)
  for a conditional D (column k: the logit of (image, class k)), and ``ood`` float32 (B,), the
  out-of-distribution distance of contract/realness.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contract.latents import classes_for_seeds, latents
from contract.onnx_runtime import cpu_session

if TYPE_CHECKING:
    from training.nets import ProjectionDiscriminator

OPSET = 18
PARITY_TOL = 1e-4
# The OOD distance whitens D's features by the spread real images show: a feature real images
# barely vary in amplifies float32 rounding (torch and ONNX Runtime sum in different orders).
# What matters is the realness it feeds: the distance is compared in units of the spread of
# held-out real images' distances (``ood_scale``), 1e-2 of which moves their p-value by ~1e-3.
OOD_PARITY_TOL = 1e-2
PARITY_SEEDS = 64
MAX_BATCH = 4096


class ParityError(RuntimeError):
    pass


class SingleImageScorer(nn.Module):
    """Lets a PacGAN discriminator (trained on packs of k images) score one image.

    Each image is repeated k times on the channel axis: the packed D's verdict on a pack made only
    of that image. With pack = 1 this is the identity wrapper.
    """

    def __init__(self, discriminator: nn.Module, pack: int):
        super().__init__()
        self.discriminator = discriminator
        self.pack = pack

    def forward(self, images: Tensor) -> Tensor:
        if self.pack > 1:
            images = images.repeat(1, self.pack, 1, 1)
        return self.discriminator(images)


def trunk_of(discriminator: nn.Module) -> nn.Sequential:
    """The convolutional layers of any of our image discriminators (training/nets.py)."""
    trunk = getattr(discriminator, "trunk", None) or getattr(discriminator, "net", None)
    if not isinstance(trunk, nn.Sequential):
        raise TypeError(f"{type(discriminator).__name__} has no Sequential trunk to pool")
    return trunk


def feature_layers(discriminator: nn.Module) -> nn.Sequential:
    """D's layers up to its last activation: the trunk without the layer that makes the score."""
    trunk = trunk_of(discriminator)
    last = max(i for i, m in enumerate(trunk) if isinstance(m, nn.LeakyReLU))
    return nn.Sequential(*list(trunk)[: last + 1])


def pooled_moments(trunk: nn.Sequential, x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel spatial mean and variance after every LeakyReLU of D's trunk, each (B, sum C).

    Why these: they summarise what D's filters respond to (strokes, edges, their contrast) at
    each scale while discarding where, so an all-black frame, a blurred digit or a shirt lands
    far from real digits even where D's single logit does not say so.
    """
    means, variances = [], []
    h = x
    for layer in trunk:
        h = layer(h)
        if isinstance(layer, nn.LeakyReLU) and h.dim() == 4:
            flat = h.flatten(2)
            mean = flat.mean(dim=2)
            means.append(mean)
            variances.append((flat - mean[:, :, None]).square().mean(dim=2))
    return torch.cat(means, dim=1), torch.cat(variances, dim=1)


DEEP_COMPONENTS = 96
LAPLACE_GRID = 4


def laplacian_energy(images: Tensor) -> Tensor:
    """log of the mean squared Laplacian on a ``LAPLACE_GRID`` x ``LAPLACE_GRID`` grid, averaged
    over colour channels: how sharp each part of the image is. A blurred image loses exactly
    this, while its layout (what D's coarse features see) barely moves. (B, grid * grid)."""
    kernel = images.new_tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    c = images.shape[1]
    lap = F.conv2d(images, kernel.expand(c, 1, 3, 3), padding=1, groups=c)
    energy = F.adaptive_avg_pool2d(lap.square().mean(dim=1, keepdim=True), LAPLACE_GRID)
    return torch.log(energy.flatten(1) + 1e-3)


class DiscriminatorGraph(nn.Module):
    """``images -> (logits, ood)``: what discriminator.onnx computes.

    ``ood`` is the Mahalanobis distance of ``features`` from a Gaussian of real training images'
    features fitted at export (training/realness_fit.py), as ``||(f - mean) @ whiten||`` with
    ``whiten`` the inverse square root of the covariance: a plain norm in float32 is better
    conditioned than ``diff @ precision @ diff``. Computed in the graph so the service needs
    nothing but ONNX Runtime to reproduce it. The buffers start as placeholders (zeros,
    identities) and are set by the fit before export.
    """

    # Buffers (register_buffer below), typed for mypy: nn.Module's __getattr__ says Tensor | Module.
    variance_floor: Tensor
    deep_mean: Tensor
    deep_basis: Tensor
    mean: Tensor
    whiten: Tensor

    def __init__(
        self,
        discriminator: nn.Module,
        pack: int,
        conditional: bool,
        image_shape: tuple[int, int, int],
    ):
        super().__init__()
        self.discriminator = discriminator
        self.pack = pack
        self.conditional = conditional
        self.image_shape = image_shape
        with torch.no_grad():
            probe = self._packed(torch.zeros(1, *image_shape))
            channels = pooled_moments(trunk_of(discriminator), probe)[0].shape[1]
            deep = feature_layers(discriminator)(probe).flatten(1).shape[1]
        components = min(DEEP_COMPONENTS, deep)
        n = 2 * channels + LAPLACE_GRID**2 + components
        self.register_buffer("variance_floor", torch.ones(channels))
        self.register_buffer("deep_mean", torch.zeros(deep))
        self.register_buffer("deep_basis", torch.eye(deep, components))
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("whiten", torch.eye(n))

    def _packed(self, images: Tensor) -> Tensor:
        return images.repeat(1, self.pack, 1, 1) if self.pack > 1 else images

    def moments(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return pooled_moments(trunk_of(self.discriminator), self._packed(images))

    def deep(self, images: Tensor) -> Tensor:
        """D's last feature map, flattened: what D has learnt the data's content looks like."""
        return feature_layers(self.discriminator)(self._packed(images)).flatten(1)

    def features(self, images: Tensor) -> Tensor:
        """Per channel of every D layer the mean and log variance of its response (the log
        because a flat frame or a heavy blur has variances orders of magnitude below real
        images'; the floor, a fraction of their typical variance, bounds the log and float32's
        rounding there), the Laplacian energy grid, and the top principal components of D's last
        feature map."""
        mean, variance = self.moments(images)
        deep = (self.deep(images) - self.deep_mean) @ self.deep_basis
        return torch.cat(
            [mean, torch.log(variance + self.variance_floor), laplacian_energy(images), deep],
            dim=1,
        )

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if self.conditional:
            logits = cast("ProjectionDiscriminator", self.discriminator).all_logits(images)
        else:
            logits = self.discriminator(self._packed(images))
        ood = torch.linalg.vector_norm((self.features(images) - self.mean) @ self.whiten, dim=1)
        return logits, ood


def export_generator(g: nn.Module, z_dim: int, path: Path, conditional: bool) -> None:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    z = torch.from_numpy(latents(0, 2, z_dim))
    if conditional:
        inputs: tuple[Any, ...] = (z, torch.tensor([0, 1], dtype=torch.int64))
        names = ["z", "class"]
        dynamic: dict[str, Any] = {"z": {0: batch}, "y": {0: batch}}
        module: nn.Module = _ConditionalGenerator(g)
    else:
        inputs, names, dynamic, module = (z,), ["z"], {"z": {0: batch}}, g
    torch.onnx.export(
        module,
        inputs,
        str(path),
        input_names=names,
        output_names=["images"],
        dynamic_shapes=dynamic,
        opset_version=OPSET,
        external_data=False,
        dynamo=True,
        verbose=False,
    )


class _ConditionalGenerator(nn.Module):
    """``forward(z, y)`` with the argument names torch.export's dynamic shapes refer to."""

    def __init__(self, g: nn.Module):
        super().__init__()
        self.g = g

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        return self.g(z, y)


def export_discriminator(graph: DiscriminatorGraph, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    torch.onnx.export(
        graph,
        (torch.zeros(2, *graph.image_shape),),
        str(path),
        input_names=["images"],
        output_names=["logits", "ood"],
        dynamic_shapes={"images": {0: batch}},
        opset_version=OPSET,
        external_data=False,
        dynamo=True,
        verbose=False,
    )


def generator_inputs(seed: int, n: int, z_dim: int, num_classes: int) -> dict[str, np.ndarray]:
    """The ONNX inputs for seeds ``seed .. seed+n-1``, classes drawn from the seeds (contract)."""
    inputs = {"z": latents(seed, n, z_dim)}
    if num_classes:
        inputs["class"] = classes_for_seeds(np.arange(seed, seed + n, dtype=np.uint64), num_classes)
    return inputs


def run_torch_generator(g: nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        z = torch.from_numpy(inputs["z"])
        out = g(z) if "class" not in inputs else g(z, torch.from_numpy(inputs["class"]))
    return out.numpy()


def check_parity(
    g: nn.Module,
    graph: DiscriminatorGraph,
    g_path: Path,
    d_path: Path,
    z_dim: int,
    num_classes: int,
    real: np.ndarray | None,
    ood_scale: float = 1.0,
) -> dict[str, float]:
    """torch vs ONNX Runtime on ``PARITY_SEEDS`` seeds (and as many real images): loud if apart."""
    inputs = generator_inputs(0, PARITY_SEEDS, z_dim, num_classes)
    g_torch = run_torch_generator(g, inputs)
    g_ort = cpu_session(g_path).run(None, inputs)[0]
    images = g_torch if real is None else np.concatenate([g_torch, real[:PARITY_SEEDS]])
    with torch.no_grad():
        d_torch = [t.numpy() for t in graph(torch.from_numpy(images))]
    d_ort = cpu_session(d_path).run(None, {"images": images})
    if g_ort.shape != g_torch.shape or [a.shape for a in d_ort] != [a.shape for a in d_torch]:
        raise ParityError(
            f"shape mismatch torch vs ONNX Runtime: {g_torch.shape}/{g_ort.shape}, "
            f"{[a.shape for a in d_torch]}/{[a.shape for a in d_ort]}"
        )
    report = {
        "seeds": PARITY_SEEDS,
        "max_abs_diff_generator": float(np.abs(g_ort - g_torch).max()),
        "max_abs_diff_discriminator": float(np.abs(d_ort[0] - d_torch[0]).max()),
        "max_diff_ood_in_scales": float(np.abs(d_ort[1] - d_torch[1]).max() / ood_scale),
        "tolerance": PARITY_TOL,
    }
    report["tolerance_ood"] = OOD_PARITY_TOL
    worst = max(report["max_abs_diff_generator"], report["max_abs_diff_discriminator"])
    if (
        not np.isfinite([worst, report["max_diff_ood_in_scales"]]).all()
        or worst > PARITY_TOL
        or report["max_diff_ood_in_scales"] > OOD_PARITY_TOL
    ):
        raise ParityError(f"ONNX Runtime and torch disagree beyond {PARITY_TOL}: {report}")
    return report
