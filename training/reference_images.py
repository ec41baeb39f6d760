"""Reference image sets built from real images or from nothing: degradations and trivial inputs.

Two jobs, both on uint8 ``(N, C, H, W)`` arrays (what a user sees or uploads), numpy + scipy only:

- Degradations of real test images with a known, mild damage, so a generator's figures can be
  read as "better or worse than real digits blurred by one pixel": :func:`gaussian_blur` and
  :func:`random_affine`.
- Inputs a realness score must reject: constant images, uniform noise, inverted real images.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

BLUR_SIGMA = 1.0  # the quality reference (issue 13)
REALNESS_BLUR_SIGMA = 2.0  # the realness battery's blurred set
AFFINE_MAX_SHIFT = 2.0  # pixels, each axis
AFFINE_MAX_DEGREES = 10.0
AFFINE_SEED = 0


def _check(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 (N, C, H, W) images, got {images.dtype} {images.shape}")
    return images


def _quantise(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Each channel blurred by a Gaussian of ``sigma`` pixels, then rounded back to uint8.

    Borders replicate the edge pixel (``mode="nearest"``): MNIST-style backgrounds are 0 at the
    edge either way, and photos do not get a dark frame that would be a second, unintended damage.
    """
    images = _check(images)
    blurred = scipy.ndimage.gaussian_filter(
        images.astype(np.float32), sigma=(0, 0, sigma, sigma), mode="nearest", truncate=4.0
    )
    return _quantise(blurred)


def affine_parameters(
    n: int,
    max_shift: float = AFFINE_MAX_SHIFT,
    max_degrees: float = AFFINE_MAX_DEGREES,
    seed: int = AFFINE_SEED,
) -> np.ndarray:
    """``(n, 3)``: rotation in degrees, shift down, shift right; uniform, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return np.stack(
        [
            rng.uniform(-max_degrees, max_degrees, n),
            rng.uniform(-max_shift, max_shift, n),
            rng.uniform(-max_shift, max_shift, n),
        ],
        axis=1,
    )


def random_affine(
    images: np.ndarray,
    max_shift: float = AFFINE_MAX_SHIFT,
    max_degrees: float = AFFINE_MAX_DEGREES,
    seed: int = AFFINE_SEED,
) -> np.ndarray:
    """Each image rotated about its centre and shifted by its own random (sub-pixel) amount.

    Bilinear interpolation (``order=1``): a cubic spline would keep edges a little sharper but
    rings (over/undershoot clipped at 0 and 255) on MNIST's hard strokes. Edges replicate, as in
    :func:`gaussian_blur`. The same parameters for every channel of an image.
    """
    images = _check(images)
    n, c, h, w = images.shape
    centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    out = np.empty_like(images)
    source = images.astype(np.float32)
    for i, (degrees, dy, dx) in enumerate(affine_parameters(n, max_shift, max_degrees, seed)):
        theta = np.deg2rad(degrees)
        rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        # output = R (input - centre) + centre + shift  =>  input = R^T (output - centre - shift) + centre
        inverse = rotation.T
        offset = centre - inverse @ (centre + np.array([dy, dx]))
        for ch in range(c):
            out[i, ch] = _quantise(
                scipy.ndimage.affine_transform(
                    source[i, ch], inverse, offset=offset, order=1, mode="nearest"
                )
            )
    return out


def constant_images(n: int, shape: tuple[int, int, int], value: int) -> np.ndarray:
    return np.full((n, *shape), value, dtype=np.uint8)


def uniform_noise_images(n: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """i.i.d. uniform pixels: the easiest out-of-distribution case."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def inverted(images: np.ndarray) -> np.ndarray:
    """255 - x: the same shapes with ink and background swapped."""
    return np.subtract(255, _check(images), dtype=np.uint8)
