from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.imaging import (
    ImageRejected,
    decode_upload,
    encode_png,
    make_grid,
    to_model_pixels,
    uploads_to_pixels,
)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("channels", [1, 3])
def test_png_round_trip(channels: int) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (9, 13, channels), dtype=np.uint8)
    image = Image.open(io.BytesIO(encode_png(pixels)))
    assert image.mode == ("L" if channels == 1 else "RGB")
    assert image.size == (13, 9)
    assert (np.asarray(image).reshape(9, 13, channels) == pixels).all()


def test_grid_layout() -> None:
    images = np.stack([np.full((4, 5, 1), i * 10 + 1, np.uint8) for i in range(5)])
    grid = make_grid(images, columns=2, padding=1)
    assert grid.shape == (3 * 5 + 1, 2 * 6 + 1, 1)
    assert grid[1, 1, 0] == 1 and grid[1, 7, 0] == 11 and grid[11, 1, 0] == 41
    assert grid[0, 0, 0] == 0  # padding
    assert make_grid(images).shape[1] == 3 * (5 + 2) + 2  # ceil(sqrt(5)) columns by default
    assert make_grid(images, columns=99).shape[1] == 5 * (5 + 2) + 2  # capped at n


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"])
def test_decodes_common_formats(fmt: str) -> None:
    image = Image.new("RGB", (40, 30), (200, 100, 50))
    decoded = decode_upload(_encode(image, fmt), max_pixels=10_000)
    assert decoded.size == (40, 30)


def test_rejects_non_images_and_empty_files() -> None:
    for data in (b"", b"hello, I am text", b"%PDF-1.4 not really"):
        with pytest.raises(ImageRejected) as info:
            decode_upload(data, max_pixels=10_000)
        assert info.value.reason == "not_an_image"


def test_rejects_truncated_image() -> None:
    data = _encode(Image.effect_noise((64, 64), 50).convert("L"), "PNG")
    with pytest.raises(ImageRejected) as info:
        decode_upload(data[: len(data) // 2], max_pixels=10_000)
    assert info.value.reason == "corrupt_image"


def test_rejects_too_many_pixels_before_decoding() -> None:
    """A 1-bit 20000x20000 PNG is ~50 kB on the wire and 400 MB once decoded."""
    bomb = _encode(Image.new("1", (20_000, 20_000)), "PNG")
    assert len(bomb) < 100_000
    with pytest.raises(ImageRejected) as info:
        decode_upload(bomb, max_pixels=4096 * 4096)
    assert info.value.reason == "image_too_large"


def test_conversion_to_grey_and_resize() -> None:
    image = Image.new("RGB", (56, 40), (255, 0, 0))
    pixels = to_model_pixels(image, channels=1, height=28, width=28)
    assert pixels.shape == (28, 28, 1) and pixels.dtype == np.uint8
    assert int(pixels[14, 14, 0]) == 76  # ITU-R 601-2 luma of pure red


def test_conversion_grey_to_rgb_palette_and_alpha() -> None:
    grey = Image.new("L", (32, 32), 100)
    assert (to_model_pixels(grey, 3, 32, 32) == 100).all()
    rgba = Image.new("RGBA", (32, 32), (10, 20, 30, 0))
    assert to_model_pixels(rgba, 3, 32, 32)[0, 0].tolist() == [10, 20, 30]  # alpha dropped
    palette = Image.new("P", (8, 8), 3)
    assert to_model_pixels(palette, 1, 8, 8).shape == (8, 8, 1)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    image = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert (to_model_pixels(image, 1, 4, 4) == 255).all()
    half = Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16))
    assert (to_model_pixels(half, 1, 4, 4) == 128).all()


def test_batch_conversion_reports_failures_in_place() -> None:
    good = _encode(Image.new("L", (28, 28), 7), "PNG")
    out = uploads_to_pixels([good, b"junk"], 1, 28, 28, 10_000)
    assert isinstance(out[0], np.ndarray) and isinstance(out[1], ImageRejected)
