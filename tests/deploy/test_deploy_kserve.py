"""deploy/kserve/inferenceservice.yaml: a KServe InferenceService whose container, port, probes
and settings agree with the image and the service (probe paths answered by the real app)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from deploy_support import REPO, arg_defaults, check_settings, env_of, kustomize, parse_dockerfile
from fixtures.in_process import serve
from prometheus_client import CollectorRegistry

from service.auth import HEALTH_PATHS

MANIFEST = REPO / "deploy" / "kserve" / "inferenceservice.yaml"
RUNTIME = parse_dockerfile(REPO / "Dockerfile").stage("runtime")
IMAGE_ENV = env_of(RUNTIME)
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


@pytest.fixture(scope="module")
def isvc() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    assert len(docs) == 1
    doc: dict[str, Any] = docs[0]
    return doc


def _container(isvc: dict[str, Any]) -> dict[str, Any]:
    containers = isvc["spec"]["predictor"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def test_is_an_inference_service_with_one_custom_predictor(isvc: dict[str, Any]) -> None:
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["kind"] == "InferenceService"
    container = _container(isvc)
    assert container["name"] == "kserve-container"  # what KServe requires of a custom predictor
    predictor = isvc["spec"]["predictor"]
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]


def _pod(container: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gan-service"},
        "spec": {"containers": [container]},
    }


def test_container_is_a_valid_kubernetes_container(isvc: dict[str, Any]) -> None:
    # KServe's predictor containers are core/v1 Containers: checked against that schema.
    container = _container(isvc)
    kubernetes_validate.validate(_pod(container), kubernetes_validate.latest_version(), strict=True)
    broken = copy.deepcopy(container)
    broken["readinessProbe"]["httpGet"]["pth"] = broken["readinessProbe"]["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(
            _pod(broken), kubernetes_validate.latest_version(), strict=True
        )


def test_port_image_and_settings_match_the_image(isvc: dict[str, Any]) -> None:
    container = _container(isvc)
    (port,) = container["ports"]  # Knative allows one
    assert port["containerPort"] == int(IMAGE_ENV["BENTOML_PORT"])
    assert port["name"] == "http1"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["BENTOML_PORT"] == IMAGE_ENV["BENTOML_PORT"]
    assert env["GAN_MODELS_DIR"] == IMAGE_ENV["GAN_MODELS_DIR"]
    check_settings(env)
    assert container["securityContext"]["runAsUser"] == int(arg_defaults(RUNTIME)["UID"])
    # The same image deploy/k8s deploys.
    k8s_images = {
        c["image"].rsplit(":", 1)[0]
        for d in kustomize(REPO / "deploy" / "k8s" / "overlays" / "cpu")
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert container["image"].rsplit(":", 1)[0] in k8s_images


def test_probes_are_v2_health_paths_the_service_answers(
    isvc: dict[str, Any], tiny_models_dir: Path
) -> None:
    container = _container(isvc)
    paths = set()
    for name in PROBES:
        get = container[name]["httpGet"]
        assert get["port"] == container["ports"][0]["containerPort"]
        assert get["path"].startswith("/v2/health/")
        paths.add(get["path"])
    # kubelet sends no API key: the probe paths must stay open when GAN_API_KEY is set.
    assert paths <= HEALTH_PATHS

    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        for path in sorted(paths):
            r = await client.get(path)
            assert r.status_code == 200, (path, r.text)

    serve(tiny_models_dir, scenario, api_keys=("k" * 24,))
