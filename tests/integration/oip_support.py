"""What the v2 client tests share: /generate's pixels, decoded from its PNGs."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
from fixtures.generated_images import generate_pixels


def generated(client: httpx.Client, **fields: Any) -> np.ndarray:
    """``POST /generate``'s images as ``(n, H, W, C)`` uint8."""
    r = client.post("/generate", json=fields)
    assert r.status_code == 200, r.text
    return generate_pixels(r.json())
