"""Fit the realness calibration at export (the formula and why: contract/realness.py).

Two fits, neither of which sees the test split (the metrics judge on it) or any of the negative
sets the metrics test against (black frames, noise, the other dataset, ...): what the score
rejects, it rejects because it is far from real training images, not because it was shown them.

- the out-of-distribution term: a Gaussian fitted to D's pooled features of real training
  images (``FIT_IMAGES`` of them); its Mahalanobis distance is computed inside the ONNX graph.
  The threshold and scale come from training images held out of that fit: ``t`` is their
  ``OOD_QUANTILE`` quantile and ``s = (t - median) / OOD_SOFTNESS``, so a held-out real image at
  the median pays ``sigmoid(OOD_SOFTNESS)`` ~ 0.98 and one at three widths past ``t`` 0.05;
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
from training.onnx_export import DiscriminatorGraph

FIT_IMAGES = 20_000
HELD_OUT_IMAGES = 4_000
OOD_QUANTILE = 0.995
OOD_SOFTNESS = 4.0
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
    """Set the graph's Gaussian and return the ``realness.ood`` block of model.json."""
    _, variances = batched(graph.moments, fit_images)
    floor = np.maximum(VARIANCE_FLOOR * np.median(variances, axis=0), 1e-12)
    graph.variance_floor.copy_(torch.from_numpy(floor).float())
    (features,) = batched(graph.features, fit_images)
    f = features.astype(np.float64)
    mean = f.mean(axis=0)
    cov = np.cov(f, rowvar=False)
    eigenvalues, vectors = np.linalg.eigh(cov)
    # No direction is trusted below FEATURE_FLOOR of the features' own size: float32 rounding of
    # a feature is ~1e-7 of its size, and whitening a direction real images barely vary in would
    # amplify that into distances torch and ONNX Runtime disagree on.
    floor = (FEATURE_FLOOR * float(np.sqrt(np.mean(f * f)))) ** 2
    eigenvalues = np.maximum(eigenvalues + SHRINKAGE * eigenvalues.mean(), floor)
    whiten = vectors / np.sqrt(eigenvalues)[None, :]  # ||(f - mean) @ whiten|| = Mahalanobis
    graph.mean.copy_(torch.from_numpy(mean).float())
    graph.whiten.copy_(torch.from_numpy(whiten).float())
    _, distances = batched(graph, held_out)
    threshold = float(np.quantile(distances, OOD_QUANTILE))
    median = float(np.median(distances))
    scale = max((threshold - median) / OOD_SOFTNESS, 1e-6)
    return {
        "output": "ood",
        "threshold": threshold,
        "scale": scale,
        "features": f"per-channel mean and log(variance + floor) after each LeakyReLU of D ({f.shape[1]} values)",
        "distance": "Mahalanobis distance to a Gaussian of real training images' features",
        "fitted_on": {
            "gaussian": f"{len(fit_images)} real training images",
            "threshold": f"{len(held_out)} other real training images: quantile {OOD_QUANTILE}, "
            f"scale = (t - median) / {OOD_SOFTNESS}",
            "shrinkage": SHRINKAGE,
        },
        "held_out_distance": {
            "median": median,
            "q99": float(np.quantile(distances, 0.99)),
            "max": float(distances.max()),
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
    formula = "realness = sigmoid(a * logit + b) * sigmoid(-(ood - ood.threshold) / ood.scale)"
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
