"""``/generate``'s and ``/generate_grid``'s ``format`` and ``quality`` fields, in process."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fixtures.generated_images import generate_pixels
from fixtures.in_process import serve
from PIL import Image
from prometheus_client import CollectorRegistry

from contract.latents import latents_for_seeds
from service.model_store import ModelStore
from service.settings import Settings


def _grey(data: bytes) -> np.ndarray:
    """A lossless file of a grey model as (H, W, 1) (WebP comes back RGB, equal channels)."""
    pixels = np.asarray(Image.open(io.BytesIO(data)))
    if pixels.ndim == 3:
        assert (pixels == pixels[:, :, :1]).all()
        pixels = pixels[:, :, 0]
    return pixels[:, :, None]


def _expected(models: Path, seed: int, n: int, name: str = "tiny-a") -> np.ndarray:
    model = ModelStore.load(Settings(models_dir=models)).get(name)
    z = latents_for_seeds(np.arange(seed, seed + n, dtype=np.uint64), model.manifest.z_dim)
    return model.manifest.image.to_uint8(model.generate(z))


@pytest.mark.parametrize("n", [3, 20])  # inline, and over the encoder's threads
def test_every_lossless_format_gives_the_same_pixels(tiny_models_dir: Path, n: int) -> None:
    expected = _expected(tiny_models_dir, 40, n)

    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        default = await client.post("/generate", json={"seed": 40, "n": n})
        png = await client.post("/generate", json={"seed": 40, "n": n, "format": "png"})
        assert default.content == png.content  # png is the default, same bytes
        assert list(default.json()["images"][0]) == ["seed", "png"]
        assert (generate_pixels(png.json()) == expected).all()

        npy = await client.post("/generate", json={"seed": 40, "n": n, "format": "npy"})
        assert npy.status_code == 200
        assert npy.headers["content-type"] == "application/x-npy"
        assert npy.headers["x-seed"] == "40" and npy.headers["x-count"] == str(n)
        assert npy.headers["x-model"] == "tiny-a"
        batch = np.load(io.BytesIO(npy.content), allow_pickle=False)
        assert batch.dtype == np.uint8 and batch.shape == (n, 28, 28, 1)
        assert (batch == expected).all()

        webp = await client.post("/generate", json={"seed": 40, "n": n, "format": "webp"})
        body = webp.json()
        assert [i["seed"] for i in body["images"]] == list(range(40, 40 + n))
        assert all(set(i) == {"seed", "webp"} for i in body["images"])
        decoded = np.stack([_grey(base64.b64decode(i["webp"])) for i in body["images"]])
        assert (decoded == expected).all()

    serve(tiny_models_dir, scenario)


def test_rgb_model_and_lossy_formats(tiny_models_dir: Path) -> None:
    expected = _expected(tiny_models_dir, 7, 2, "tiny-b")

    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        base = {"seed": 7, "n": 2, "model": "tiny-b"}
        webp = (await client.post("/generate", json={**base, "format": "webp"})).json()
        assert (generate_pixels(webp, "webp") == expected).all()
        npy = await client.post("/generate", json={**base, "format": "npy"})
        assert (np.load(io.BytesIO(npy.content)) == expected).all()
        sizes, errors = {}, {}
        for fmt, quality in (("jpeg", None), ("jpeg", 20), ("webp", 90), ("webp", 20)):
            body: dict[str, Any] = {**base, "format": fmt}
            if quality is not None:
                body["quality"] = quality
            r = await client.post("/generate", json=body)
            assert r.status_code == 200, r.text
            files = [base64.b64decode(i[fmt]) for i in r.json()["images"]]
            sizes[fmt, quality] = sum(map(len, files))
            decoded = generate_pixels(r.json(), fmt)
            assert decoded.shape == expected.shape
            errors[fmt, quality] = np.abs(decoded.astype(int) - expected).mean()
        # Lossy: the tiny model's images are colour noise, the worst case of a lossy codec
        # (chroma subsampling alone costs ~45 levels): a low quality is further and smaller.
        for fmt, high in (("jpeg", None), ("webp", 90)):
            assert errors[fmt, 20] > errors[fmt, high] and sizes[fmt, 20] < sizes[fmt, high]

        grey = await client.post("/generate", json={"seed": 7, "n": 2, "format": "jpeg"})
        near = generate_pixels(grey.json(), "jpeg")
        assert np.abs(near.astype(int) - _expected(tiny_models_dir, 7, 2)).mean() < 8

    serve(tiny_models_dir, scenario)


def test_grid_formats(tiny_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        png = await client.post("/generate_grid", json={"seed": 3, "n": 4})
        webp = await client.post("/generate_grid", json={"seed": 3, "n": 4, "format": "webp"})
        jpeg = await client.post(
            "/generate_grid", json={"seed": 3, "n": 4, "format": "jpeg", "quality": 50}
        )
        assert png.headers["content-type"] == "image/png"
        assert webp.headers["content-type"] == "image/webp"
        assert jpeg.headers["content-type"] == "image/jpeg"
        assert 'filename="grid-3-4.webp"' in webp.headers["content-disposition"]
        assert (_grey(webp.content) == _grey(png.content)).all()
        assert Image.open(io.BytesIO(jpeg.content)).size == Image.open(io.BytesIO(png.content)).size
        r = await client.post("/generate_grid", json={"seed": 3, "format": "npy"})
        assert r.status_code == 400 and r.json()["field"] == "format"

    serve(tiny_models_dir, scenario)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"format": "gif"}, "format", 'format must be one of png, webp, jpeg, npy, got "gif"'),
        ({"format": 1}, "format", "format must be one of png, webp, jpeg, npy, got 1"),
        ({"format": "jpeg", "quality": 0}, "quality", "quality must be in [1, 100], got 0"),
        ({"format": "webp", "quality": 1.5}, "quality", "quality must be an integer"),
    ],
)
def test_bad_format_or_quality_is_a_400_naming_it(
    tiny_models_dir: Path, body: dict[str, Any], field: str, message: str
) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        r = await client.post("/generate", json={"seed": 1, **body})
        assert r.status_code == 400
        assert r.headers["content-type"] == "application/json"
        assert r.json()["reason"] == "invalid_field" and r.json()["field"] == field
        assert message in r.json()["error"]

    serve(tiny_models_dir, scenario)


def test_png_and_npy_ignore_quality(tiny_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        for fmt in ("png", "npy"):
            plain = await client.post("/generate", json={"seed": 2, "n": 2, "format": fmt})
            given = await client.post(
                "/generate", json={"seed": 2, "n": 2, "format": fmt, "quality": 5}
            )
            assert given.status_code == 200 and given.content == plain.content, fmt

    serve(tiny_models_dir, scenario)


def test_openapi_documents_the_formats(tiny_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        doc = (await client.get("/openapi.json")).json()

        def props(route: str) -> dict[str, Any]:
            content = doc["paths"][f"/{route}"]["post"]["requestBody"]["content"]
            result: dict[str, Any] = content["application/json"]["schema"]["properties"]
            return result

        assert props("generate")["format"]["enum"] == ["png", "webp", "jpeg", "npy"]
        assert props("generate")["format"]["default"] == "png"
        assert props("generate_grid")["format"]["enum"] == ["png", "webp", "jpeg"]
        assert props("generate")["quality"]["minimum"] == 1
        assert props("interpolate")["format"]["enum"] == ["png", "gif", "webp"]
        answers = doc["paths"]["/generate"]["post"]["responses"]["200"]["content"]
        assert "application/x-npy" in answers
        grid = doc["paths"]["/generate_grid"]["post"]["responses"]["200"]["content"]
        assert {"image/png", "image/webp", "image/jpeg"} <= set(grid)

    serve(tiny_models_dir, scenario)
