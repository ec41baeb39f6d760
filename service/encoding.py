"""A batch of generated images -> the bytes a client asked for, over a pool of threads.

Formats of ``/generate`` (``api.GENERATE_FORMATS``):

- ``png`` (the default): ``imaging.encode_png``, lossless, the bytes every earlier version sent;
- ``webp``: lossless when no ``quality`` is given (the same pixels as the PNG, usually a smaller
  file), lossy at ``quality`` 1..100 otherwise;
- ``jpeg``: lossy, ``quality`` default ``JPEG_QUALITY`` (grey models give grey JPEGs);
- ``npy``: not an image format but the batch itself, one ``.npy`` file of the ``(n, H, W, C)``
  uint8 pixels: a machine client pays for neither encoding nor base64 (``encode_npy``).

Why a pool: zlib's ``compress`` and Pillow's encoders release the GIL while they work, so the
images of one batch encode on several cores at once, and the PNG path of a busy server is
bounded by the machine's cores rather than by one thread. ``GAN_ENCODE_THREADS`` sizes it; 1 is
the behaviour before the pool existed (a small batch inline, a larger one in one thread).
"""

from __future__ import annotations

import asyncio
import io
import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from service.api import JPEG_QUALITY_DEFAULT
from service.imaging import encode_png

PNG = "png"
WEBP = "webp"
JPEG = "jpeg"
NPY = "npy"
MEDIA_TYPES = {
    PNG: "image/png",
    WEBP: "image/webp",
    JPEG: "image/jpeg",
    NPY: "application/x-npy",
}
IMAGE_FORMATS = (PNG, WEBP, JPEG)
JPEG_QUALITY = JPEG_QUALITY_DEFAULT
# WebP's encoder effort, 0 (fastest) .. 6: lossless at 1 is several times faster than the
# default 4 for images this small, for files within a few percent of its size
# (service/interpolate.py measured the same for its animations).
WEBP_METHOD = 1

T = TypeVar("T")

# Below this many images encoding (~40 us each at 28x28 for PNG) costs less than a thread hop.
INLINE_MAX = 8
# Fewer images than this per thread, and the hop costs more than the thread saves.
MIN_PER_THREAD = 4


def _pil(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


def encode_image(pixels: np.ndarray, fmt: str = PNG, quality: int | None = None) -> bytes:
    """``(H, W, C)`` uint8, C in {1, 3} -> one file of ``fmt`` (png, webp or jpeg).

    ``quality`` (1..100): JPEG's (default ``JPEG_QUALITY``), or lossy WebP at that quality
    (None: lossless WebP). PNG has none: ignored."""
    if fmt == PNG:
        return encode_png(pixels)
    buffer = io.BytesIO()
    if fmt == WEBP:
        if quality is None:
            _pil(pixels).save(buffer, format="WEBP", lossless=True, method=WEBP_METHOD)
        else:
            _pil(pixels).save(buffer, format="WEBP", quality=quality, method=WEBP_METHOD)
    elif fmt == JPEG:
        _pil(pixels).save(buffer, format="JPEG", quality=quality or JPEG_QUALITY)
    else:
        raise ValueError(f"no image format {fmt!r}; formats: {', '.join(IMAGE_FORMATS)}")
    return buffer.getvalue()


def encode_all(pixels: np.ndarray, fmt: str = PNG, quality: int | None = None) -> list[bytes]:
    """``(n, H, W, C)`` uint8 -> n files, in order."""
    return [encode_image(p, fmt, quality) for p in pixels]


def encode_npy(pixels: np.ndarray) -> bytes:
    """``(n, H, W, C)`` uint8 -> one ``.npy`` file (``numpy.load`` reads it back)."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(pixels), allow_pickle=False)
    return buffer.getvalue()


def chunks(n: int, threads: int) -> list[slice]:
    """How ``n`` images are shared out: at most ``threads`` contiguous slices of at least
    ``MIN_PER_THREAD`` images (one slice when that leaves a single one)."""
    parts = max(1, min(threads, n // MIN_PER_THREAD))
    bounds = [n * k // parts for k in range(parts + 1)]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


class Encoder:
    """Encodes batches on ``threads`` threads; one per worker (the engine owns it)."""

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="encode")

    async def encode(
        self, pixels: np.ndarray, fmt: str = PNG, quality: int | None = None
    ) -> list[bytes]:
        """The files of a batch, in order: a small batch inline on the event loop, a larger
        one in the pool, shared out between its threads."""
        n = len(pixels)
        if n <= INLINE_MAX:
            return encode_all(pixels, fmt, quality)
        loop = asyncio.get_running_loop()
        parts: Sequence[list[bytes]] = await asyncio.gather(
            *(
                loop.run_in_executor(self._pool, encode_all, pixels[part], fmt, quality)
                for part in chunks(n, self.threads)
            )
        )
        return [data for part in parts for data in part]

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Any other encoding work (a grid, an npy file) in the pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
