"""The v2 generator's ``parameters.format``: BYTES outputs of encoded files instead of UINT8."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fixtures.generated_images import generate_pixels
from fixtures.in_process import serve
from PIL import Image
from prometheus_client import CollectorRegistry

from service.oip_tensors import decode_response

INFER = "/v2/models/{}/infer"
SEEDS = [5, 6, 7]


def _seeds(**parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [{"name": "seed", "datatype": "UINT64", "shape": [3], "data": SEEDS}]
    }
    if parameters:
        body["parameters"] = parameters
    return body


def _pixels(data: bytes, channels: int) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    pixels = np.asarray(image.convert("L") if channels == 1 else image.convert("RGB"))
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


@pytest.mark.parametrize("model", ["tiny-a", "tiny-b"])
def test_png_and_webp_files_are_generates_pixels(tiny_models_dir: Path, model: str) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        r = await client.post("/generate", json={"seed": 5, "n": 3, "model": model})
        expected = generate_pixels(r.json())
        channels = expected.shape[3]
        r = await client.post(INFER.format(model), json=_seeds())
        assert json.loads(r.content)["outputs"][0]["datatype"] == "UINT8"  # the default
        for fmt in ("png", "webp"):
            # JSON: base64 strings
            r = await client.post(INFER.format(model), json=_seeds(format=fmt))
            assert r.status_code == 200, r.text
            out = json.loads(r.content)["outputs"][0]
            assert out["datatype"] == "BYTES" and out["shape"] == [3]
            files = decode_response(r.content)["images"]
            decoded = np.stack([_pixels(f, channels) for f in files])
            assert (decoded == expected).all(), fmt
            # binary: Triton's length-prefixed elements
            body = _seeds(format=fmt, binary_data_output=True)
            r = await client.post(INFER.format(model), json=body)
            length = int(r.headers["inference-header-content-length"])
            binary = decode_response(r.content, length)["images"]
            assert list(binary) == list(files)
            blob = r.content[length:]
            assert int.from_bytes(blob[:4], "little") == len(files[0])
        r = await client.post(INFER.format(model), json=_seeds(format="jpeg", quality=80))
        jpeg = decode_response(r.content)["images"]
        assert all(f.startswith(b"\xff\xd8") for f in jpeg)

    serve(tiny_models_dir, scenario)


@pytest.mark.parametrize(
    ("model", "parameters", "message"),
    [
        ("tiny-a", {"format": "gif"}, "parameters.format must be one of png, webp, jpeg"),
        ("tiny-a", {"format": 3}, "parameters.format must be one of"),
        ("tiny-a", {"format": "jpeg", "quality": 0}, "quality must be an integer in [1, 100]"),
        ("tiny-a", {"quality": 50}, "goes with parameters.format"),
        ("tiny-a-discriminator", {"format": "png"}, "gives no images"),
    ],
)
def test_bad_format_parameters_are_400s(
    tiny_models_dir: Path, model: str, parameters: dict[str, Any], message: str
) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        body: dict[str, Any] = {
            "inputs": [
                {"name": "images", "datatype": "UINT8", "shape": [1, 28, 28, 1], "data": [0] * 784}
            ]
            if model.endswith("discriminator")
            else _seeds()["inputs"],
            "parameters": parameters,
        }
        r = await client.post(INFER.format(model), json=body)
        assert r.status_code == 400
        assert message in r.json()["error"]

    serve(tiny_models_dir, scenario)
