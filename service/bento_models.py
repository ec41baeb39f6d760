"""Model folders in BentoML's model store: import, list, export, and locate them for the service.

``python -m service.bento_models import models/mnist-dcgan`` makes the folder a versioned BentoML
model (``bentoml models list`` shows it), so that ``bentoml build`` packs it into a Bento and
``GAN_BENTO_MODELS=mnist-dcgan:latest`` serves it. The store keeps the folder's files unchanged
(model.json, the ONNX graphs, README, samples) and, in the model's metadata, the sha256 of every
one of them: the service checks them all before it loads the model (``model_store.py``).

The version, unless ``--version`` is given, is a digest of the files' names and sha256s: the
same folder imported twice is the same model version (nothing is written the second time), and
a changed file makes a new version. bentoml, numpy and onnxruntime only: never torch.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException, NotFound

from contract.files import sha256_file
from contract.manifest import ManifestError, read_manifest

# Where our metadata sits in a BentoML model's model.yaml, and the label that marks our models.
DIGESTS_KEY = "sha256"
LABELS = {"project": "gan-service"}
# BentoML's own file in every stored model's folder; not one of the model folder's files.
BENTO_MODEL_FILE = "model.yaml"
VERSION_CHARS = 16


class BentoModelError(RuntimeError):
    """A folder cannot be imported, or a tag cannot be served; the message says why."""


@dataclass(frozen=True)
class StoredFolder:
    """A model folder held in BentoML's store: served as ``name``, its files under ``path``."""

    name: str
    tag: str  # name:version, the version resolved (never "latest")
    path: Path
    digests: Mapping[str, str]  # relative file path -> sha256, recorded at import


def folder_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file of a model folder (hidden files and caches left out), by relative path."""
    digests: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if path.is_file():
            digests[rel.as_posix()] = sha256_file(path)
    return digests


def content_version(digests: Mapping[str, str]) -> str:
    """The default version: the same files give the same version, on any machine."""
    listing = "".join(f"{name}\0{sha}\n" for name, sha in sorted(digests.items()))
    return hashlib.sha256(listing.encode()).hexdigest()[:VERSION_CHARS]


def check_folder(folder: Path) -> dict[str, str]:
    """Validate a model folder as the service would (manifest, ONNX sha256s); its digests."""
    if not folder.is_dir():
        raise BentoModelError(f"{folder}: not a folder")
    try:
        manifest = read_manifest(folder)
    except ManifestError as exc:
        raise BentoModelError(f"{folder} is not a valid model folder: {exc}") from None
    digests = folder_digests(folder)
    for spec in (manifest.generator, manifest.discriminator):
        actual = digests.get(spec.file)
        if actual is None:
            raise BentoModelError(f"{folder / spec.file}: missing (model.json names it)")
        if actual != spec.sha256:
            raise BentoModelError(
                f"{folder / spec.file}: sha256 {actual} does not match model.json "
                f"({spec.sha256}); the file was changed or truncated after export: not imported"
            )
    return digests


def import_folder(folder: Path, name: str | None = None, version: str | None = None) -> str:
    """Copy a checked model folder into BentoML's store; its tag. Idempotent for the same files."""
    digests = check_folder(folder)
    manifest = read_manifest(folder)
    tag = _tag(name or folder.resolve().name, version or content_version(digests))
    existing = _stored_or_none(tag)
    if existing is not None:
        if existing.info.metadata.get(DIGESTS_KEY) == digests:
            return str(existing.tag)
        raise BentoModelError(
            f"{tag} is already in the store with other files: pass another --version, or "
            f"`bentoml models delete {tag}` first"
        )
    metadata: dict[str, Any] = {
        DIGESTS_KEY: digests,
        "format": manifest.raw.get("format"),
        "manifest_name": manifest.name,
        "source": str(folder.resolve()),
    }
    labels = {**LABELS, "format": str(manifest.raw.get("format"))}
    with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
        target = Path(model.path)
        for rel in digests:
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / rel, target / rel)
        copied = folder_digests(target)
        copied.pop(BENTO_MODEL_FILE, None)
        if copied != digests:  # a file changed while it was copied: refuse to save the model
            raise BentoModelError(f"{folder}: files changed during the import; try again")
    return tag


