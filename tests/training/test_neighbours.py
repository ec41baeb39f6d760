"""training.neighbours: precision/recall/density/coverage and NN distances, by hand and by property."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from training import neighbours as N


def _col(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=np.float64)[:, None]


def _brute_force(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> dict[str, float]:
    """The four definitions written out on full distance matrices (sorted rows, no partition)."""
    rr, ff, fr = cdist(real, real), cdist(fake, fake), cdist(fake, real)
    real_pr, real_dc = np.sort(rr, axis=1)[:, k_pr], np.sort(rr, axis=1)[:, k_dc]
    fake_pr = np.sort(ff, axis=1)[:, k_pr]
    return {
        "precision": float(np.mean([(fr[j] <= real_pr).any() for j in range(len(fake))])),
        "recall": float(np.mean([(fr[:, i] <= fake_pr).any() for i in range(len(real))])),
        "density": float(
            sum((fr[j] < real_dc).sum() for j in range(len(fake))) / (k_dc * len(fake))
        ),
        "coverage": float(np.mean(fr.min(axis=0) < real_dc)),
    }


def test_hand_computed_case() -> None:
    """1-D, real {0, 1, 3, 7}, fake {0.5, 2, 5, 20}.

    k=1 radii, real: 1, 1, 2, 4 (closed balls [-1,1] [0,2] [1,5] [3,11]); fake: 1.5, 1.5, 3, 15.
    precision: 0.5, 2 (on the edge of [0,2]) and 5 are in, 20 is not -> 3/4.
    recall: 0 and 1 in [-1, 2], 3 in [0.5, 3.5], 7 in [2, 8] -> 1.
    k=2 radii, real: 3, 2, 3, 6 (open balls (-3,3) (-1,3) (0,6) (1,13)).
    density: 0.5 is in 3 balls, 2 in 4, 5 in 2, 20 in none -> 9 / (2 * 4) = 1.125.
    coverage: nearest fakes 0.5, 0.5, 1, 2 are all inside the radii 3, 2, 3, 6 -> 1.
    """
    got = N.precision_recall_density_coverage(
        _col([0, 1, 3, 7]), _col([0.5, 2, 5, 20]), k_pr=1, k_dc=2
    )
    assert got == {"precision": 0.75, "recall": 1.0, "density": 1.125, "coverage": 1.0}


def test_ball_edges_closed_for_precision_recall_open_for_density_coverage() -> None:
    """real {0, 2}, fake {4, 10}, k=1: real radii 2 and 2, fake radii 6 and 6.

    Fake 4 lies exactly on the edge of real 2's ball: inside the closed ball (precision 1/2, as
    Kynkäänniemi et al.'s code compares with <=), outside the open one (density 0, coverage 0,
    as Naeem et al.'s code compares with <). Both reals are inside fake 4's ball [-2, 10].
    """
    got = N.precision_recall_density_coverage(_col([0, 2]), _col([4, 10]), k_pr=1, k_dc=1)
    assert got == {"precision": 0.5, "recall": 1.0, "density": 0.0, "coverage": 0.0}
    # Swapped roles: real 4 sits on the edge of fake 2's closed ball [0, 4], so recall is 1/2;
    # real radii 6 and 6 put both fakes inside real 4's ball, none inside real 10's.
    got = N.precision_recall_density_coverage(_col([4, 10]), _col([0, 2]), k_pr=1, k_dc=1)
    assert got == {"precision": 1.0, "recall": 0.5, "density": 1.0, "coverage": 0.5}


def test_identical_sets_score_one() -> None:
    """A set against itself: every point is in its own ball, so precision = recall = coverage =
    1. Each open k-NN ball holds exactly k points (itself and k-1 neighbours) plus, at most, its
    k-th neighbour sitting exactly on the edge, which round-off may put either side: so density
    lies in [1, 1 + 1/k]."""
    x = np.random.default_rng(0).standard_normal((400, 8))
    got = N.precision_recall_density_coverage(x, x.copy())
    assert (got["precision"], got["recall"], got["coverage"]) == (1.0, 1.0, 1.0)
    assert 1.0 <= got["density"] <= 1.0 + 1 / 5


def test_disjoint_sets_score_zero() -> None:
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((300, 8)), rng.standard_normal((300, 8)) + 100.0
    got = N.precision_recall_density_coverage(real, fake)
    assert got == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_coverage_of_two_samples_of_one_distribution_matches_naeem_lemma() -> None:
    """For real and fake drawn i.i.d. from one distribution, E[coverage] = 1 - prod_{i=1..k}
    (N - i) / (N + M - i) (Naeem et al. 2020, lemma 2): 0.9689 for N = M = 1000, k = 5, whatever
    the distribution. Density's expectation is 1. Tolerance: coverage's sd over seeds is ~0.005,
    density's ~0.03; a wrong radius (k-1 or k+1 neighbours) moves coverage by > 0.015."""
    n, k = 1000, 5
    expected = 1.0 - np.prod([(n - i) / (2 * n - i) for i in range(1, k + 1)])
    rng = np.random.default_rng(2)
    coverage, density = [], []
    for _ in range(3):
        real, fake = rng.standard_normal((n, 6)), rng.standard_normal((n, 6))
        got = N.precision_recall_density_coverage(real, fake)
        coverage.append(got["coverage"])
        density.append(got["density"])
        assert got["precision"] > 0.85 and got["recall"] > 0.85
    assert np.mean(coverage) == pytest.approx(expected, abs=0.01)
    assert np.mean(density) == pytest.approx(1.0, abs=0.06)


