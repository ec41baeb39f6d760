"""Image files on disk as uint8 arrays, the way training reads a ``folder:`` dataset.

numpy + Pillow only, so training.metrics reads a folder's real images exactly as the model saw
them without importing torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})


def list_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def load_image(path: Path, size: int) -> np.ndarray:
    """RGB, centre-cropped to a square, resized to ``size`` (LANCZOS): uint8 ``(3, size, size)``."""
    from PIL import Image

    with Image.open(path) as opened:
        rgb = opened.convert("RGB")
    w, h = rgb.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = rgb.crop((left, top, left + side, top + side)).resize(
        (size, size), Image.Resampling.LANCZOS
    )
    return np.asarray(square, dtype=np.uint8).transpose(2, 0, 1).copy()