def locate(tag: str) -> StoredFolder:
    """The stored folder of a tag (``name`` means ``name:latest``), before any file is checked."""
    try:
        model = bentoml.models.get(tag)
    except NotFound:
        raise BentoModelError(
            f"GAN_BENTO_MODELS: {tag!r} is not in BentoML's model store "
            f"(BENTOML_HOME={os.environ.get('BENTOML_HOME', '~/bentoml')}); import it with "
            f"`python -m service.bento_models import models/NAME`, or list what is there "
            "with `python -m service.bento_models list`"
        ) from None
    except BentoMLException as exc:
        raise BentoModelError(f"GAN_BENTO_MODELS: {tag!r}: {exc}") from None
    digests = model.info.metadata.get(DIGESTS_KEY)
    if not isinstance(digests, dict) or not digests:
        raise BentoModelError(
            f"GAN_BENTO_MODELS: {model.tag} has no file sha256s in its metadata: it was not "
            "imported by `python -m service.bento_models import`"
        )
    files = {str(rel): str(sha) for rel, sha in digests.items()}
    return StoredFolder(model.tag.name, str(model.tag), Path(model.path), files)


def check_digests(stored: StoredFolder) -> None:
    """Every file recorded at import is there, unchanged; ``BentoModelError`` names the first that
    is not."""
    for rel, expected in sorted(stored.digests.items()):
        path = stored.path / rel
        if not path.is_file():
            raise BentoModelError(f"{stored.tag}: {path} is missing from the model store")
        actual = sha256_file(path)
        if actual != expected:
            raise BentoModelError(
                f"{stored.tag}: {path}: sha256 {actual} differs from the one recorded at import "
                f"({expected}); the store's copy was changed"
            )


def export_folder(tag: str, out: Path) -> Path:
    """Copy a stored model back out as a plain model folder (what GAN_MODELS_DIR serves)."""
    stored = locate(tag)
    check_digests(stored)
    if out.exists() and any(out.iterdir()):
        raise BentoModelError(f"{out}: exists and is not empty")
    for rel in stored.digests:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stored.path / rel, out / rel)
    return out


def gan_models() -> list[bentoml.Model]:
    """The models in the store that this module imported."""
    return [m for m in bentoml.models.list() if DIGESTS_KEY in m.info.metadata]


def _tag(name: str, version: str) -> str:
    from service.settings import SettingsError, parse_bento_tags

    tag = f"{name}:{version}"
    try:
        parse_bento_tags("--name/--version", tag)
    except SettingsError as exc:
        raise BentoModelError(str(exc)) from None
    if version == "latest":
        raise BentoModelError("--version latest is reserved: BentoML resolves it to the newest")
    return tag


def _stored_or_none(tag: str) -> bentoml.Model | None:
    try:
        return bentoml.models.get(tag)
    except NotFound:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.bento_models",
        description="Model folders in BentoML's model store (BENTOML_HOME/models).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("import", help="import model folders as BentoML models")
    add.add_argument("folders", type=Path, nargs="+", metavar="FOLDER")
    add.add_argument("--name", help="model name (default: the folder's name; one folder only)")
    add.add_argument(
        "--version", help="model version (default: a digest of the folder's files; one folder only)"
    )
    commands.add_parser("list", help="list the models imported here")
    out = commands.add_parser("export", help="copy a stored model out as a model folder")
    out.add_argument("tag", help="name or name:version")
    out.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "import":
            if len(args.folders) > 1 and (args.name or args.version):
                parser.error("--name and --version name one model: give one folder")
            before = {str(m.tag) for m in gan_models()}
            for folder in args.folders:
                tag = import_folder(folder, args.name, args.version)
                print(f"{tag} {'already in the store' if tag in before else 'imported'}")
        elif args.command == "list":
            for model in gan_models():
                meta: dict[str, Any] = dict(model.info.metadata)
                print(f"{model.tag}\t{len(meta[DIGESTS_KEY])} files\t{meta.get('source', '')}")
        else:
            print(export_folder(args.tag, args.out))
    except BentoModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
