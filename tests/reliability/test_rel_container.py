"""The serving container runs as non-root and bakes in no secret (static checks of the
Dockerfile and the Kubernetes manifests; building the image needs a daemon, see docs/deploy.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DEPLOYMENT = REPO / "deploy" / "k8s" / "base" / "deployment.yaml"


def _final_stage(text: str) -> str:
    stages = re.split(r"(?im)^FROM\s", text)
    return stages[-1]


@pytest.mark.skipif(not DOCKERFILE.is_file(), reason="no Dockerfile in this checkout")
def test_image_runs_as_a_numeric_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    stage = _final_stage(text)
    users = re.findall(r"(?im)^USER\s+(\S+)", stage)
    assert users, "the serving stage has no USER: it would run as root"
    user = users[-1].split(":")[0]
    if user.startswith("${"):
        arg = user.strip("${}")
        default = re.search(rf"(?im)^ARG\s+{arg}=(\d+)", text)
        assert default, f"USER {user} without a numeric ARG default"
        user = default.group(1)
    assert user.isdigit() and int(user) != 0, f"USER {user}: use a numeric non-zero UID"


@pytest.mark.skipif(not DOCKERFILE.is_file(), reason="no Dockerfile in this checkout")
def test_image_bakes_in_no_api_key_and_probes_an_open_path() -> None:
    text = DOCKERFILE.read_text()
    assert not re.search(r"(?im)^\s*(ENV|ARG)\b.*GAN_API_KEY", text), (
        "an API key in ENV/ARG ends up in the image history: pass it at run time"
    )
    healthcheck = re.search(r"(?ms)^HEALTHCHECK.*?(?:\n\n|\Z)", text)
    if healthcheck:
        assert re.search(r"/(readyz|livez)\b", healthcheck.group(0)), (
            "the HEALTHCHECK must use a probe that needs no API key (/livez or /readyz)"
        )


@pytest.mark.skipif(not DEPLOYMENT.is_file(), reason="no Kubernetes manifests in this checkout")
def test_kubernetes_pod_is_non_root_and_probes_open_paths() -> None:
    text = DEPLOYMENT.read_text()
    assert "runAsNonRoot: true" in text
    assert re.search(r"runAsUser:\s*[1-9]\d*", text)
    assert "allowPrivilegeEscalation: false" in text
    probes = re.findall(
        r"(?:startup|liveness|readiness)Probe:\s*\n(?:.*\n){0,3}?\s*path:\s*(\S+)", text
    )
    assert probes and set(probes) <= {"/livez", "/readyz", "/healthz"}, probes
    without_comments = re.sub(r"(?m)^\s*#.*$", "", text)
    assert "GAN_API_KEY" not in without_comments or "secretKeyRef" in without_comments