def test_dropped_modes_cost_recall_and_coverage_not_precision() -> None:
    """Real: two well-separated clusters; fake: only one of them. Fakes are all realistic
    (precision ~1) but half the reals are unreached (recall, coverage ~0.5)."""
    rng = np.random.default_rng(3)
    real = np.concatenate([rng.standard_normal((500, 4)), rng.standard_normal((500, 4)) + 50])
    fake = rng.standard_normal((1000, 4))
    got = N.precision_recall_density_coverage(real, fake)
    assert got["precision"] > 0.85
    assert got["recall"] == pytest.approx(0.5, abs=0.03)
    assert got["coverage"] == pytest.approx(0.5, abs=0.03)


def test_unrealistic_fakes_cost_precision_and_density_not_recall() -> None:
    """Half the fakes from the real distribution, half far off it: precision and density fall
    to about half of their same-distribution values, while recall and coverage (the reals are
    all reached by the realistic half) stay high."""
    rng = np.random.default_rng(4)
    real = rng.standard_normal((1000, 4))
    same = N.precision_recall_density_coverage(real, rng.standard_normal((1000, 4)))
    half = np.concatenate([rng.standard_normal((1000, 4)), rng.standard_normal((1000, 4)) + 50])
    got = N.precision_recall_density_coverage(real, half)
    assert got["precision"] == pytest.approx(same["precision"] / 2, abs=0.03)
    assert got["density"] == pytest.approx(same["density"] / 2, abs=0.06)
    assert got["recall"] > 0.9 and got["coverage"] > 0.9


@pytest.mark.parametrize("budget", [64 << 20, 4096, 1])
def test_chunked_pass_equals_the_definitions(budget: int) -> None:
    """Chunking (down to one row at a time) changes nothing; integer coordinates make ties
    common, so the <= / < conventions are exercised on many edges."""
    rng = np.random.default_rng(5)
    real, fake = (
        rng.integers(0, 6, (120, 3)).astype(float),
        rng.integers(0, 7, (90, 3)).astype(float),
    )
    real += rng.integers(0, 1000, (120, 1)) * 1e-3  # break exact duplicates but keep many near-ties
    got = N.precision_recall_density_coverage(real, fake, budget_bytes=budget)
    assert got == pytest.approx(_brute_force(real, fake, 3, 5), abs=1e-12)


def test_precomputed_manifold_gives_the_same_figures() -> None:
    rng = np.random.default_rng(6)
    real, fake = rng.standard_normal((200, 5)), rng.standard_normal((150, 5)) + 0.3
    manifold = N.Manifold.of(real)
    assert N.precision_recall_density_coverage(manifold, fake) == (
        N.precision_recall_density_coverage(real, fake)
    )
    with pytest.raises(ValueError, match="manifold built with"):
        N.precision_recall_density_coverage(manifold, fake, k_pr=2)


def test_kth_neighbour_radii_exclude_the_point_itself_but_not_its_duplicates() -> None:
    x = _col([0, 0, 1, 5])
    radii = N.kth_neighbour_sq_radii(x, (1, 2), budget_bytes=8)
    np.testing.assert_array_equal(radii[1], [0, 0, 1, 16])  # 0's nearest other point is the other 0
    np.testing.assert_array_equal(radii[2], [1, 1, 1, 25])
    with pytest.raises(ValueError, match="1 <= k < N"):
        N.kth_neighbour_sq_radii(x, (4,))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nearest_sq_distances_match_cdist(dtype: type) -> None:
    rng = np.random.default_rng(7)
    queries, pool = rng.random((70, 20)), rng.random((333, 20))
    expected = cdist(queries, pool, "sqeuclidean").min(axis=1)
    for budget in (16 << 20, 512):
        got = N.nearest_sq_distances(queries, pool, dtype=dtype, budget_bytes=budget)
        np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype is np.float32 else 1e-12)
    # A query that is in the pool is at distance 0 (clamped, never negative).
    assert N.nearest_sq_distances(pool[:3], pool).tolist() == pytest.approx([0, 0, 0], abs=1e-12)
