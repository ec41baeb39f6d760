"""The seed -> latent mapping: the contract that makes a seed mean the same image everywhere."""

import math

import numpy as np
import pytest

from contract.latents import SEED_MAX, classes_for_seeds, latents, latents_for_seeds

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def _splitmix64(x: int) -> int:
    z = (x + GOLDEN) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def _reference(seed: int, z_dim: int) -> list[float]:
    """The algorithm as documented in contract/latents.py, in plain Python integers and math."""
    h = _splitmix64(seed)
    out = []
    for m in range((z_dim + 1) // 2):
        u1, u2 = (
            ((_splitmix64((h + k * GOLDEN) & MASK) >> 11) + 0.5) / 2**53 for k in (2 * m, 2 * m + 1)
        )
        r = math.sqrt(-2.0 * math.log(u1))
        out += [r * math.cos(2 * math.pi * u2), r * math.sin(2 * math.pi * u2)]
    return out[:z_dim]


@pytest.mark.parametrize("seed", [0, 1, 42, 2**31, SEED_MAX, SEED_MAX + 63])
def test_matches_the_documented_algorithm(seed):
    got = latents_for_seeds(np.array([seed], dtype=np.uint64), 7)[0]
    np.testing.assert_allclose(got, np.float32(_reference(seed, 7)), rtol=0, atol=1e-6)


def test_row_i_is_the_latent_of_seed_plus_i():
    block = latents(1000, 16, 100)
    for i in (0, 5, 15):
        np.testing.assert_array_equal(block[i], latents(1000 + i, 1, 100)[0])


def test_deterministic_and_float32():
    a, b = latents(7, 4, 100), latents(7, 4, 100)
    assert a.dtype == np.float32 and a.shape == (4, 100)
    np.testing.assert_array_equal(a, b)


def test_standard_normal_statistics():
    z = latents(0, 2000, 100).astype(np.float64).ravel()  # 200,000 values
    # Standard errors: mean 1/sqrt(N) ~ 0.0022, std ~ 0.0016; 5 sigma bounds.
    assert abs(z.mean()) < 0.012
    assert abs(z.std() - 1.0) < 0.008
    # Kurtosis 3 for a Gaussian (a uniform would give 1.8): catches a broken Box-Muller.
    assert abs(((z - z.mean()) ** 4).mean() / z.var() ** 2 - 3.0) < 0.1


def test_neighbouring_seeds_are_uncorrelated():
    z = latents(0, 1000, 64).astype(np.float64)
    r = np.corrcoef(z[:-1].ravel(), z[1:].ravel())[0, 1]
    assert abs(r) < 0.02  # N = 63,936 pairs: standard error ~0.004


def test_truncation_scales_towards_the_mean():
    np.testing.assert_allclose(
        latents(3, 2, 10, truncation=0.5), latents(3, 2, 10) * 0.5, rtol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(seed=-1, n=1, z_dim=4),
        dict(seed=0, n=-1, z_dim=4),
        dict(seed=0, n=1, z_dim=0),
        dict(seed=0, n=1, z_dim=4, truncation=0.0),
        dict(seed=0, n=1, z_dim=4, truncation=1.5),
    ],
)
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        latents(**kwargs)


def _reference_class(seed: int, num_classes: int) -> int:
    """The documented class rule in plain Python integers."""
    w = _splitmix64(_splitmix64(seed) ^ 0x636C617373)
    return ((w >> 32) * num_classes) >> 32


@pytest.mark.parametrize("num_classes", [1, 3, 10, 1000])
def test_classes_for_seeds_matches_the_documented_rule(num_classes):
    seeds = np.array([0, 1, 42, 2**31, SEED_MAX, SEED_MAX + 63], dtype=np.uint64)
    got = classes_for_seeds(seeds, num_classes)
    assert got.dtype == np.int64
    assert got.tolist() == [_reference_class(int(s), num_classes) for s in seeds]


def test_classes_for_seeds_are_balanced():
    counts = np.bincount(classes_for_seeds(np.arange(50_000, dtype=np.uint64), 10), minlength=10)
    # 5,000 expected per class, binomial sd ~ 67: 5 sd bounds.
    assert counts.min() > 5000 - 335 and counts.max() < 5000 + 335
