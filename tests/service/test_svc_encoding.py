"""service/encoding.py: every format decodes back to its pixels (or near them), in order,
whatever the number of threads."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image

from service.encoding import (
    INLINE_MAX,
    MIN_PER_THREAD,
    Encoder,
    chunks,
    encode_all,
    encode_image,
    encode_npy,
)
from service.imaging import encode_png


def _decode(data: bytes, channels: int, lossless: bool = True) -> np.ndarray:
    """A file's pixels as ``(H, W, channels)``. WebP has no grey mode: a grey image comes back
    RGB, with three equal channels when lossless (checked), its grey any one of them."""
    image = Image.open(io.BytesIO(data))
    if not lossless and channels == 1:
        image = image.convert("L")
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if channels == 1 and pixels.shape[2] == 3:
        assert (pixels == pixels[:, :, :1]).all()
        pixels = pixels[:, :, :1]
    assert pixels.shape[2] == channels
    return pixels


def _batch(n: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 11, 7, channels), dtype=np.uint8)


@pytest.mark.parametrize("channels", [1, 3])
def test_lossless_formats_give_back_the_pixels(channels: int) -> None:
    pixels = _batch(1, channels)[0]
    assert encode_image(pixels, "png") == encode_png(pixels)  # today's bytes
    for fmt, magic in (("png", b"\x89PNG"), ("webp", b"RIFF")):
        data = encode_image(pixels, fmt)
        assert data.startswith(magic)
        assert (_decode(data, channels) == pixels).all(), fmt


@pytest.mark.parametrize("channels", [1, 3])
def test_lossy_formats_are_close_and_quality_matters(channels: int) -> None:
    # A smooth image: what lossy codecs are for (noise would be far off at any quality).
    ramp = np.add.outer(np.arange(32), np.arange(32)).astype(np.uint8) * 4
    pixels = np.repeat(ramp[:, :, None], channels, axis=2)
    for fmt in ("jpeg", "webp"):
        fine = encode_image(pixels, fmt, 95)
        coarse = encode_image(pixels, fmt, 5)
        assert len(coarse) < len(fine), fmt
        error = np.abs(_decode(fine, channels, False).astype(int) - pixels).mean()
        assert error < 4, (fmt, error)
    assert encode_image(pixels, "jpeg") == encode_image(pixels, "jpeg", 90)  # the default
    assert encode_image(pixels, "jpeg").startswith(b"\xff\xd8")
    with pytest.raises(ValueError, match="no image format 'gif'"):
        encode_image(pixels, "gif")


def test_npy_is_the_batch() -> None:
    pixels = _batch(5, 3)
    # The batcher hands out slices of a transposed array: not contiguous.
    strided = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    assert not strided.flags.c_contiguous
    loaded = np.load(io.BytesIO(encode_npy(strided)), allow_pickle=False)
    assert loaded.dtype == np.uint8 and loaded.shape == (5, 11, 7, 3)
    assert (loaded == pixels).all()


def test_chunks_cover_the_batch_in_order() -> None:
    for n in range(1, 70):
        for threads in (1, 2, 3, 8):
            parts = chunks(n, threads)
            assert [i for p in parts for i in range(n)[p]] == list(range(n))
            assert len(parts) <= threads
            assert len(parts) == 1 or all(p.stop - p.start >= MIN_PER_THREAD for p in parts)
    assert len(chunks(64, 2)) == 2 and len(chunks(64, 1)) == 1


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("fmt", ["png", "webp", "jpeg"])
def test_the_pool_gives_the_same_files_in_order(threads: int, fmt: str) -> None:
    encoder = Encoder(threads)
    try:
        for n in (1, INLINE_MAX, INLINE_MAX + 1, 64):
            pixels = _batch(n, 1, seed=n)
            files = asyncio.run(encoder.encode(pixels, fmt))
            assert files == encode_all(pixels, fmt), (n, fmt)
    finally:
        encoder.close()


def test_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threads must be >= 1"):
        Encoder(0)
