"""Models that answer NaN or infinity, under a real ``bentoml serve`` (API key on and off).

At load time the smoke test checks values: a generator or discriminator giving NaN on the smoke
batch is a broken model (listed, not served). Per request: a 500 JSON ``non_finite_output``,
counted; never a black image, never NaN/Infinity in a JSON answer, never a value in the
``gan_realness`` histogram. The faulty graphs are built with onnx (tests/fixtures/tiny_models.py).
"""

from __future__ import annotations

import io
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fixtures.tiny_models import NAN_BELOW, build_tiny_model
from integration.server_process import Server, launch, wait_ready
from PIL import Image
from rel_helpers import AUTH, metric_value, strict_json

from contract.latents import latents

pytestmark = pytest.mark.integration


def _seeds() -> tuple[int, int]:
    """A seed whose latent gives NaN under the "nan-below" generator, and one that does not."""
    z0 = latents(0, 400, 8)[:, 0]
    return int(np.argmax(z0 < NAN_BELOW)), int(np.argmax(z0 >= NAN_BELOW + 0.5))


BAD_SEED, GOOD_SEED = _seeds()


@pytest.fixture(scope="module")
def models(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = Path(shutil.copytree(tiny_models_dir, tmp_path_factory.mktemp("nan") / "models"))
    build_tiny_model(root, name="nan-gen", generator_poison="nan")
    build_tiny_model(root, name="nan-disc", discriminator_poison="nan")
    build_tiny_model(
        root, name="some-nan", generator_poison="nan-below", discriminator_poison="nan-dark"
    )
    build_tiny_model(root, name="some-inf", discriminator_poison="inf-dark")
    return root


@pytest.fixture(scope="module", params=["key", "no key"])
def client(
    request: pytest.FixtureRequest, models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    key = request.param == "key"
    env = {"GAN_API_KEY": AUTH["Authorization"].removeprefix("Bearer ")} if key else {}
    srv: Server = launch(models, tmp_path_factory.mktemp("nan_home"), env)
    try:
        wait_ready(srv)
        with httpx.Client(base_url=srv.url, headers=AUTH if key else {}, timeout=30) as http_client:
            yield http_client
    finally:
        srv.stop()


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (28, 28), value).save(buffer, format="PNG")
    return buffer.getvalue()


def _refused(r: httpx.Response) -> dict[str, object]:
    assert r.status_code == 500, r.text[:300]
    assert r.headers["content-type"].startswith("application/json")
    body = strict_json(r.text)
    assert body["reason"] == "non_finite_output" and body["field"] is None, body
    assert "NaN or infinity" in str(body["error"])
    return dict(body)


def test_models_giving_nan_on_the_smoke_batch_are_broken(client: httpx.Client) -> None:
    listing = client.get("/models").json()
    broken = {b["name"]: b["error"] for b in listing["broken"]}
    assert set(broken) == {"nan-gen", "nan-disc"}
    assert "generator.onnx: non-finite output" in broken["nan-gen"]
    assert "discriminator.onnx: non-finite output" in broken["nan-disc"]
    assert metric_value(client.get("/metrics").text, "gan_models_broken") == 2
    r = client.post("/generate", json={"seed": 1, "model": "nan-gen"})
    assert r.status_code == 404 and r.json()["reason"] == "unknown_model"


def test_a_nan_image_is_a_500_never_a_black_image(client: httpx.Client) -> None:
    good = client.post("/generate", json={"seed": GOOD_SEED, "model": "some-nan"})
    assert good.status_code == 200
    _refused(client.post("/generate", json={"seed": BAD_SEED, "model": "some-nan"}))
    # a request holding one bad seed among good ones
    _refused(client.post("/generate", json={"seed": BAD_SEED - 1, "n": 3, "model": "some-nan"}))
    _refused(client.post("/generate_grid", json={"seed": BAD_SEED, "model": "some-nan"}))
    walk = {"seed_a": GOOD_SEED, "seed_b": BAD_SEED, "steps": 4, "model": "some-nan"}
    _refused(client.post("/interpolate", json=walk))
    text = client.get("/metrics").text
    for endpoint in ("generate", "generate_grid", "interpolate"):
        assert (
            metric_value(
                text, "gan_request_errors_total", endpoint=endpoint, reason="non_finite_output"
            )
            >= 1
        ), endpoint
    assert metric_value(text, "gan_non_finite_outputs_total", model="some-nan") >= 4
    assert metric_value(text, "gan_request_errors_total", reason="internal") == 0


@pytest.mark.parametrize("model", ["some-nan", "some-inf"])
def test_a_nan_or_infinite_score_is_a_500_never_invalid_json(
    client: httpx.Client, model: str
) -> None:
    before = client.get("/metrics").text
    count = metric_value(before, "gan_realness_count", model=model)
    ok = client.post("/score", files=[("images", ("white.png", _png(255)))], data={"model": model})
    assert ok.status_code == 200
    assert math.isfinite(strict_json(ok.text)["scores"][0]["logit"])
    dark = [("images", ("black.png", _png(0))), ("images", ("white.png", _png(255)))]
    _refused(client.post("/score", files=dark, data={"model": model}))
    after = client.get("/metrics").text
    assert metric_value(after, "gan_realness_count", model=model) == count + 1
    realness_sum = metric_value(after, "gan_realness_sum", model=model)
    assert math.isfinite(realness_sum) and 0 <= realness_sum <= count + 1
    assert (
        metric_value(
            after, "gan_request_errors_total", endpoint="score", reason="non_finite_output"
        )
        >= 1
    )
