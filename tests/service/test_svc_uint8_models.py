"""Model folders whose generator computes the uint8 pixels itself (training/uint8_graph.py):
served pixels identical to the float graph + the contract rule, NaN rows still refused, and a
folder whose uint8 output breaks the rule refused at load."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from fixtures.in_process import serve
from fixtures.tiny_models import NAN_BELOW, build_tiny_model
from prometheus_client import CollectorRegistry

from contract.files import sha256_file
from contract.latents import latents
from service.model_store import ModelStore
from service.settings import Settings
from training.uint8_graph import add_uint8_outputs, convert_folder


@pytest.fixture(scope="module")
def converted(conditional_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-a, tiny-b and the conditional tiny-c with the pixels in their graphs."""
    root = Path(shutil.copytree(conditional_models_dir, tmp_path_factory.mktemp("u8") / "m"))
    for name in ("tiny-a", "tiny-b", "tiny-c"):
        convert_folder(root / name)
    return root


async def _npy(client: httpx.AsyncClient, **body: object) -> np.ndarray:
    r = await client.post("/generate", json={**body, "format": "npy"})
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content), allow_pickle=False)


def _served(models: Path) -> dict[tuple[str, int, object], np.ndarray]:
    """/generate's pixels of many seeds per model (conditional: each class, and none)."""
    got: dict[tuple[str, int, object], np.ndarray] = {}

    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        for model, classes in (("tiny-a", [None]), ("tiny-b", [None]), ("tiny-c", [None, 0, 2])):
            for seed in (0, 64, 1000, 4294967295 - 63):
                for klass in classes:
                    body: dict[str, object] = {"seed": seed, "n": 64, "model": model}
                    if klass is not None:
                        body["class"] = klass
                    got[model, seed, klass] = await _npy(client, **body)

    serve(models, scenario)
    return got


def test_served_pixels_are_the_float_graphs(conditional_models_dir: Path, converted: Path) -> None:
    store = ModelStore.load(Settings(models_dir=converted))
    assert all(m.uint8_in_graph for m in store.models.values())
    float_ones = _served(conditional_models_dir)
    in_graph = _served(converted)
    assert float_ones.keys() == in_graph.keys() and len(in_graph) == 20
    for key, pixels in float_ones.items():
        assert pixels.shape == in_graph[key].shape
        assert (pixels == in_graph[key]).all(), key


def test_the_loader_refuses_a_uint8_output_that_breaks_the_rule(
    converted: Path, tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(converted / "tiny-a", tmp_path / "m" / "tiny-a"))
    shutil.copytree(converted / "tiny-b", tmp_path / "m" / "tiny-b")
    float_folder = build_tiny_model(tmp_path / "float", name="tiny-a", seed=1)
    model = onnx.load(str(float_folder / "generator.onnx"))
    wrong = add_uint8_outputs(model, "images", (0.0, 1.0))  # not this model's value range
    (folder / "generator.onnx").write_bytes(wrong.SerializeToString())
    manifest = json.loads((folder / "model.json").read_text())
    manifest["onnx"]["generator"]["sha256"] = sha256_file(folder / "generator.onnx")
    (folder / "model.json").write_text(json.dumps(manifest))
    store = ModelStore.load(Settings(models_dir=tmp_path / "m", default_model="tiny-b"))
    assert "tiny-a" in store.broken and "tiny-b" in store.models
    assert "differs from image.to_uint8" in store.broken["tiny-a"].error


def test_a_nan_row_is_still_a_500(tmp_path: Path) -> None:
    root = tmp_path / "models"
    build_tiny_model(root, name="tiny-a", seed=1)
    convert_folder(build_tiny_model(root, name="some-nan", generator_poison="nan-below"))
    z0 = latents(0, 400, 8)[:, 0]
    bad, good = int(np.argmax(z0 < NAN_BELOW)), int(np.argmax(z0 >= NAN_BELOW + 0.5))

    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        ok = await client.post("/generate", json={"seed": good, "model": "some-nan"})
        assert ok.status_code == 200
        for body in ({"seed": bad}, {"seed": bad - 1, "n": 3}, {"seed": bad, "format": "npy"}):
            r = await client.post("/generate", json={**body, "model": "some-nan"})
            assert r.status_code == 500 and r.json()["reason"] == "non_finite_output", body
        counted = registry.get_sample_value(
            "gan_non_finite_outputs_total", {"model": "some-nan", "kind": "generate"}
        )
        assert counted == 3

    serve(root, scenario)
