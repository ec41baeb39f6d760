from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from contract.latents import latents
from service import model_store
from service.model_store import CPU, ModelStore, ModelStoreError, UnknownModelError
from service.settings import Settings


@pytest.fixture
def models(tiny_models_dir: Path, tmp_path: Path) -> Path:
    """A private copy, so tests can break files."""
    return Path(shutil.copytree(tiny_models_dir, tmp_path / "models"))


def test_loads_both_models_on_cpu(models: Path) -> None:
    store = ModelStore.load(Settings(models_dir=models, provider="cpu"))
    assert sorted(store.models) == ["tiny-a", "tiny-b"]
    assert store.default_name == "tiny-a"  # first in sorted order when unset
    assert store.provider == CPU
    assert store.get(None).name == "tiny-a"
    described = store.describe()
    assert described["default"] == "tiny-a"
    assert [m["name"] for m in described["models"]] == ["tiny-a", "tiny-b"]


def test_default_file_in_the_models_folder_then_env_wins(models: Path) -> None:
    (models / "DEFAULT").write_text("tiny-b\n")
    assert ModelStore.load(Settings(models_dir=models, provider="cpu")).default_name == "tiny-b"
    env = Settings(models_dir=models, provider="cpu", default_model="tiny-a")
    assert ModelStore.load(env).default_name == "tiny-a"
    (models / "DEFAULT").write_text("nope\n")
    with pytest.raises(ModelStoreError, match="DEFAULT='nope': no such folder"):
        ModelStore.load(Settings(models_dir=models, provider="cpu"))


def test_generate_and_discriminate_shapes(models: Path) -> None:
    model = ModelStore.load(Settings(models_dir=models)).get("tiny-b")
    images = model.generate(latents(7, 3, 16))
    assert images.shape == (3, 3, 32, 32)
    assert model.discriminate(images).shape == (3, 1)  # one logit column, no OOD term


def test_unknown_model(models: Path) -> None:
    store = ModelStore.load(Settings(models_dir=models))
    with pytest.raises(UnknownModelError) as info:
        store.get("nope")
    assert info.value.served == ["tiny-a", "tiny-b"]


def _tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_broken_default_fails_fast_naming_the_file(models: Path) -> None:
    _tamper(models / "tiny-a" / "generator.onnx")
    with pytest.raises(ModelStoreError, match=r"tiny-a.*generator\.onnx: sha256"):
        ModelStore.load(Settings(models_dir=models, default_model="tiny-a"))


def test_broken_other_model_is_reported_not_fatal(models: Path) -> None:
    (models / "tiny-b" / "discriminator.onnx").unlink()
    store = ModelStore.load(Settings(models_dir=models, default_model="tiny-a"))
    assert list(store.models) == ["tiny-a"]
    assert "discriminator.onnx" in store.broken["tiny-b"].error
    assert store.describe()["broken"][0]["name"] == "tiny-b"


def test_graph_that_disagrees_with_manifest_is_broken(models: Path) -> None:
    manifest_path = models / "tiny-b" / "model.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["z_dim"] = 5
    manifest_path.write_text(json.dumps(manifest))
    store = ModelStore.load(Settings(models_dir=models, default_model="tiny-a"))
    assert "tiny-b" in store.broken


def test_corrupt_onnx_with_matching_sha_is_broken(models: Path) -> None:
    path = models / "tiny-b" / "generator.onnx"
    path.write_bytes(b"not an onnx graph")
    manifest_path = models / "tiny-b" / "model.json"
    manifest = json.loads(manifest_path.read_text())
    import hashlib

    manifest["onnx"]["generator"]["sha256"] = hashlib.sha256(b"not an onnx graph").hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    store = ModelStore.load(Settings(models_dir=models, default_model="tiny-a"))
    assert "ONNX Runtime cannot load it" in store.broken["tiny-b"].error


@pytest.mark.parametrize(
    ("generator", "discriminator", "graph"),
    [("nan", None, "generator.onnx"), (None, "nan", "discriminator.onnx")],
)
def test_a_graph_giving_nan_on_the_smoke_batch_is_broken(
    models: Path, generator: str | None, discriminator: str | None, graph: str
) -> None:
    from fixtures.tiny_models import build_tiny_model

    build_tiny_model(
        models, name="poisoned", generator_poison=generator, discriminator_poison=discriminator
    )
    store = ModelStore.load(Settings(models_dir=models, default_model="tiny-a"))
    error = store.broken["poisoned"].error
    assert graph in error and "non-finite output (NaN or infinity)" in error
    assert "poisoned" not in store.models
    with pytest.raises(ModelStoreError, match="non-finite"):
        ModelStore.load(Settings(models_dir=models, default_model="poisoned"))


def test_missing_dir_unknown_default_and_empty_dir(models: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelStoreError, match="GAN_MODELS_DIR"):
        ModelStore.load(Settings(models_dir=tmp_path / "absent"))
    with pytest.raises(ModelStoreError, match="GAN_DEFAULT_MODEL"):
        ModelStore.load(Settings(models_dir=models, default_model="mnist"))
    empty = tmp_path / "empty"
    (empty / ".tmp-export").mkdir(parents=True)  # half-written exports are not candidates
    with pytest.raises(ModelStoreError, match="no model folders"):
        ModelStore.load(Settings(models_dir=empty))


def test_forcing_cuda_without_cuda_fails_clearly(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_store.ort, "get_available_providers", lambda: [CPU])
    with pytest.raises(ModelStoreError, match="GAN_PROVIDER=cuda"):
        ModelStore.load(Settings(models_dir=models, provider="cuda"))


def test_auto_falls_back_to_cpu_when_cuda_does_not_start(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CUDA build on a machine whose CUDA fails: ORT silently runs on CPU; we notice."""
    monkeypatch.setattr(model_store.ort, "get_available_providers", lambda: [model_store.CUDA, CPU])
    real_session = model_store.ort.InferenceSession

    def cpu_session(data: bytes, sess_options: object, providers: list[str]) -> object:
        return real_session(data, sess_options=sess_options, providers=[CPU])

    monkeypatch.setattr(model_store.ort, "InferenceSession", cpu_session)
    store = ModelStore.load(Settings(models_dir=models, provider="auto"))
    assert store.provider == CPU
    assert any("did not initialise" in note for note in store.notes)
    with pytest.raises(ModelStoreError, match="GAN_PROVIDER=cuda, but ONNX Runtime runs"):
        ModelStore.load(Settings(models_dir=models, provider="cuda"))


def test_same_seed_same_pixels_across_batches(models: Path) -> None:
    model = ModelStore.load(Settings(models_dir=models)).get("tiny-a")
    spec = model.manifest.image
    alone = spec.to_uint8(model.generate(latents(1003, 1, 8)))[0]
    batch = spec.to_uint8(model.generate(latents(1000, 16, 8)))[3]
    assert np.abs(alone.astype(int) - batch.astype(int)).max() <= 1
