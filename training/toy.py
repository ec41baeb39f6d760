"""2-D mixtures used to study mode collapse (the PacGAN / VEEGAN protocol)."""

from __future__ import annotations

import math

import numpy as np

TOY_DATASETS = ("ring8", "grid25")


def mode_centers(name: str) -> np.ndarray:
    if name == "ring8":
        angles = 2 * math.pi * np.arange(8) / 8
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if name == "grid25":
        ticks = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
        return np.stack(np.meshgrid(ticks, ticks, indexing="ij"), axis=-1).reshape(-1, 2)
    raise ValueError(f"unknown toy dataset {name!r}; choose one of {', '.join(TOY_DATASETS)}")


def mode_std(name: str) -> float:
    return {"ring8": 0.01, "grid25": 0.05}[name]


def sample(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points: a uniformly chosen mode plus isotropic Gaussian noise, float32 ``(n, 2)``."""
    centers = mode_centers(name)
    idx = rng.integers(len(centers), size=n)
    return (centers[idx] + rng.normal(scale=mode_std(name), size=(n, 2))).astype(np.float32)
