"""KServe's Python client in a virtual environment of its own, for tests/integration/test_api_oip*.

Why not in ``.venv`` beside bentoml: ``kserve`` pins ``protobuf<7`` and ``psutil<6`` (it would
downgrade what bentoml and onnx run on here) and pulls in a model server of its own (fastapi,
uvicorn, grpcio-tools, kubernetes, pandas). So the test builds a venv once from PyPI (about two
minutes, 450 MB), keyed by the pinned requirement (``[tool.gan.test-venvs]`` in
pyproject.toml), and reuses it after: ``GAN_KSERVE_VENV`` overrides where.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def requirements() -> list[str]:
    with (REPO / "pyproject.toml").open("rb") as f:
        pins: list[str] = tomllib.load(f)["tool"]["gan"]["test-venvs"]["kserve-client"]
    return pins


def venv_dir() -> Path:
    override = os.environ.get("GAN_KSERVE_VENV")
    if override:
        return Path(override)
    key = hashlib.sha256("\n".join(requirements()).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "gan-service" / f"kserve-client-{key}"


def kserve_python() -> Path:
    """The interpreter of a venv where ``import kserve`` works (built on first use)."""
    root = venv_dir()
    python = root / "bin" / "python"
    marker = root / ".complete"
    if not marker.is_file():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *requirements()],
            check=True,
            timeout=1200,
        )
        marker.write_text("\n".join(requirements()) + "\n")
    return python
