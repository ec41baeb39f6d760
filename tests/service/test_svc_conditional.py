"""Class-conditional models in the service: the ``class`` field on every image route, the seed's
own class when none is named, classes in /models and OpenAPI, realness against a class."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fixtures.in_process import serve
from fixtures.tiny_models import CLASSES
from PIL import Image
from prometheus_client import CollectorRegistry

from contract.latents import classes_for_seeds, latents
from service.model_store import ModelStore
from service.settings import Settings


def _pixels(entry: dict[str, Any]) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(entry["png"]))))


@pytest.fixture
def store(conditional_models_dir: Path) -> ModelStore:
    return ModelStore.load(Settings(models_dir=conditional_models_dir, default_model="tiny-a"))


def _expected(store: ModelStore, seed: int, n: int, classes: np.ndarray) -> np.ndarray:
    model = store.get("tiny-c")
    images = model.generate(latents(seed, n, model.manifest.z_dim), classes)
    return model.manifest.image.to_uint8(images)[..., 0]


def test_generate_by_index_and_by_name(conditional_models_dir: Path, store: ModelStore) -> None:
    async def scenario(client: httpx.AsyncClient, _registry: CollectorRegistry) -> None:
        for value in (1, "square", "1"):
            r = await client.post(
                "/generate", json={"seed": 40, "n": 3, "model": "tiny-c", "class": value}
            )
            assert r.status_code == 200, r.text
            got = np.stack([_pixels(e) for e in r.json()["images"]])
            np.testing.assert_array_equal(got, _expected(store, 40, 3, np.array([1, 1, 1])))
        # "7" is the name of class 2 here: a name wins over an index that looks the same.
        r = await client.post("/generate", json={"seed": 40, "model": "tiny-c", "class": "7"})
        np.testing.assert_array_equal(
            _pixels(r.json()["images"][0]), _expected(store, 40, 1, np.array([2]))[0]
        )

    serve(conditional_models_dir, scenario)


def test_without_a_class_each_seed_draws_its_own(
    conditional_models_dir: Path, store: ModelStore
) -> None:
    """Image i of a request is the image of seed + i, whatever its batch-mates: the class too."""

    async def scenario(client: httpx.AsyncClient, _registry: CollectorRegistry) -> None:
        r = await client.post("/generate", json={"seed": 100, "n": 12, "model": "tiny-c"})
        got = np.stack([_pixels(e) for e in r.json()["images"]])
        drawn = classes_for_seeds(np.arange(100, 112, dtype=np.uint64), len(CLASSES))
        assert len(set(drawn.tolist())) > 1  # the test means something: several classes
        np.testing.assert_array_equal(got, _expected(store, 100, 12, drawn))
        one = await client.post("/generate", json={"seed": 105, "model": "tiny-c"})
        np.testing.assert_array_equal(_pixels(one.json()["images"][0]), got[5])

    serve(conditional_models_dir, scenario)


def test_bad_classes_are_400s_that_name_the_classes(conditional_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, _registry: CollectorRegistry) -> None:
        for path, body in (
            ("/generate", {"seed": 1}),
            ("/generate_grid", {"seed": 1, "n": 2}),
            ("/interpolate", {"seed_a": 1, "seed_b": 2, "steps": 2}),
        ):
            r = await client.post(path, json={**body, "model": "tiny-c", "class": "horse"})
            assert r.status_code == 400 and r.json()["field"] == "class", r.text
            assert "0 'circle', 1 'square', 2 '7'" in r.json()["error"]
            r = await client.post(path, json={**body, "model": "tiny-c", "class": 3})
            assert r.status_code == 400 and "has no class 3" in r.json()["error"]
            r = await client.post(path, json={**body, "model": "tiny-c", "class": [1]})
            assert (
                r.status_code == 400
                and "class index (integer) or a class name" in r.json()["error"]
            )
            r = await client.post(path, json={**body, "class": 0})  # tiny-a: unconditional
            assert r.status_code == 400 and "not class-conditional" in r.json()["error"]

    serve(conditional_models_dir, scenario)


def test_grid_and_interpolate_take_a_class(conditional_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, _registry: CollectorRegistry) -> None:
        grids = []
        for k in range(3):
            r = await client.post(
                "/generate_grid", json={"seed": 0, "n": 4, "model": "tiny-c", "class": k}
            )
            assert r.status_code == 200
            grids.append(r.content)
        assert len(set(grids)) == 3
        walks = []
        for k in ("circle", "square"):
            r = await client.post(
                "/interpolate",
                json={"seed_a": 1, "seed_b": 2, "steps": 3, "model": "tiny-c", "class": k},
            )
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            walks.append(r.content)
        assert walks[0] != walks[1]

    serve(conditional_models_dir, scenario)


def test_models_and_openapi_list_the_classes(conditional_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, _registry: CollectorRegistry) -> None:
        listing = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
        assert listing["tiny-c"]["classes"] == list(CLASSES)
        assert listing["tiny-a"]["classes"] is None
        document = (await client.get("/openapi.json")).json()
        body = document["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]
        prop = body["schema"]["properties"]["class"]
        assert "tiny-c: circle, square, 7" in prop["description"]

    serve(conditional_models_dir, scenario)


def test_score_against_a_class_and_without(conditional_models_dir: Path, store: ModelStore) -> None:
    model = store.get("tiny-c")
    u8 = _expected(store, 7, 2, np.array([0, 1]))
    files = []
    for i, image in enumerate(u8):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        files.append(("images", (f"{i}.png", buf.getvalue())))
    x = model.manifest.image.from_uint8(u8[..., None])
    logits, ood = model.split_scores(model.discriminate(x))
    assert logits.shape == (2, 3) and ood is not None

    async def scenario(client: httpx.AsyncClient, _registry: CollectorRegistry) -> None:
        for klass, classes in ((None, None), ("square", np.array([1, 1]))):
            data = {"model": "tiny-c", **({"class": klass} if klass else {})}
            r = await client.post("/score", files=files, data=data)
            assert r.status_code == 200, r.text
            scores = r.json()["scores"]
            expected = model.manifest.realness.realness(logits, ood, classes)
            np.testing.assert_allclose([s["realness"] for s in scores], expected, rtol=1e-6)
            np.testing.assert_allclose([s["ood"] for s in scores], ood, rtol=1e-6)
        r = await client.post("/score", files=files, data={"model": "tiny-c", "class": "owl"})
        assert r.status_code == 400 and r.json()["field"] == "class"

    serve(conditional_models_dir, scenario)
