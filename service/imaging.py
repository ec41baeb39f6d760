"""Pixels in and out: PNG encoding, grids, and turning untrusted uploads into model input.

Upload conversion (the reverse of the manifest's ``to_uint8``, docs/model-format.md):

1. decode with Pillow, formats limited to ``ALLOWED_FORMATS``; animated files give frame 0;
2. refuse more than ``max_pixels`` (width x height, read from the header before any decoding),
   so a small file cannot expand into gigabytes (decompression bomb);
3. convert to the model's channels with Pillow: ``L`` for 1 channel (ITU-R 601-2 luma,
   L = 0.299 R + 0.587 G + 0.114 B), ``RGB`` for 3 (grey is replicated); alpha is dropped, not
   composited; palette images are expanded first;
4. resize to the model's height x width with ``LANCZOS`` when the size differs: no crop, so the
   aspect ratio is not kept;
5. ``x = lo + u8 * (hi - lo) / 255`` in the manifest's value range.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

# zlib's default, the same level Pillow uses for PNG by default.
PNG_ZLIB_LEVEL = 6
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "PPM", "ICO")


class ImageRejected(ValueError):
    """An upload cannot be used; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def encode_png(pixels: np.ndarray, level: int = PNG_ZLIB_LEVEL) -> bytes:
    """``(H, W, C)`` uint8, C in {1, 3} -> PNG bytes (8-bit grey or RGB, no filter, zlib).

    Written out by hand instead of ``Image.save(format="PNG")``: for a 28x28 image Pillow spent
    ~370 us (most of it choosing row filters) against ~60 us here, and PNG encoding is on the
    hot path of every generate request. Any PNG decoder reads the result (tests check Pillow).
    """
    height, width, channels = pixels.shape
    rows = np.empty((height, 1 + width * channels), dtype=np.uint8)
    rows[:, 0] = 0  # filter type None on every row
    rows[:, 1:] = pixels.reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, 0 if channels == 1 else 2, 0, 0, 0)
    return b"".join(
        (
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), level)),
            _PNG_IEND,
        )
    )


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = _png_chunk(b"IEND", b"")


def make_grid(images: np.ndarray, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """``(N, H, W, C)`` uint8 -> one ``(rows*(H+p)+p, cols*(W+p)+p, C)`` image, row-major,
    black ``padding`` between tiles; ``columns`` defaults to ceil(sqrt(N)), capped at N."""
    n, h, w, c = images.shape
    cols = max(1, min(columns or math.ceil(math.sqrt(n)), n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, c), np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        top = padding + r * (h + padding)
        left = padding + k * (w + padding)
        grid[top : top + h, left : left + w] = images[i]
    return grid


def declared_pixels(data: bytes) -> int:
    """Width x height from an upload's header, nothing decoded (0 when unreadable: decoding
    refuses it later with its reason)."""
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
            width, height = image.size
    except Exception:  # Pillow plug-ins raise assorted types on hostile input
        return 0
    return max(0, width) * max(0, height)


def decode_upload(data: bytes, max_pixels: int) -> Image.Image:
    """Open and fully decode an untrusted upload, or raise ``ImageRejected``."""
    if not data:
        raise ImageRejected("not_an_image", "empty file")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageRejected("image_too_large", str(exc)) from None
    except UnidentifiedImageError:
        raise ImageRejected(
            "not_an_image",
            f"not a readable image (accepted formats: {', '.join(ALLOWED_FORMATS)})",
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected("corrupt_image", f"corrupt image header ({exc})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(
            "image_too_large",
            f"{width}x{height} = {width * height} pixels is over the limit of {max_pixels}",
        )
    if width < 1 or height < 1:
        raise ImageRejected("corrupt_image", f"image has no pixels ({width}x{height})")
    try:
        image.seek(0)
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageRejected("image_too_large", str(exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected("corrupt_image", f"corrupt or truncated image ({exc})") from None
    return image


def to_model_pixels(image: Image.Image, channels: int, height: int, width: int) -> np.ndarray:
    """A decoded image -> ``(height, width, channels)`` uint8, per the module docstring."""
    if image.mode == "P":
        image = image.convert("RGBA")
    elif image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Pillow's direct I/F -> L conversion clips at 255; scale 16-bit ranges down instead.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(np.rint(array * (255.0 / peak)), 0, 255).astype(np.uint8))
    target = "L" if channels == 1 else "RGB"
    if image.mode != target:
        image = image.convert(target)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def uploads_to_pixels(
    files: Sequence[bytes], channels: int, height: int, width: int, max_pixels: int
) -> list[np.ndarray | ImageRejected]:
    """Decode and convert a batch of uploads; failures are returned in place, not raised, so the
    caller can name the offending file."""
    out: list[np.ndarray | ImageRejected] = []
    for data in files:
        try:
            out.append(to_model_pixels(decode_upload(data, max_pixels), channels, height, width))
        except ImageRejected as exc:
            out.append(exc)
        except Exception as exc:  # Pillow plug-ins raise assorted types on hostile input
            out.append(ImageRejected("corrupt_image", f"cannot decode image ({exc})"))
    return out
