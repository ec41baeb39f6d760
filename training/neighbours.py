"""k-nearest-neighbour quality figures: improved precision/recall, density/coverage, NN distances.

- Improved precision and recall (Kynkäänniemi et al. 2019, k = 3): each set's manifold is the
  union of balls around its points, the radius of a ball being the distance to the point's k-th
  nearest neighbour in its own set. Precision: the fraction of fakes inside the real manifold;
  recall: the fraction of reals inside the fake manifold. Closed balls (``<=``), as the authors'
  code.
- Density and coverage (Naeem et al. 2020, k = 5), from the real balls only: density
  ``(1 / kM) sum_j #{i : fake_j in B(real_i)}`` (about 1 when fakes are distributed like the
  reals, above 1 when they crowd into dense real regions), coverage the fraction of reals whose
  ball holds at least one fake. Open balls (``<``), as the authors' code.

A point's own zero distance is not a neighbour (the k-th neighbour of x in X is the (k+1)-th
smallest entry of its distance row, which holds the 0 to itself); duplicates of a point are.

Everything is chunked: a 10,000 x 10,000 comparison never holds more than ``budget_bytes`` of
distances at a time, and the four figures come out of one pass over the real-fake distances.
Distances are compared squared (the same order, no square roots) and computed as
``|a|^2 + |b|^2 - 2 a.b`` in float64 by default, so small integer inputs give exact results
(the hand-computed tests depend on it) and round-off cannot reorder near ties in 128-d features.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

DEFAULT_BUDGET_BYTES = 64 << 20  # per distance block; keeps 2-core shared machines responsive


def _rows_per_chunk(n_cols: int, itemsize: int, budget_bytes: int) -> int:
    return max(1, budget_bytes // max(1, n_cols * itemsize))


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _distance_blocks(
    a: np.ndarray, b: np.ndarray, budget_bytes: int
) -> Iterator[tuple[int, np.ndarray]]:
    """``(row offset, squared distances of a[offset:offset+r] to all of b)``, clamped at 0."""
    b_norms = _sq_norms(b)
    step = _rows_per_chunk(len(b), a.dtype.itemsize, budget_bytes)
    for start in range(0, len(a), step):
        rows = a[start : start + step]
        block = rows @ b.T
        block *= -2.0
        block += _sq_norms(rows)[:, None]
        block += b_norms[None, :]
        np.maximum(block, 0.0, out=block)  # round-off gives -1e-13 for (near-)identical rows
        yield start, block


def _as_array(x: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=dtype)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected a non-empty (N, D) array, got shape {x.shape}")
    return x


def kth_neighbour_sq_radii(
    x: np.ndarray, ks: tuple[int, ...], budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> dict[int, np.ndarray]:
    """For each k in ``ks``: the squared distance of every point to its k-th nearest other point."""
    x = _as_array(x)
    if not ks or min(ks) < 1 or max(ks) >= len(x):
        raise ValueError(f"need 1 <= k < N = {len(x)} points, got k = {ks}")
    out = {k: np.empty(len(x)) for k in ks}
    kth = sorted(set(ks))
    for start, block in _distance_blocks(x, x, budget_bytes):
        rows = np.arange(len(block))
        block[rows, start + rows] = 0.0  # exactly: self must sort first, before true neighbours
        part = np.partition(block, kth, axis=1)
        for k in ks:
            out[k][start : start + len(block)] = part[:, k]
    return out


def nearest_sq_distances(
    queries: np.ndarray,
    pool: np.ndarray,
    *,
    dtype: type = np.float64,
    budget_bytes: int = 16 << 20,
) -> np.ndarray:
    """Squared distance of each query to its nearest point of ``pool`` (the memorisation check).

    Tiled over the pool as well as the queries, with a running minimum: only ``min_b(|b|^2 -
    2 a.b)`` is needed per query, two passes over each tile instead of five, and a tile small
    enough to stay in cache while they run. ``dtype=np.float32`` is for pixel space (784-d
    against 60,000 training images), where it is several times faster and its round-off (~1e-4
    of a squared norm) is far below any gap that matters; feature space stays float64.
    """
    queries, pool = _as_array(queries, dtype), _as_array(pool, dtype)
    pool_norms = _sq_norms(pool)
    side = max(1, int(np.sqrt(budget_bytes / queries.dtype.itemsize)))
    out = np.empty(len(queries), dtype=np.float64)
    for start in range(0, len(queries), side):
        rows = queries[start : start + side]
        best: np.ndarray = np.full(len(rows), np.inf, dtype=dtype)
        for col in range(0, len(pool), side):
            tile = rows @ pool[col : col + side].T
            tile *= -2.0
            tile += pool_norms[None, col : col + side]
            np.minimum(best, tile.min(axis=1), out=best)
        out[start : start + len(rows)] = np.maximum(best + _sq_norms(rows), 0.0)
    return out


@dataclass(frozen=True)
class Manifold:
    """A reference set with its k-NN radii, computed once and reused against many candidates."""

    points: np.ndarray
    sq_radius_pr: np.ndarray
    sq_radius_dc: np.ndarray
    k_pr: int
    k_dc: int

    @classmethod
    def of(
        cls,
        points: np.ndarray,
        k_pr: int = 3,
        k_dc: int = 5,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
    ) -> Manifold:
        points = _as_array(points)
        radii = kth_neighbour_sq_radii(points, (k_pr, k_dc), budget_bytes)
        return cls(points, radii[k_pr], radii[k_dc], k_pr, k_dc)


def precision_recall_density_coverage(
    real: np.ndarray | Manifold,
    fake: np.ndarray,
    k_pr: int = 3,
    k_dc: int = 5,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
) -> dict[str, float]:
    """Improved precision/recall (k = ``k_pr``) and density/coverage (k = ``k_dc``) of ``fake``
    against ``real`` (N, D) feature sets; see the module docstring for the definitions."""
    ref = real if isinstance(real, Manifold) else Manifold.of(real, k_pr, k_dc, budget_bytes)
    if (ref.k_pr, ref.k_dc) != (k_pr, k_dc):
        raise ValueError(f"manifold built with k = {ref.k_pr}/{ref.k_dc}, asked {k_pr}/{k_dc}")
    fake = _as_array(fake)
    (fake_sq_radius,) = kth_neighbour_sq_radii(fake, (k_pr,), budget_bytes).values()
    n_real = len(ref.points)
    fake_in_real = np.zeros(len(fake), dtype=bool)
    balls_per_fake = np.zeros(len(fake), dtype=np.int64)
    real_in_fake = np.zeros(n_real, dtype=bool)
    nearest_fake = np.full(n_real, np.inf)
    for start, block in _distance_blocks(fake, ref.points, budget_bytes):
        stop = start + len(block)
        fake_in_real[start:stop] = (block <= ref.sq_radius_pr[None, :]).any(axis=1)
        balls_per_fake[start:stop] = (block < ref.sq_radius_dc[None, :]).sum(axis=1)
        real_in_fake |= (block <= fake_sq_radius[start:stop, None]).any(axis=0)
        np.minimum(nearest_fake, block.min(axis=0), out=nearest_fake)
    return {
        "precision": float(fake_in_real.mean()),
        "recall": float(real_in_fake.mean()),
        "density": float(balls_per_fake.sum() / (k_dc * len(fake))),
        "coverage": float((nearest_fake < ref.sq_radius_dc).mean()),
    }
