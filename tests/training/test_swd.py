"""training.swd: the ProGAN sliced Wasserstein distance on Laplacian-pyramid patches."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage

from training import swd
from training.reference_images import gaussian_blur


def _images(n: int, shape: tuple[int, int, int] = (3, 32, 32), seed: int = 0) -> np.ndarray:
    """Smooth random blobs with sharp edges: structure at every pyramid level, like photos."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    noise = rng.standard_normal((n, c, h, w)).astype(np.float32)
    smooth = scipy.ndimage.gaussian_filter(noise, sigma=(0, 0, 2, 2))
    x = np.where(smooth > 0, 200.0, 40.0) + 20.0 * rng.standard_normal((n, c, h, w))
    return np.clip(x, 0, 255).astype(np.uint8)


def test_resolutions_halve_down_to_16() -> None:
    assert swd.resolutions(64) == [64, 32, 16]
    assert swd.resolutions(32) == [32, 16]
    assert swd.resolutions(28) == [28]  # 14 < 16: MNIST gets the image itself
    assert swd.resolutions(15) == []


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 1, 33, 40), (2, 4, 64, 64)])
def test_pyramid_shapes_and_reconstruction(shape: tuple[int, int, int, int]) -> None:
    x = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    levels = swd.laplacian_pyramid(x, 3)
    h, w = shape[2:]
    expected = [(h, w), ((h + 1) // 2, (w + 1) // 2), ((h + 3) // 4, (w + 3) // 4)]
    assert [lv.shape[2:] for lv in levels] == expected
    assert all(lv.shape[:2] == shape[:2] and lv.dtype == np.float32 for lv in levels)
    np.testing.assert_allclose(swd.reconstruct(levels), x.astype(np.float32), atol=1e-3)


def test_pyr_down_matches_the_reference_2d_convolution() -> None:
    """The reference filters with scipy's 2-D convolve and the 5x5 binomial, mirror borders."""
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    kernel = np.outer(swd.BINOMIAL, swd.BINOMIAL)[None, None]
    reference = scipy.ndimage.convolve(x, kernel, mode="mirror")[:, :, ::2, ::2]
    np.testing.assert_allclose(swd.pyr_down(x), reference, atol=1e-5)
    up = np.zeros((2, 3, 16, 16), np.float32)
    up[:, :, ::2, ::2] = x[:, :, :8, :8]
    np.testing.assert_allclose(
        swd.pyr_up(x[:, :, :8, :8], (16, 16)),
        scipy.ndimage.convolve(up, kernel * 4.0, mode="mirror"),
        atol=1e-5,
    )


def test_patches_are_7x7_crops_of_their_own_image() -> None:
    level = np.random.default_rng(2).standard_normal((3, 2, 16, 20)).astype(np.float32)
    got = swd.patches(level, np.random.default_rng(0), per_image=5)
    assert got.shape == (15, 2, 7, 7)
    for i, patch in enumerate(got):
        image = level[i // 5]
        hits = [
            (y, x)
            for y in range(16 - 6)
            for x in range(20 - 6)
            if np.array_equal(image[:, y : y + 7, x : x + 7], patch)
        ]
        assert hits, f"patch {i} is not a crop of image {i // 5}"


def test_normalise_gives_zero_mean_unit_std_per_channel() -> None:
    d = np.random.default_rng(3).normal(5.0, 3.0, (100, 2, 7, 7)).astype(np.float32)
    d[:, 1] = 7.0  # a constant channel: zeros, not NaN
    out = swd.normalise(d).reshape(100, 2, 49)
    assert abs(out[:, 0].mean()) < 1e-5 and out[:, 0].std() == pytest.approx(1.0, abs=1e-4)
    assert np.all(out[:, 1] == 0)


def test_sliced_distance_in_one_dimension_is_the_sorted_mean_absolute_difference() -> None:
    """In 1-D every unit direction is +-1, so the sliced distance is W1 of the two samples."""
    a = np.array([[0.0], [3.0], [1.0], [10.0]])
    b = np.array([[2.0], [2.0], [5.0], [-1.0]])
    expected = np.mean(np.abs(np.sort(a[:, 0]) - np.sort(b[:, 0])))  # |0+1|+|1-2|+|3-2|+|10-5| / 4
    assert expected == 2.0
    assert swd.sliced_wasserstein(a, b, np.random.default_rng(0)) == pytest.approx(2.0)


def test_sliced_distance_of_a_shift_along_one_axis() -> None:
    """A shift by t along e1 projects to t |u1| per direction: E|u1| for unit u in R^2 is 2/pi."""
    a = np.random.default_rng(4).standard_normal((2000, 2))
    value = swd.sliced_wasserstein(a, a + np.array([1.0, 0.0]), np.random.default_rng(0), 16, 512)
    assert value == pytest.approx(2 / np.pi, rel=0.03)


def test_swd_of_a_set_with_itself_is_near_zero_and_below_a_blurred_copy() -> None:
    x = _images(64)
    a = swd.Descriptors.of(x, seed=0)
    assert swd.swd(a, a)["average"] == 0.0
    # Other patches of the same images: only the sampling noise of 64 x 128 patches is left.
    other_patches = swd.swd(a, swd.Descriptors.of(x, seed=1))
    blurred = swd.swd(a, swd.Descriptors.of(gaussian_blur(x, 1.0), seed=1))
    assert other_patches["per_level"]["32"] < 0.4 * blurred["per_level"]["32"]
    assert other_patches["average"] < 0.5 * blurred["average"]


def test_swd_grows_with_blur_sigma_at_the_finest_level() -> None:
    x = _images(64, seed=5)
    ref = swd.Descriptors.of(_images(64, seed=6), seed=0)
    values = [
        swd.swd(ref, swd.Descriptors.of(gaussian_blur(x, s) if s else x, seed=1))
        for s in (0.0, 0.5, 1.0, 2.0)
    ]
    finest = [v["per_level"]["32"] for v in values]
    averages = [v["average"] for v in values]
    assert finest == sorted(finest) and averages == sorted(averages), (finest, averages)


def test_swd_is_deterministic_under_a_seed_and_reports_each_level() -> None:
    x, y = _images(16, (3, 64, 64), 7), _images(16, (3, 64, 64), 8)
    first = swd.swd_of_images(x, y, seed=3)
    assert first == swd.swd_of_images(x, y, seed=3)
    assert first != swd.swd_of_images(x, y, seed=4)
    assert list(first["per_level"]) == ["64", "32", "16"]
    assert first["average"] == pytest.approx(np.mean(list(first["per_level"].values())))


def test_any_channel_count_and_the_size_limits() -> None:
    grey = _images(8, (1, 28, 28))
    assert list(swd.swd_of_images(grey, grey[::-1])["per_level"]) == ["28"]
    with pytest.raises(ValueError, match="at least 16"):
        swd.Descriptors.of(np.zeros((2, 3, 15, 15), np.uint8))
    with pytest.raises(ValueError, match="one shape"):
        swd.sliced_wasserstein(np.zeros((3, 2)), np.zeros((4, 2)), np.random.default_rng(0))
