"""Output formats against a real ``bentoml serve``: npy and webp give /generate's PNG pixels,
and the v2 endpoint's ``parameters.format`` gives files."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from service.oip_tensors import decode_response

pytestmark = pytest.mark.integration


def _decoded(data: bytes, channels: int) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    pixels = np.asarray(image.convert("L") if channels == 1 else image.convert("RGB"))
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


@pytest.mark.parametrize(("model", "channels"), [("tiny-a", 1), ("tiny-b", 3), ("tiny-c", 1)])
def test_npy_and_webp_are_the_png_pixels(client: httpx.Client, model: str, channels: int) -> None:
    base = {"seed": 90, "n": 12, "model": model}
    png = client.post("/generate", json=base)
    assert png.status_code == 200
    expected = np.stack(
        [_decoded(base64.b64decode(i["png"]), channels) for i in png.json()["images"]]
    )

    npy = client.post("/generate", json={**base, "format": "npy"})
    assert npy.status_code == 200
    assert npy.headers["content-type"] == "application/x-npy"
    assert (npy.headers["x-seed"], npy.headers["x-count"]) == ("90", "12")
    batch = np.load(io.BytesIO(npy.content), allow_pickle=False)
    assert batch.dtype == np.uint8 and batch.shape == expected.shape
    assert (batch == expected).all()

    webp = client.post("/generate", json={**base, "format": "webp"})
    assert webp.status_code == 200
    images = webp.json()["images"]
    assert [i["seed"] for i in images] == list(range(90, 102))
    decoded = np.stack([_decoded(base64.b64decode(i["webp"]), channels) for i in images])
    assert (decoded == expected).all()


def test_bad_format_is_a_json_400(client: httpx.Client) -> None:
    r = client.post("/generate", json={"seed": 1, "format": "bmp"})
    assert r.status_code == 400
    assert r.json()["field"] == "format"
    assert "png, webp, jpeg, npy" in r.json()["error"]


def test_v2_png_files(client: httpx.Client) -> None:
    body = {
        "inputs": [{"name": "seed", "datatype": "UINT64", "shape": [2], "data": [90, 91]}],
        "parameters": {"format": "png", "binary_data_output": True},
    }
    r = client.post("/v2/models/tiny-a/infer", json=body)
    assert r.status_code == 200
    files = decode_response(r.content, int(r.headers["inference-header-content-length"]))
    npy = client.post("/generate", json={"seed": 90, "n": 2, "format": "npy"})
    expected = np.load(io.BytesIO(npy.content))
    assert (np.stack([_decoded(f, 1) for f in files["images"]]) == expected).all()
