"""The bundled colour model (models/cifar10-cgan, issue 17) through the service: RGB PNGs of
the named class, a class that changes the pixels, colour uploads scored against a class."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fixtures.in_process import serve
from PIL import Image
from prometheus_client import CollectorRegistry

from contract.latents import latents
from service.model_store import ModelStore
from service.settings import Settings

MODELS = Path(__file__).resolve().parents[2] / "models"
NAME = "cifar10-cgan"
HORSE, SHIP = 7, 8


@pytest.fixture(scope="module")
def store() -> ModelStore:
    return ModelStore.load(Settings(models_dir=MODELS, default_model=NAME))


def _rgb(entry: dict[str, Any]) -> np.ndarray:
    image = Image.open(io.BytesIO(base64.b64decode(entry["png"])))
    assert image.mode == "RGB" and image.size == (32, 32)
    return np.asarray(image)


def _expected(store: ModelStore, seed: int, n: int, klass: int) -> np.ndarray:
    model = store.get(NAME)
    images = model.generate(latents(seed, n, model.manifest.z_dim), np.full(n, klass))
    return model.manifest.image.to_uint8(images)


def test_generate_a_named_class_in_colour(store: ModelStore) -> None:
    async def scenario(client: httpx.AsyncClient, _registry: CollectorRegistry) -> None:
        body = {"model": NAME, "seed": 5, "n": 3}
        r = await client.post("/generate", json={**body, "class": "horse"})
        assert r.status_code == 200, r.text
        horses = np.stack([_rgb(e) for e in r.json()["images"]])
        np.testing.assert_array_equal(horses, _expected(store, 5, 3, HORSE))
        # Colour, not grey copied to three channels.
        assert np.abs(horses[..., 0].astype(int) - horses[..., 2]).mean() > 5
        r = await client.post("/generate", json={**body, "class": "ship"})
        ships = np.stack([_rgb(e) for e in r.json()["images"]])
        np.testing.assert_array_equal(ships, _expected(store, 5, 3, SHIP))
        assert np.abs(ships.astype(int) - horses).mean() > 2  # the class is not ignored

        info = {m["name"]: m for m in (await client.get("/models")).json()["models"]}[NAME]
        assert (info["channels"], info["height"], info["width"]) == (3, 32, 32)
        assert info["classes"][HORSE] == "horse" and len(info["classes"]) == 10

    serve(MODELS, scenario, default_model=NAME)


def test_score_colour_uploads_against_a_class(store: ModelStore) -> None:
    model = store.get(NAME)
    u8 = _expected(store, 11, 2, HORSE)
    files = []
    for i, image in enumerate(u8):
        buf = io.BytesIO()
        Image.fromarray(image, mode="RGB").save(buf, format="PNG")
        files.append(("images", (f"{i}.png", buf.getvalue())))
    logits, ood = model.split_scores(model.discriminate(model.manifest.image.from_uint8(u8)))

    async def scenario(client: httpx.AsyncClient, _registry: CollectorRegistry) -> None:
        r = await client.post("/score", files=files, data={"model": NAME, "class": "horse"})
        assert r.status_code == 200, r.text
        got = [s["realness"] for s in r.json()["scores"]]
        expected = model.manifest.realness.realness(logits, ood, np.array([HORSE, HORSE]))
        np.testing.assert_allclose(got, expected, rtol=1e-6)

    serve(MODELS, scenario, default_model=NAME)
