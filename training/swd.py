"""Sliced Wasserstein distance on Laplacian-pyramid patches (Karras et al. 2018, ProGAN, sec. 5).

A distance between two image sets that needs no pretrained network, so it judges any dataset
and any image shape: each image is split into a Laplacian pyramid, random 7x7 patches of each
level are the descriptors, and the distance between the two sets' descriptor clouds is the
sliced Wasserstein distance (the mean over random unit directions of the 1-D Wasserstein-1
distance between the projections). Fine levels see texture and edges, the coarsest level the
layout and colour.

This follows the reference implementation, NVIDIA's progressive_growing_of_gans,
``metrics/sliced_wasserstein.py`` (github.com/tkarras/progressive_growing_of_gans), step by step:

- pyramid: the 5-tap binomial filter ``[1, 4, 6, 4, 1] / 16`` (its 5x5 outer product), mirror
  borders (``cv2.pyrDown`` / ``pyrUp``), one level per resolution from the image's down to 16 px
  (``while res >= 16``); the last level is the Gaussian residual, so a 28x28 image has a single
  level, the image itself;
- 128 patches of 7x7 per image and level, centres uniform over the positions where the whole
  patch fits;
- each set's descriptors normalised per channel by that set's own mean and standard deviation
  (over patches and patch pixels; ``finalize_descriptors`` is applied to each set separately);
- 4 repeats of 128 random unit directions: project, sort, mean absolute difference of the sorted
  projections, averaged over patches, directions and repeats;
- reported x 1e3 per level (the paper's ``SWDx1e3_<res>``), plus their average.

The only changes: any channel count (the reference asserts 3), sizes that do not halve evenly
(the up-sampled level is cropped to the finer one), a level whose patches are all constant keeps
its centred (zero) values instead of dividing by a zero standard deviation, and every random draw
comes from a seeded ``numpy.random.Generator`` (the reference uses the global ``np.random``),
so a figure is reproducible from its seed. numpy + scipy only: no torch at evaluation time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.ndimage

NHOOD_SIZE = 7
NHOODS_PER_IMAGE = 128
DIR_REPEATS = 4
DIRS_PER_REPEAT = 128
MIN_RESOLUTION = 16
SCALE = 1e3  # the paper reports SWD x 10^3
BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0


def resolutions(size: int) -> list[int]:
    """The pyramid's resolutions for images of ``size`` px: halving down to 16 (none below 16)."""
    out = []
    while size >= MIN_RESOLUTION:
        out.append(size)
        size //= 2
    return out


