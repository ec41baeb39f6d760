"""What the v2 client tests share: /generate's pixels, decoded from its PNGs."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import numpy as np
from PIL import Image


def generated(client: httpx.Client, **fields: Any) -> np.ndarray:
    """``POST /generate``'s images as ``(n, H, W, C)`` uint8."""
    r = client.post("/generate", json=fields)
    assert r.status_code == 200, r.text
    images = []
    for item in r.json()["images"]:
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(item["png"]))))
        images.append(pixels[:, :, None] if pixels.ndim == 2 else pixels)
    return np.stack(images)
