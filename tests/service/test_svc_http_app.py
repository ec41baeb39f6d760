"""The routes in-process (no bentoml serve): fast checks of status codes and bodies."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from fixtures.in_process import serve
from PIL import Image
from prometheus_client import CollectorRegistry


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_generate_and_models(tiny_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        r = await client.post("/generate", json={"seed": 10, "n": 3, "model": "tiny-b"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["model"], body["width"], body["height"]) == ("tiny-b", 32, 32)
        assert [i["seed"] for i in body["images"]] == [10, 11, 12]
        image = Image.open(io.BytesIO(base64.b64decode(body["images"][0]["png"])))
        assert (image.mode, image.size) == ("RGB", (32, 32))
        r = await client.get("/models")
        assert r.json()["default"] == "tiny-a"
        assert r.json()["settings"]["n_max"] == 64
        assert registry.get_sample_value("gan_images_generated_total", {"model": "tiny-b"}) == 3

    serve(tiny_models_dir, scenario)


def test_large_n_goes_through_the_png_thread(tiny_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        r = await client.post("/generate", json={"seed": 1, "n": 40})
        assert len(r.json()["images"]) == 40

    serve(tiny_models_dir, scenario)


def test_grid_and_score(tiny_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        r = await client.post("/generate_grid", json={"seed": 1, "n": 5, "columns": 5})
        assert r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).size == (5 * 30 + 2, 32)
        files = [
            ("images", ("a.png", _png(Image.new("L", (28, 28), 0)), "image/png")),
            ("images", ("b.png", _png(Image.new("RGB", (64, 64), (9, 9, 9))), "image/png")),
        ]
        r = await client.post("/score", files=files, data={"model": "tiny-b"})
        assert r.status_code == 200, r.text
        scores = r.json()["scores"]
        assert [s["filename"] for s in scores] == ["a.png", "b.png"]
        for s in scores:
            assert 0.0 <= s["realness"] <= 1.0
            assert s["realness"] == pytest.approx(1 / (1 + np.exp(-(0.5 * s["logit"] + 0.1))))
        assert registry.get_sample_value("gan_realness_count", {"model": "tiny-b"}) == 2

    serve(tiny_models_dir, scenario)


def test_errors_are_json_and_counted(tiny_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        cases: list[tuple[httpx.Response, int, str]] = [
            (await client.post("/generate", content=b"{"), 400, "bad_json"),
            (await client.post("/generate", json={"seed": 1, "model": "x"}), 404, "unknown_model"),
            (await client.get("/generate"), 405, "method_not_allowed"),
            (await client.post("/generate", content=b"x" * 70_000), 413, "body_too_large"),
            (await client.post("/score", json={"images": []}), 400, "not_multipart"),
            (
                await client.post("/score", files=[("images", ("t.txt", b"hello", "text/plain"))]),
                400,
                "not_an_image",
            ),
            (
                await client.post("/score", files=[("other", ("a.png", b"x", "image/png"))]),
                400,
                "invalid_field",
            ),
            (
                await client.post("/score", data={"images": "text"}, files=[("z", ("z", b"z"))]),
                400,
                "invalid_field",
            ),
            (
                await client.post(
                    "/score", files=[("images", (f"{i}.png", b"x")) for i in range(3)]
                ),
                400,
                "too_many_images",
            ),
            (
                await client.post("/score", files=[("images", ("big.png", b"x" * 5000))]),
                413,
                "body_too_large",
            ),
        ]
        for response, status, reason in cases:
            assert response.status_code == status, response.text
            assert response.headers["content-type"] == "application/json"
            assert response.json()["reason"] == reason, response.text
        assert (
            registry.get_sample_value(
                "gan_request_errors_total", {"endpoint": "generate", "reason": "bad_json"}
            )
            == 1
        )
        assert (
            registry.get_sample_value(
                "gan_request_errors_total", {"endpoint": "generate", "reason": "method_not_allowed"}
            )
            == 1
        )

    serve(tiny_models_dir, scenario, max_score_images=2, max_upload_bytes=4096)
