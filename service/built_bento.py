"""What a built Bento tells the service: its bentofile's envs and models; and build-time values.

``bentoml serve gan_service:latest`` (BentoML 1.4.40) does not apply the bentofile's ``envs``:
they reach only the Dockerfile that ``bentoml containerize`` writes (``ENV``) and BentoCloud;
``bentoml serve`` applies only the envs declared in ``@bentoml.service(envs=...)``, and only to
its workers. So ``apply_defaults`` reads them from the Bento's ``bento.yaml`` and sets each one
the environment does not set already, which is the precedence a container gives them (``ENV``,
overridden by ``docker run -e``). The models the Bento packs (the bentofile's ``models:``) become
the default ``GAN_BENTO_MODELS``, unless ``GAN_BENTO_MODELS`` or ``GAN_MODELS_DIR`` is set.

Outside a built Bento (a checkout, the Dockerfile's image) nothing here changes anything.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, Literal

import yaml

log = logging.getLogger("gan.built_bento")

BENTO_YAML = "bento.yaml"
# A Bento's layout (BentoML's bento store, `bentoml export`, the containerized /home/bentoml/bento):
# bento.yaml beside src/, the build context's files under src/.
SOURCE_DIR = "src"


def bento_root(module_file: str | Path = __file__) -> Path | None:
    """The built Bento this code runs from, or None when it runs from anywhere else."""
    source = Path(module_file).resolve().parents[1]
    if source.name == SOURCE_DIR and (source.parent / BENTO_YAML).is_file():
        return source.parent
    return None


def bento_info(root: Path) -> dict[str, Any]:
    info = yaml.safe_load((root / BENTO_YAML).read_text(encoding="utf-8"))
    return info if isinstance(info, dict) else {}


def packed_models(info: dict[str, Any]) -> list[str]:
    """The tags (name:version) of the models the Bento packs, in the bentofile's order."""
    tags: list[str] = []
    declared = list(info.get("models") or [])
    for service in info.get("services") or []:
        declared.extend(service.get("models") or [])
    for model in declared:
        if model.get("registry", "bentoml") != "bentoml":
            continue
        tag = str(model["tag"])
        if tag not in tags:
            tags.append(tag)
    return tags


def apply_defaults(
    environ: MutableMapping[str, str] | None = None, root: Path | None = None
) -> dict[str, str]:
    """Set the Bento's envs and models where the environment leaves them unset; what was set."""
    env = os.environ if environ is None else environ
    root = root or bento_root()
    if root is None:
        return {}
    info = bento_info(root)
    applied: dict[str, str] = {}
    for item in info.get("envs") or []:
        name, value = str(item.get("name", "")), item.get("value")
        if not name or value is None or item.get("stage", "all") == "build":
            continue
        if name not in env:
            env[name] = applied[name] = str(value)
    tags = packed_models(info)
    if tags and not (
        env.get("GAN_BENTO_MODELS", "").strip() or env.get("GAN_MODELS_DIR", "").strip()
    ):
        env["GAN_BENTO_MODELS"] = applied["GAN_BENTO_MODELS"] = ",".join(tags)
    if applied:
        log.info("defaults from %s: %s", root / BENTO_YAML, applied)
    return applied


def building_bento() -> bool:
    """Whether this import is ``bentoml build`` (CLI or ``bentoml.build``) importing the service.

    BentoML offers no flag for it; the build is the one caller that imports the service from
    inside its ``Bento.create``. tests/deploy/test_deploy_bento_build.py runs a real build, so a
    BentoML that moves it fails there, not silently.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if (
            frame.f_code.co_name == "create"
            and frame.f_globals.get("__name__") == "bentoml._internal.bento.bento"
        ):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def service_workers(
    resolved: int | None, environ: MutableMapping[str, str] | None = None
) -> int | str | None:
    """``@bentoml.service(workers=...)``: the resolved count, except in ``bentoml build`` with
    ``GAN_WORKERS`` unset or ``auto``.

    ``bentoml build`` writes the service's config into the Bento's bento.yaml, so an auto count
    would be the build machine's CPUs. There the Bento records BentoML's own "decided where it
    runs", ``cpu_count``; ``bentoml serve`` of the Bento imports this module again on the serving
    machine, and that import passes the count resolved there (one per CPU up to 8, one on a GPU:
    ``Settings.resolved``), which is what it runs.
    """
    env = os.environ if environ is None else environ
    explicit = env.get("GAN_WORKERS", "").strip().lower() not in ("", "auto")
    if explicit or not building_bento():
        return resolved
    cpu_count: Literal["cpu_count"] = "cpu_count"
    return cpu_count
