"""Seed -> latent vector: the one mapping shared by the exporter's parity checks and the service.

Why not ``np.random.default_rng(seed)``: numpy only promises its Generator streams within a
release, and a served model must give the same picture for the same seed after an upgrade.
So the mapping is spelled out here, in integer arithmetic that any language can reproduce:

    h      = splitmix64(seed)                             # decorrelates neighbouring seeds
    w[k]   = splitmix64(h + k * 0x9E3779B97F4A7C15)       # k = 0 .. 2*ceil(z_dim/2)-1, mod 2**64
    u[k]   = ((w[k] >> 11) + 0.5) / 2**53                 # uniform in (0, 1), never 0
    z[2m]  = sqrt(-2 ln u[2m]) * cos(2 pi u[2m+1])        # Box-Muller, float64
    z[2m+1]= sqrt(-2 ln u[2m]) * sin(2 pi u[2m+1])
    latent = float32(z[:z_dim] * truncation)

Row ``i`` of ``latents(seed, n, ...)`` depends on ``seed + i`` alone, so image ``i`` of a request
is the image of seed ``seed + i`` whatever else shares its batch.
"""

from __future__ import annotations

import numpy as np

ALGORITHM = "splitmix64-boxmuller/1"
SEED_MAX = 2**32 - 1

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of ``x + golden``: a bijection on uint64, wraps mod 2**64."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def latents(seed: int, n: int, z_dim: int, truncation: float = 1.0) -> np.ndarray:
    """Return ``(n, z_dim)`` float32 latents; row ``i`` is the latent of seed ``seed + i``.

    ``truncation`` in (0, 1] scales the latent towards the mean (0): lower values trade
    diversity for fidelity, as in the truncation trick.
    """
    if n < 0 or z_dim < 1:
        raise ValueError(f"need n >= 0 and z_dim >= 1, got n={n}, z_dim={z_dim}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0.0 < truncation <= 1.0:
        raise ValueError(f"truncation must be in (0, 1], got {truncation}")
    return latents_for_seeds(np.arange(seed, seed + n, dtype=np.uint64), z_dim, truncation)


def latents_for_seeds(seeds: np.ndarray, z_dim: int, truncation: float = 1.0) -> np.ndarray:
    """Latents for arbitrary per-row seeds (uint64 array of shape ``(n,)``)."""
    seeds = np.asarray(seeds, dtype=np.uint64)
    pairs = (z_dim + 1) // 2
    k = np.arange(2 * pairs, dtype=np.uint64)
    with np.errstate(over="ignore"):
        words = _splitmix64(_splitmix64(seeds)[:, None] + k[None, :] * _GOLDEN)
    u = ((words >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 2**53)
    radius = np.sqrt(-2.0 * np.log(u[:, 0::2]))
    angle = 2.0 * np.pi * u[:, 1::2]
    z = np.empty((seeds.shape[0], 2 * pairs), dtype=np.float64)
    z[:, 0::2] = radius * np.cos(angle)
    z[:, 1::2] = radius * np.sin(angle)
    return (z[:, :z_dim] * truncation).astype(np.float32)


_CLASS_SALT = np.uint64(0x636C617373)  # "class" in ASCII: a stream apart from the latent words


def classes_for_seeds(seeds: np.ndarray, num_classes: int) -> np.ndarray:
    """The class of each seed when a request to a class-conditional model names none.

    ``w = splitmix64(splitmix64(seed) ^ 0x636C617373)``, class ``((w >> 32) * K) >> 32``: the
    salt keeps the class independent of the latent words of the same seed, and the multiply-shift
    maps the top 32 bits onto ``0 .. K-1`` without the bias of ``w mod K`` toward small classes.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    seeds = np.asarray(seeds, dtype=np.uint64)
    w = _splitmix64(_splitmix64(seeds) ^ _CLASS_SALT)
    with np.errstate(over="ignore"):
        return (((w >> np.uint64(32)) * np.uint64(num_classes)) >> np.uint64(32)).astype(np.int64)
