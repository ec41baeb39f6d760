"""Every endpoint of a real ``bentoml serve``, and the determinism rule."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from server_process import Server

from contract.latents import latents
from service.core_share import BOARD_FILE
from service.model_store import ModelStore
from service.settings import Settings

pytestmark = pytest.mark.integration


def _pixels(png_b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png_b64)))).astype(np.int16)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_bentoml_endpoints_stay_available(client: httpx.Client) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/docs.json").status_code == 200
    client.post("/generate", json={"seed": 1})
    metrics = client.get("/metrics").text
    for name in (
        "gan_images_generated_total",
        "gan_batch_size_bucket",
        "gan_inference_seconds_bucket",
        "bentoml_service_request_total",  # BentoML's own routes (/docs.json, /readyz)
        "gan_http_requests_total",
        "gan_http_request_seconds_bucket",
        "gan_http_requests_in_progress",
    ):
        assert name in metrics
    # the fast path (service/fast_path.py) counted the /generate above, by endpoint and status
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith("gan_http_requests_total{")
        and 'endpoint="generate"' in line
        and 'code="200"' in line
    ]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 1


def test_models_lists_manifests_and_provider(client: httpx.Client) -> None:
    r = client.get("/models")
    assert r.status_code == 200
    body = r.json()
    assert body["default"] == "tiny-a"
    assert body["provider"] == "CPUExecutionProvider"
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == {"tiny-a", "tiny-b", "tiny-c"}
    assert by_name["tiny-c"]["classes"] == ["circle", "square", "7"]
    b = by_name["tiny-b"]
    assert (b["z_dim"], b["channels"], b["height"], b["width"], b["loss"]) == (
        16,
        3,
        32,
        32,
        "wgan-gp",
    )
    assert b["manifest"]["evaluation"]["fid"] == 123.4
    assert body["broken"] == []
    assert body["settings"]["max_score_images"] == 8


def test_generate(client: httpx.Client) -> None:
    r = client.post("/generate", json={"seed": 42, "n": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"], body["width"], body["height"]) == ("tiny-a", 28, 28)
    assert [image["seed"] for image in body["images"]] == [42, 43, 44, 45]
    image = Image.open(io.BytesIO(base64.b64decode(body["images"][0]["png"])))
    assert (image.format, image.mode, image.size) == ("PNG", "L", (28, 28))
    rgb = client.post("/generate", json={"seed": 1, "model": "tiny-b", "truncation": 0.5}).json()
    assert _pixels(rgb["images"][0]["png"]).shape == (32, 32, 3)


def test_generate_grid_is_a_png(client: httpx.Client) -> None:
    r = client.post("/generate_grid", json={"seed": 3, "n": 6, "columns": 3, "model": "tiny-b"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    grid = Image.open(io.BytesIO(r.content))
    assert grid.size == (3 * 34 + 2, 2 * 34 + 2)


def test_score_many_formats_and_channel_conversion(client: httpx.Client) -> None:
    rgb = Image.effect_noise((50, 40), 60).convert("RGB")
    files = [
        ("images", ("a.png", _encode(rgb.convert("L"), "PNG"), "image/png")),
        ("images", ("b.jpg", _encode(rgb, "JPEG"), "image/jpeg")),
        ("images", ("c.webp", _encode(rgb, "WEBP"), "image/webp")),
        ("images", ("d.bmp", _encode(rgb, "BMP"), "image/bmp")),
    ]
    for model, a, b in (("tiny-a", 1.0, 0.0), ("tiny-b", 0.5, 0.1)):
        r = client.post("/score", files=files, data={"model": model})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == model
        assert [s["filename"] for s in body["scores"]] == ["a.png", "b.jpg", "c.webp", "d.bmp"]
        for s in body["scores"]:
            assert 0.0 <= s["realness"] <= 1.0
            assert s["realness"] == pytest.approx(1.0 / (1.0 + np.exp(-(a * s["logit"] + b))))


def test_score_matches_the_model_in_process(client: httpx.Client, tiny_models_dir: Path) -> None:
    """An uploaded generated image scores like the same pixels through ORT here."""
    generated = client.post("/generate", json={"seed": 77}).json()["images"][0]["png"]
    r = client.post("/score", files=[("images", ("g.png", base64.b64decode(generated)))])
    model = ModelStore.load(Settings(models_dir=tiny_models_dir, provider="cpu")).get("tiny-a")
    x = model.manifest.image.from_uint8(_pixels(generated).astype(np.uint8)[None, :, :, None])
    assert r.json()["scores"][0]["logit"] == pytest.approx(
        float(model.discriminate(x)[0, 0]), abs=1e-4
    )


def test_same_seed_same_pixels_in_any_request_batch_or_process(
    client: httpx.Client, tiny_models_dir: Path
) -> None:
    batch = client.post("/generate", json={"seed": 1000, "n": 16}).json()["images"]
    alone = client.post("/generate", json={"seed": 1003}).json()["images"][0]
    assert alone["seed"] == batch[3]["seed"] == 1003
    assert np.abs(_pixels(alone["png"]) - _pixels(batch[3]["png"])).max() <= 1

    # Concurrent requests land in shared batches; each still gets its own seed's pixels.
    def one(seed: int) -> np.ndarray:
        with httpx.Client(base_url=str(client.base_url), timeout=30) as c:
            return _pixels(
                c.post("/generate", json={"seed": seed, "n": 2}).json()["images"][0]["png"]
            )

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, [1003, 5, 1003, 6, 1003, 7, 1003, 8]))
    for seeds_1003 in results[::2]:
        assert np.abs(seeds_1003 - _pixels(alone["png"])).max() <= 1

    # Another process (this one) running the same ONNX file on the same seed.
    model = ModelStore.load(Settings(models_dir=tiny_models_dir, provider="cpu")).get("tiny-a")
    here = model.manifest.image.to_uint8(model.generate(latents(1003, 1, 8)))[0, :, :, 0]
    assert np.abs(here.astype(np.int16) - _pixels(alone["png"])).max() <= 1


def test_a_lone_big_request_split_over_idle_workers_keeps_its_seeds(
    client: httpx.Client, server: Server
) -> None:
    """With several workers a lone n=40 request is cut into slices on idle cores
    (service/core_share.py); image i is still the image of seed s + i."""
    settings = client.get("/models").json()["settings"]
    board = server.log_path.parent / "prometheus_multiproc_dir" / BOARD_FILE
    if settings["workers"] > 1 and settings["split_threads"] > 1:
        assert board.stat().st_size == settings["workers"]
    batch = client.post("/generate", json={"seed": 500, "n": 40}).json()["images"]
    for i in (0, 19, 20, 39):
        alone = client.post("/generate", json={"seed": 500 + i}).json()["images"][0]
        assert batch[i]["seed"] == 500 + i
        assert (_pixels(alone["png"]) == _pixels(batch[i]["png"])).all()


def test_truncation_changes_the_image_deterministically(client: httpx.Client) -> None:
    def get(t: float) -> np.ndarray:
        body = {"seed": 9, "model": "tiny-b", "truncation": t}
        return _pixels(client.post("/generate", json=body).json()["images"][0]["png"])

    assert np.abs(get(0.3) - get(0.3)).max() == 0
    assert np.abs(get(0.3) - get(1.0)).max() > 1


def test_conditional_model_same_seed_same_image_across_batches_and_workers(
    client: httpx.Client,
) -> None:
    """Without a class each seed draws its own, so a seed alone and inside a batch (and under
    concurrency, on either worker) is the same picture; with a class, every image has it."""
    batch = client.post("/generate", json={"seed": 500, "n": 12, "model": "tiny-c"}).json()
    alone = client.post("/generate", json={"seed": 507, "model": "tiny-c"}).json()["images"][0]
    assert (_pixels(alone["png"]) == _pixels(batch["images"][7]["png"])).all()

    def one(seed: int) -> np.ndarray:
        with httpx.Client(base_url=str(client.base_url), timeout=30) as c:
            body = {"seed": seed, "model": "tiny-c", "class": "square"}
            return _pixels(c.post("/generate", json=body).json()["images"][0]["png"])

    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(one, range(600, 616)))
    together = client.post(
        "/generate", json={"seed": 600, "n": 16, "model": "tiny-c", "class": 1}
    ).json()["images"]
    for got, want in zip(concurrent, together, strict=True):
        assert (got == _pixels(want["png"])).all()
    refused = client.post("/generate", json={"seed": 1, "model": "tiny-c", "class": "owl"})
    assert refused.status_code == 400 and "0 'circle'" in refused.json()["error"]