def _blur(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """The separable 5x5 filter ``outer(taps, taps)`` over the last two axes, mirror borders.

    The same as the reference's 2-D ``scipy.ndimage.convolve``: a mirrored 2-D border is the
    mirror of each axis in turn, so two 1-D passes give the 2-D result.
    """
    x = scipy.ndimage.convolve1d(x, taps, axis=-2, mode="mirror")
    return scipy.ndimage.convolve1d(x, taps, axis=-1, mode="mirror")


def pyr_down(x: np.ndarray) -> np.ndarray:
    """Blur, then keep every second row and column (``cv2.pyrDown``): (N, C, ceil(H/2), ceil(W/2))."""
    return _blur(x, BINOMIAL)[:, :, ::2, ::2]


def pyr_up(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Zeros between the samples, then the filter x 4 (``cv2.pyrUp``), cropped to ``shape`` (H, W).

    The x 4 (x 2 per axis) restores the brightness the inserted zeros took away.
    """
    n, c, h, w = x.shape
    up = np.zeros((n, c, 2 * h, 2 * w), dtype=x.dtype)
    up[:, :, ::2, ::2] = x
    return _blur(up, 2.0 * BINOMIAL)[:, :, : shape[0], : shape[1]]


def laplacian_pyramid(images: np.ndarray, num_levels: int) -> list[np.ndarray]:
    """``num_levels`` float32 levels, finest first: band-pass details, then the Gaussian residual.

    Summing ``pyr_up`` of each coarser level back in reconstructs the image (up to round-off).
    """
    pyramid = [np.asarray(images, dtype=np.float32)]
    for _ in range(1, num_levels):
        pyramid.append(pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - pyr_up(pyramid[-1], pyramid[-2].shape[2:])
    return pyramid


def reconstruct(pyramid: list[np.ndarray]) -> np.ndarray:
    """The image back from :func:`laplacian_pyramid`'s levels (the reference's inverse)."""
    image = pyramid[-1]
    for level in pyramid[-2::-1]:
        image = pyr_up(image, level.shape[2:]) + level
    return image


def patches(
    level: np.ndarray, rng: np.random.Generator, per_image: int = NHOODS_PER_IMAGE
) -> np.ndarray:
    """``per_image`` random 7x7 patches of each image of ``level`` (N, C, H, W), image by image:
    (N * per_image, C, 7, 7). Centres are uniform over the positions where the patch fits."""
    n, _, h, w = level.shape
    half = NHOOD_SIZE // 2
    if h < NHOOD_SIZE or w < NHOOD_SIZE:
        raise ValueError(f"a {h}x{w} level is smaller than a {NHOOD_SIZE}x{NHOOD_SIZE} patch")
    count = n * per_image
    # Drawn in the reference's order: column (x) first, then row (y); as top-left corners.
    x = rng.integers(0, w - 2 * half, size=count)
    y = rng.integers(0, h - 2 * half, size=count)
    windows = np.lib.stride_tricks.sliding_window_view(level, (NHOOD_SIZE, NHOOD_SIZE), (2, 3))
    return windows[np.repeat(np.arange(n), per_image), :, y, x]


def normalise(descriptors: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation per channel (over patches and patch pixels), flattened
    to (patches, C * 7 * 7): the reference's ``finalize_descriptors``, applied to one set."""
    d = np.array(descriptors, dtype=np.float32)  # a copy: normalised in place below
    n, c = d.shape[:2]
    flat = d.reshape(n, c, -1)
    mean = flat.mean(axis=2, dtype=np.float64).mean(axis=0)
    flat -= mean.astype(np.float32)[:, None]
    std = np.sqrt(np.square(flat).mean(axis=2, dtype=np.float64).mean(axis=0))
    flat /= np.where(std > 0, std, 1.0).astype(np.float32)[:, None]  # constant: 0, not NaN
    return flat.reshape(n, -1)


def directions(dim: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random unit vectors in R^dim as the columns of a (dim, count) float32 matrix."""
    dirs = rng.standard_normal((dim, count))
    dirs /= np.sqrt(np.sum(np.square(dirs), axis=0, keepdims=True))
    return dirs.astype(np.float32)


def sliced_wasserstein(
    a: np.ndarray,
    b: np.ndarray,
    rng: np.random.Generator,
    repeats: int = DIR_REPEATS,
    dirs_per_repeat: int = DIRS_PER_REPEAT,
) -> float:
    """The sliced Wasserstein-1 distance of two equal-sized point sets (N, D).

    On each direction the two sets' projections are sorted and paired in order, which is the
    optimal 1-D transport between equal-weight point sets; the mean absolute difference is
    their Wasserstein-1 distance. Averaged over directions and repeats, as in the reference.
    """
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"need two (N, D) sets of one shape, got {a.shape} and {b.shape}")
    results = []
    for _ in range(repeats):
        dirs = directions(a.shape[1], dirs_per_repeat, rng).T
        # (direction, patch): each sort runs along contiguous memory.
        proj_a = np.sort(dirs @ a.T, axis=1)
        proj_b = np.sort(dirs @ b.T, axis=1)
        results.append(float(np.mean(np.abs(proj_a - proj_b), dtype=np.float64)))
    return float(np.mean(results))


@dataclass(frozen=True)
class Descriptors:
    """One image set's normalised patch descriptors, one (N * 128, C * 49) array per level."""

    shape: tuple[int, int, int]
    levels: tuple[np.ndarray, ...]

    @property
    def resolutions(self) -> list[int]:
        return resolutions(min(self.shape[1:]))

    @classmethod
    def of(cls, images_u8: np.ndarray, seed: int = 0) -> Descriptors:
        """Descriptors of uint8 images (N, C, H, W); ``seed`` picks the patches."""
        images = np.asarray(images_u8)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 (N, C, H, W), got {images.dtype} {images.shape}")
        shape = (int(images.shape[1]), int(images.shape[2]), int(images.shape[3]))
        levels = resolutions(min(shape[1:]))
        if not levels:
            raise ValueError(f"SWD needs images of at least {MIN_RESOLUTION} px, got {shape}")
        rng = np.random.default_rng(seed)
        pyramid = laplacian_pyramid(images, len(levels))
        return cls(shape, tuple(normalise(patches(level, rng)) for level in pyramid))


def swd(a: Descriptors, b: Descriptors, seed: int = 0) -> dict[str, Any]:
    """SWD x 1e3 per pyramid level (keyed by resolution, finest first) and their average.

    ``seed`` draws the directions; the same seed gives every candidate set the same directions
    against one reference, so differences between candidates are not direction noise.
    """
    if a.shape != b.shape:
        raise ValueError(f"images of shape {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    per_level = {
        str(res): SCALE * sliced_wasserstein(da, db, rng)
        for res, da, db in zip(a.resolutions, a.levels, b.levels, strict=True)
    }
    return {"per_level": per_level, "average": float(np.mean(list(per_level.values())))}


def swd_of_images(a_u8: np.ndarray, b_u8: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """:func:`swd` of two uint8 image sets of one shape and size (patches and directions from ``seed``)."""
    return swd(Descriptors.of(a_u8, seed), Descriptors.of(b_u8, seed + 1), seed + 2)
