"""training.reference_images: the degradations and trivial images the references are built from."""

from __future__ import annotations

import numpy as np
import pytest

from training import reference_images as R


def _blob(h: int = 28, w: int = 28, centre: tuple[float, float] | None = None) -> np.ndarray:
    cy, cx = centre or ((h - 1) / 2, (w - 1) / 2)
    y, x = np.mgrid[:h, :w]
    return np.round(255 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 2.5**2))).astype(np.uint8)


def _centre_of_mass(image: np.ndarray) -> np.ndarray:
    y, x = np.mgrid[: image.shape[0], : image.shape[1]]
    m = image.astype(np.float64)
    return np.array([(m * y).sum(), (m * x).sum()]) / m.sum()


def test_blur_of_a_point_is_the_sampled_gaussian() -> None:
    """A single 255 pixel under sigma = 1: the centre keeps 255 * g(0)^2 with the normalised
    9-tap kernel g(0) = 1 / sum_{|x|<=4} exp(-x^2/2) = 0.39894 -> 40.6 -> 41; symmetric."""
    image = np.zeros((1, 1, 15, 15), dtype=np.uint8)
    image[0, 0, 7, 7] = 255
    out = R.gaussian_blur(image, 1.0)[0, 0]
    assert out.dtype == np.uint8 and out[7, 7] == 41
    np.testing.assert_array_equal(out, out.T)
    np.testing.assert_array_equal(out, out[::-1, ::-1])
    assert out[7, 8] == round(255 * 0.39894 * 0.24197)  # g(0) g(1)


def test_blur_keeps_constant_images_and_works_per_channel() -> None:
    flat = np.full((2, 3, 8, 8), 77, dtype=np.uint8)
    np.testing.assert_array_equal(R.gaussian_blur(flat, 2.0), flat)
    rgb = np.zeros((1, 3, 9, 9), dtype=np.uint8)
    rgb[0, 1, 4, 4] = 255  # only green: the blur must not leak across channels
    out = R.gaussian_blur(rgb, 1.0)
    assert out[0, 0].max() == 0 and out[0, 2].max() == 0 and out[0, 1, 4, 4] > 0


def test_affine_with_zero_ranges_is_the_identity() -> None:
    images = np.stack([_blob(), _blob(centre=(5, 20))])[:, None]
    np.testing.assert_array_equal(R.random_affine(images, max_shift=0, max_degrees=0), images)


def test_affine_moves_each_image_by_its_own_sampled_shift() -> None:
    """A centred blob: rotation leaves its centre of mass in place, the shift moves it by
    (dy, dx) of :func:`affine_parameters` (same seed), to within interpolation error."""
    images = np.repeat(_blob()[None, None], 6, axis=0)
    out = R.random_affine(images, seed=3)
    params = R.affine_parameters(6, seed=3)
    assert np.all(np.abs(params[:, 0]) <= R.AFFINE_MAX_DEGREES)
    assert np.all(np.abs(params[:, 1:]) <= R.AFFINE_MAX_SHIFT)
    for i in range(6):
        moved = _centre_of_mass(out[i, 0]) - _centre_of_mass(images[i, 0])
        np.testing.assert_allclose(moved, params[i, 1:], atol=0.1)


def test_affine_rotates_and_is_reproducible() -> None:
    """An off-centre blob with no shift moves on a circle by the sampled angle."""
    images = np.repeat(_blob(centre=(13.5, 21.5))[None, None], 4, axis=0)
    out = R.random_affine(images, max_shift=0, seed=1)
    np.testing.assert_array_equal(out, R.random_affine(images, max_shift=0, seed=1))
    assert not np.array_equal(out, R.random_affine(images, max_shift=0, seed=2))
    centre = np.array([13.5, 13.5])
    for i, degrees in enumerate(R.affine_parameters(4, max_shift=0, seed=1)[:, 0]):
        before = _centre_of_mass(images[i, 0]) - centre
        after = _centre_of_mass(out[i, 0]) - centre
        angle = np.degrees(np.arctan2(after[0], after[1]) - np.arctan2(before[0], before[1]))
        assert np.linalg.norm(after) == pytest.approx(np.linalg.norm(before), abs=0.15)
        assert abs(angle) == pytest.approx(abs(degrees), abs=1.0)


def test_trivial_images() -> None:
    assert R.constant_images(2, (3, 4, 5), 128).shape == (2, 3, 4, 5)
    assert np.all(R.constant_images(1, (1, 2, 2), 255) == 255)
    noise = R.uniform_noise_images(50, (1, 28, 28), seed=0)
    assert noise.dtype == np.uint8 and 120 < noise.mean() < 135
    np.testing.assert_array_equal(noise, R.uniform_noise_images(50, (1, 28, 28), seed=0))
    x = np.array([[[[0, 10, 255]]]], dtype=np.uint8)
    np.testing.assert_array_equal(R.inverted(x), [[[[255, 245, 0]]]])


def test_degradations_refuse_anything_but_uint8_nchw() -> None:
    with pytest.raises(ValueError, match="uint8"):
        R.gaussian_blur(np.zeros((2, 28, 28), dtype=np.uint8), 1.0)
    with pytest.raises(ValueError, match="uint8"):
        R.random_affine(np.zeros((2, 1, 28, 28), dtype=np.float32))
