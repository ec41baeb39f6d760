"""gan_model_info: one series per model folder, loaded or broken, with the manifest's identity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry

from contract.manifest import read_manifest
from service.metrics import GanMetrics
from service.model_info import LABELS, manifest_version, model_info_labels
from service.model_store import ModelStore
from service.settings import Settings


def _store(models: Path) -> ModelStore:
    return ModelStore.load(Settings(models_dir=models, default_model="tiny-a"))


def _copy_with_broken(source: Path, tmp_path: Path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(source, models)
    shutil.copytree(models / "tiny-b", models / "tiny-sha")  # a graph changed after export
    with (models / "tiny-sha" / "generator.onnx").open("ab") as f:
        f.write(b"\0")
    (models / "tiny-json").mkdir()
    (models / "tiny-json" / "model.json").write_text("{ not json")
    return models


def test_loaded_models_carry_their_manifest(conditional_models_dir: Path) -> None:
    store = _store(conditional_models_dir)
    rows = {r["model"]: r for r in model_info_labels(store)}
    assert sorted(rows) == sorted(store.models)
    for name, row in rows.items():
        assert set(row) == set(LABELS)
        manifest = store.models[name].manifest
        assert row["state"] == "loaded"
        assert row["sha256"] == manifest.generator.sha256
        assert row["discriminator_sha256"] == manifest.discriminator.sha256
        assert row["version"] == manifest_version(manifest.raw)
        assert row["format"] == manifest.raw["format"]
        assert row["conditional"] == str(manifest.conditional).lower()
        assert row["default"] == str(name == "tiny-a").lower()
        assert row["provider"] == "CPUExecutionProvider"
    assert rows["tiny-c"]["conditional"] == "true" and rows["tiny-a"]["conditional"] == "false"


def test_broken_models_say_what_their_manifest_declares(
    conditional_models_dir: Path, tmp_path: Path
) -> None:
    models = _copy_with_broken(conditional_models_dir, tmp_path)
    store = _store(models)
    rows = {r["model"]: r for r in model_info_labels(store)}
    assert {n for n, r in rows.items() if r["state"] == "broken"} == {"tiny-sha", "tiny-json"}
    declared = read_manifest(models / "tiny-sha")
    assert rows["tiny-sha"]["sha256"] == declared.generator.sha256
    assert rows["tiny-sha"]["version"] == manifest_version(declared.raw)
    assert rows["tiny-sha"]["default"] == "false" and rows["tiny-sha"]["provider"] == ""
    assert rows["tiny-json"]["version"] == rows["tiny-json"]["sha256"] == ""


def test_version_follows_any_change_of_the_manifest(tiny_models_dir: Path) -> None:
    raw = json.loads((tiny_models_dir / "tiny-a" / "model.json").read_text())
    version = manifest_version(raw)
    assert len(version) == 12 and int(version, 16) >= 0
    assert manifest_version(json.loads(json.dumps(raw))) == version  # key order is irrelevant
    recalibrated = {**raw, "realness": {**raw["realness"], "a": raw["realness"]["a"] + 1e-9}}
    assert manifest_version(recalibrated) != version


def test_record_models_sets_one_series_per_folder(
    conditional_models_dir: Path, tmp_path: Path
) -> None:
    store = _store(_copy_with_broken(conditional_models_dir, tmp_path))
    registry = CollectorRegistry()
    metrics = GanMetrics(8, registry)
    metrics.record_models(store)
    metrics.record_models(store)  # a second call (same labels) adds nothing
    samples = [s for m in registry.collect() if m.name == "gan_model_info" for s in m.samples]
    assert sorted(s.labels["model"] for s in samples) == sorted([*store.models, *store.broken])
    assert all(s.value == 1 for s in samples)
    assert registry.get_sample_value("gan_models_broken") == 2
