"""The labels of ``gan_model_info``: one series per model folder, loaded or broken.

The manifest (``gan-model/2``) has no version field, so ``version`` is the first 12 hex digits
of the sha256 of the manifest itself (its JSON with sorted keys and no spaces): it changes
whenever anything the service loads changes (either graph's sha256, the realness calibration,
the classes), which the generator's sha256 alone would not. ``sha256`` is the generator's, the
graph that makes the images, as model.json declares it (and the loader checked).

A broken folder gets ``state="broken"`` and whatever its manifest still says (nothing when the
manifest itself is the problem), so an alert names the export that failed, not just the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

from contract.manifest import Manifest, ManifestError, read_manifest
from service.model_store import BrokenModel, LoadedModel, ModelStore

LABELS = (
    "model",
    "state",
    "version",
    "sha256",
    "discriminator_sha256",
    "format",
    "architecture",
    "loss",
    "conditional",
    "default",
    "provider",
)
VERSION_DIGITS = 12


def manifest_version(raw: dict[str, Any]) -> str:
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:VERSION_DIGITS]


def _from_manifest(manifest: Manifest) -> dict[str, str]:
    return {
        "version": manifest_version(manifest.raw),
        "sha256": manifest.generator.sha256,
        "discriminator_sha256": manifest.discriminator.sha256,
        "format": str(manifest.raw.get("format", "")),
        "architecture": str(manifest.raw.get("architecture", "")),
        "loss": manifest.loss,
        "conditional": str(manifest.conditional).lower(),
    }


def _loaded(model: LoadedModel, default: str) -> dict[str, str]:
    return {
        **dict.fromkeys(LABELS, ""),
        **_from_manifest(model.manifest),
        "model": model.name,
        "state": "loaded",
        "default": str(model.name == default).lower(),
        "provider": model.providers[0],
    }


def _broken(model: BrokenModel) -> dict[str, str]:
    labels = {**dict.fromkeys(LABELS, ""), "model": model.name, "state": "broken"}
    # When the manifest is what is broken, the folder name is all there is.
    with contextlib.suppress(ManifestError, OSError):
        labels.update(_from_manifest(read_manifest(model.directory)))
    labels["default"] = "false"  # a broken default model stops the server instead
    return labels


def model_info_labels(store: ModelStore) -> list[dict[str, str]]:
    """One label set per model folder of ``store``, sorted by name."""
    rows = [_loaded(m, store.default_name) for m in store.models.values()]
    rows += [_broken(b) for b in store.broken.values()]
    return sorted(rows, key=lambda r: r["model"])
