"""Float images <-> uint8: the one rounding rule of the contract (model.json ``image.to_uint8``).

Generated images are judged, hashed, shown and served as uint8, so the exporter's sample grids,
the metrics and the service must all round the same way, or a figure would describe pixels
nobody sees.
"""

from __future__ import annotations

import numpy as np

TO_UINT8 = "clip(round((x - lo) * 255 / (hi - lo)), 0, 255)"
FROM_UINT8 = "lo + u8 * (hi - lo) / 255"
# What every image model of this project trains in (tanh outputs; data scaled u8 / 127.5 - 1).
VALUE_RANGE = (-1.0, 1.0)


def to_uint8(x: np.ndarray, value_range: tuple[float, float] = VALUE_RANGE) -> np.ndarray:
    """``TO_UINT8`` elementwise (shape kept); round half to even, as numpy's ``rint``."""
    lo, hi = value_range
    return np.clip(np.rint((np.asarray(x) - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def from_uint8(u8: np.ndarray, value_range: tuple[float, float] = VALUE_RANGE) -> np.ndarray:
    """``FROM_UINT8`` elementwise as float32 (shape kept): uploads and real data into model range."""
    lo, hi = value_range
    return (
        np.asarray(u8, dtype=np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)
    ).astype(np.float32, copy=False)
