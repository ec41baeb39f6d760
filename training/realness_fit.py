"""Fit the realness calibration at export (the formula and why: contract/realness.py).

Two fits, neither of which sees the test split (the metrics judge on it) or any of the negative
sets the metrics test against (black frames, noise, the other dataset, ...): what the score
rejects, it rejects because it is far from real training images, not because it was shown them.

- the out-of-distribution term: a Gaussian fitted to features of D's activations on real
  training images (``FIT_IMAGES`` of them); its Mahalanobis distance is computed inside the ONNX
  graph. ``QUANTILES`` quantiles of the distances of ``HELD_OUT_IMAGES`` other training images
  turn a distance into a p-value: the fraction of real images at least as far out;
- Platt scaling of D's logit (real vs generated, held-out real images and generated images from
  seeds users rarely try) for losses whose D output is not a log-odds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from contract.latents import classes_for_seeds, latents
from contract.realness import class_logits
from training.losses import get_loss
from training.onnx_export import LAPLACE_GRID, DiscriminatorGraph

FIT_IMAGES = 20_000
HELD_OUT_IMAGES = 4_000
QUANTILES = 201  # of held-out real distances: the p-value's resolution (0.5%)
FULL_CREDIT = 0.5  # p-values at least this (as typical as the median real image) count as 1
DEEP_FIT_IMAGES = 6000
# Shrinkage towards a scaled identity: pooled features of nearby layers are strongly correlated
# and a few are near-constant, so the raw covariance is close to singular.
SHRINKAGE = 1e-2
# log(variance + floor), floor = this fraction of the real images' median variance per channel.
VARIANCE_FLOOR = 1e-2
FEATURE_FLOOR = 1e-3
# Calibration latents come from seeds far away from the ones users usually try.
CALIBRATION_SEED = 1_000_000_000


def batched(fn: Any, x: np.ndarray, batch: int = 1000) -> list[np.ndarray]:
    """``fn`` over ``x`` in batches, each output concatenated (torch, no grad)."""
    outs: list[list[np.ndarray]] = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            res = fn(torch.from_numpy(x[i : i + batch]))
            res = res if isinstance(res, tuple) else (res,)
            if not outs:
                outs = [[] for _ in res]
            for acc, r in zip(outs, res, strict=True):
                acc.append(r.numpy())
    return [np.concatenate(o) for o in outs]


def fit_ood(
    graph: DiscriminatorGraph, fit_images: np.ndarray, held_out: np.ndarray
) -> dict[str, Any]:
    """Fit the graph's feature Gaussian on ``fit_images``; return the ``realness.ood`` block of
    model.json, whose quantiles of ``held_out`` distances turn a distance into a p-value."""
    _, variances = batched(graph.moments, fit_images)
    floor = np.maximum(VARIANCE_FLOOR * np.median(variances, axis=0), 1e-12)
    graph.variance_floor.copy_(torch.from_numpy(floor).float())
    # The principal axes of D's last feature map, from a subset (thousands of dimensions).
    (deep,) = batched(graph.deep, fit_images[:DEEP_FIT_IMAGES])
    deep = deep.astype(np.float64)
    deep_mean = deep.mean(axis=0)
    _, axes = np.linalg.eigh(np.cov(deep - deep_mean, rowvar=False))
    basis = axes[:, ::-1][:, : graph.deep_basis.shape[1]].copy()
    graph.deep_mean.copy_(torch.from_numpy(deep_mean).float())
    graph.deep_basis.copy_(torch.from_numpy(basis).float())
    (features,) = batched(graph.features, fit_images)
    f = features.astype(np.float64)
    mean = f.mean(axis=0)
    eigenvalues, vectors = np.linalg.eigh(np.cov(f, rowvar=False))
    # No direction is trusted below FEATURE_FLOOR of the features' own size: float32 rounding of
    # a feature is ~1e-7 of its size, and whitening a direction real images barely vary in would
    # amplify that into distances torch and ONNX Runtime disagree on.
    floor_ev = (FEATURE_FLOOR * float(np.sqrt(np.mean(f * f)))) ** 2
    eigenvalues = np.maximum(eigenvalues + SHRINKAGE * eigenvalues.mean(), floor_ev)
    whiten = vectors / np.sqrt(eigenvalues)[None, :]  # ||(f - mean) @ whiten|| = Mahalanobis
    graph.mean.copy_(torch.from_numpy(mean).float())
    graph.whiten.copy_(torch.from_numpy(whiten).float())
    _, distances = batched(graph, held_out)
    quantiles = np.quantile(distances, np.linspace(0.0, 1.0, QUANTILES))
    return {
        "output": "ood",
        "quantiles": [float(q) for q in quantiles],
        "held_out": len(held_out),
        "full_credit": FULL_CREDIT,
        "features": (
            f"per-channel mean and log(variance + floor) after each LeakyReLU of D, the log "
            f"Laplacian energy on a {LAPLACE_GRID}x{LAPLACE_GRID} grid and the top "
            f"{graph.deep_basis.shape[1]} principal components of D's last feature map "
            f"({f.shape[1]} values)"
        ),
        "distance": "Mahalanobis distance to a Gaussian of real training images' features",
        "fitted_on": {
            "gaussian": f"{len(fit_images)} real training images "
            f"(principal components: the first {min(len(fit_images), DEEP_FIT_IMAGES)})",
            "quantiles": f"{len(held_out)} other real training images, {QUANTILES} quantiles",
            "shrinkage": SHRINKAGE,
        },
    }


def fit_platt(logits: np.ndarray, labels: np.ndarray, iters: int = 100) -> tuple[float, float]:
    """Logistic regression ``P(real | logit) = sigmoid(a * logit + b)`` by Newton's method."""
    x = np.stack([logits.astype(np.float64), np.ones_like(logits, dtype=np.float64)], axis=1)
    w = np.zeros(2)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - labels)
        hess = x.T @ (x * (p * (1 - p))[:, None]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def fit_logit(
    loss_name: str,
    g: torch.nn.Module,
    graph: DiscriminatorGraph,
    real: np.ndarray,
    z_dim: int,
    num_classes: int,
) -> dict[str, Any]:
    """``a, b`` of the logit factor: 1, 0 for logistic D's; Platt-fitted otherwise."""
    formula = "realness = sigmoid(a * logit + b) * min(1, p(ood) / ood.full_credit)"
    if get_loss(loss_name).outputs_logit:
        return {
            "method": "sigmoid+ood",
            "a": 1.0,
            "b": 0.0,
            "formula": formula,
            "why": f"{loss_name} trains D as a logistic classifier, so sigmoid(logit) is its P(real)",
        }
    seeds = np.arange(CALIBRATION_SEED, CALIBRATION_SEED + len(real), dtype=np.uint64)
    z = torch.from_numpy(latents(CALIBRATION_SEED, len(real), z_dim))
    with torch.no_grad():
        if num_classes:
            y = torch.from_numpy(classes_for_seeds(seeds, num_classes))
            fake = torch.cat([g(z[i : i + 500], y[i : i + 500]) for i in range(0, len(z), 500)])
        else:
            fake = torch.cat([g(z[i : i + 500]) for i in range(0, len(z), 500)])
    real_logits, _ = batched(graph, real)
    fake_logits, _ = batched(graph, fake.numpy())
    # Fitted on the class-free logit, the one /score uses when no class is named.
    logits = np.concatenate([class_logits(real_logits), class_logits(fake_logits)])
    labels = np.concatenate([np.ones(len(real)), np.zeros(len(fake))])
    a, b = fit_platt(logits, labels)
    return {
        "method": "platt+ood",
        "a": a,
        "b": b,
        "formula": formula,
        "fitted_on": {
            "real": len(real),
            "generated": len(fake),
            "real_source": "held-out real training images",
            "generated_seeds_from": CALIBRATION_SEED,
        },
        "why": f"a {loss_name} critic's output is an unbounded score, not a log-odds",
    }
