"""deploy/scripts and `make image`: shell syntax, shellcheck, argument checks, requirements.py.

These never build an image (no buildah or docker in CI); they check what can go wrong before one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_support import REPO, tool

SCRIPTS = sorted((REPO / "deploy" / "scripts").glob("*.sh"))


def test_scripts_exist() -> None:
    assert {p.name for p in SCRIPTS} >= {"build-image.sh", "build-base-image.sh"}
    for script in SCRIPTS:
        assert os.access(script, os.X_OK), f"{script} is not executable"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script: Path) -> None:
    result = subprocess.run(
        [tool("shellcheck"), "--severity=style", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/bash\nrm -rf $DIR/*\n")
    result = subprocess.run([tool("shellcheck"), str(bad)], capture_output=True, check=False)
    assert result.returncode != 0


def _build(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "deploy/scripts/build-image.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def test_build_image_rejects_bad_arguments() -> None:
    result = _build({"VARIANT": "tpu"})
    assert result.returncode == 2 and "VARIANT must be cpu or gpu" in result.stderr
    result = _build({"ENGINE": "kaniko"})
    assert result.returncode == 2 and "ENGINE must be" in result.stderr


def test_make_image_runs_the_build_script() -> None:
    result = subprocess.run(
        ["make", "-n", "image", "VARIANT=gpu", "IMAGE=x:y"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "IMAGE=x:y VARIANT=gpu deploy/scripts/build-image.sh" in result.stdout


def test_requirements_script() -> None:
    script = REPO / "deploy/docker/requirements.py"
    out = subprocess.run(
        [sys.executable, str(script), "--extra", "cpu", str(REPO / "pyproject.toml")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert out[0].startswith("bentoml==") and out[-1].startswith("onnxruntime")
    bad = subprocess.run(
        [sys.executable, str(script), "--extra", "train-all", str(REPO / "pyproject.toml")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert bad.returncode != 0 and "no extra 'train-all'" in bad.stderr
