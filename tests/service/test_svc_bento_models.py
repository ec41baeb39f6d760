"""service/bento_models.py: model folders into BentoML's model store and back, and the service
loading them from there (GAN_BENTO_MODELS) through model_store's one loader."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import bentoml
import pytest
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.models import ModelStore as BentoStore

from service import bento_models
from service.bento_models import BentoModelError, content_version, import_folder
from service.model_store import ModelStore, ModelStoreError
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    """An empty BentoML model store of its own (as BENTOML_HOME=tmp would give)."""
    root = tmp_path / "bentoml-models"
    root.mkdir()
    BentoMLContainer.model_store.set(BentoStore(str(root)))
    try:
        yield root
    finally:
        BentoMLContainer.model_store.reset()


@pytest.fixture
def models(tiny_models_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_models_dir, tmp_path / "models"))


def _tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_import_copies_every_file_and_records_its_sha256(store: Path, models: Path) -> None:
    tag = import_folder(models / "tiny-a")
    name, _, version = tag.partition(":")
    assert name == "tiny-a"
    model = bentoml.models.get(tag)
    assert {m.tag.name for m in bentoml.models.list()} == {"tiny-a"}
    digests = model.info.metadata["sha256"]
    assert sorted(digests) == sorted(p.name for p in (models / "tiny-a").iterdir())
    assert version == content_version(digests)
    for rel, sha in digests.items():
        assert (Path(model.path) / rel).read_bytes() == (models / "tiny-a" / rel).read_bytes()
        assert len(sha) == 64
    assert model.info.labels["project"] == "gan-service"
    assert model.info.metadata["manifest_name"] == "tiny-a"


def test_reimport_is_idempotent_and_a_changed_file_is_a_new_version(
    store: Path, models: Path
) -> None:
    first = import_folder(models / "tiny-a")
    assert import_folder(models / "tiny-a") == first
    assert len(bentoml.models.list("tiny-a")) == 1
    (models / "tiny-a" / "README.md").write_text("retrained, say\n")
    second = import_folder(models / "tiny-a")
    assert second != first
    assert len(bentoml.models.list("tiny-a")) == 2
    # An explicit version already taken by other files is refused, not overwritten.
    with pytest.raises(BentoModelError, match="already in the store with other files"):
        import_folder(models / "tiny-b", name="tiny-a", version=first.partition(":")[2])


def test_corrupt_or_invalid_folders_are_refused(store: Path, models: Path) -> None:
    _tamper(models / "tiny-a" / "generator.onnx")
    with pytest.raises(BentoModelError, match=r"generator\.onnx: sha256 .* does not match"):
        import_folder(models / "tiny-a")
    (models / "tiny-b" / "model.json").write_text("{}")
    with pytest.raises(BentoModelError, match=r"not a valid model folder: .*format is missing"):
        import_folder(models / "tiny-b")
    with pytest.raises(BentoModelError, match="not a folder"):
        import_folder(models / "absent")
    assert bentoml.models.list() == []


def test_names_and_versions_follow_bentomls_tag_rules(store: Path, models: Path) -> None:
    with pytest.raises(BentoModelError, match="not a BentoML model tag: its name 'Tiny A'"):
        import_folder(models / "tiny-a", name="Tiny A")
    with pytest.raises(BentoModelError, match="latest is reserved"):
        import_folder(models / "tiny-a", version="latest")
    assert import_folder(models / "tiny-a", name="mine", version="v1") == "mine:v1"


def test_service_serves_store_models_under_their_names_first_listed_default(
    store: Path, models: Path
) -> None:
    import_folder(models / "tiny-a", name="alpha")
    tag_b = import_folder(models / "tiny-b")
    settings = Settings(bento_models=(tag_b, "alpha"), provider="cpu")
    loaded = ModelStore.load(settings)
    assert sorted(loaded.models) == ["alpha", "tiny-b"]
    assert loaded.default_name == "tiny-b"
    described = {m["name"]: m for m in loaded.describe()["models"]}
    assert described["tiny-b"]["source"] == f"bentoml:{tag_b}"
    assert described["alpha"]["source"].startswith("bentoml:alpha:")  # latest, resolved
    assert ModelStore.load(Settings(bento_models=(tag_b, "alpha"), default_model="alpha"))
    with pytest.raises(ModelStoreError, match="GAN_DEFAULT_MODEL='tiny-a' is not one of"):
        ModelStore.load(Settings(bento_models=(tag_b, "alpha"), default_model="tiny-a"))


def test_a_tag_missing_from_the_store_stops_start_up(store: Path) -> None:
    with pytest.raises(ModelStoreError, match="'nope:latest' is not in BentoML's model store"):
        ModelStore.load(Settings(bento_models=("nope:latest",)))


def test_a_changed_file_in_the_store_is_caught_at_load(store: Path, models: Path) -> None:
    tag_a = import_folder(models / "tiny-a")
    tag_b = import_folder(models / "tiny-b")
    stored_b = Path(bentoml.models.get(tag_b).path)
    # README.md is not checked by model.json: only the digests recorded at import catch it.
    readme = (stored_b / "README.md").read_bytes()
    (stored_b / "README.md").write_text("changed in the store\n")
    loaded = ModelStore.load(Settings(bento_models=(tag_a, tag_b)))
    assert sorted(loaded.models) == ["tiny-a"]
    assert "differs from the one recorded at import" in loaded.broken["tiny-b"].error
    (stored_b / "README.md").write_bytes(readme)
    (stored_b / "model.json").unlink()
    with pytest.raises(ModelStoreError, match=r"default model 'tiny-b' is broken: .*missing"):
        ModelStore.load(Settings(bento_models=(tag_b, tag_a)))


def test_a_model_not_imported_by_us_is_refused(store: Path) -> None:
    with bentoml.models.create("foreign:v1") as model:
        (Path(model.path) / "weights.bin").write_bytes(b"\0")
    with pytest.raises(ModelStoreError, match="no file sha256s in its metadata"):
        ModelStore.load(Settings(bento_models=("foreign:v1",)))


def test_export_gives_back_a_folder_the_service_serves(
    store: Path, models: Path, tmp_path: Path
) -> None:
    tag = import_folder(models / "tiny-b")
    out = tmp_path / "exported"
    bento_models.export_folder(tag, out / "tiny-b")
    assert bento_models.folder_digests(out / "tiny-b") == bento_models.folder_digests(
        models / "tiny-b"
    )
    assert sorted(ModelStore.load(Settings(models_dir=out)).models) == ["tiny-b"]
    with pytest.raises(BentoModelError, match="not empty"):
        bento_models.export_folder(tag, out / "tiny-b")


@pytest.mark.slow
def test_command_line_in_its_own_bentoml_home(models: Path, tmp_path: Path) -> None:
    """The real command: a fresh process, BENTOML_HOME from the environment, bentoml's own CLI."""
    env = {"BENTOML_HOME": str(tmp_path / "home"), "BENTOML_DO_NOT_TRACK": "true", "PATH": ""}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service.bento_models", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = run("import", str(models / "tiny-a"))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith(" imported")
    again = run("import", str(models / "tiny-a"))
    assert again.stdout.strip() == first.stdout.strip().replace("imported", "already in the store")
    listed = run("list")
    assert listed.stdout.startswith(first.stdout.split()[0] + "\t4 files\t")
    (models / "tiny-b" / "model.json").write_text(json.dumps({"format": "gan-model/9"}))
    bad = run("import", str(models / "tiny-b"))
    assert bad.returncode == 1
    assert "error: " in bad.stderr and "format is 'gan-model/9'" in bad.stderr
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    shown = subprocess.run(
        [str(bentoml_cli), "models", "list", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert [m["tag"] for m in json.loads(shown.stdout)] == [first.stdout.split()[0]]
