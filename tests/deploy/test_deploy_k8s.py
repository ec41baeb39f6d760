"""deploy/k8s: render each overlay with kustomize, validate against the Kubernetes schemas, and
check that probes, ports, env names and security settings agree with the image and the service.
"""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import kubernetes_validate
import pytest
from deploy_support import (
    COMPONENTS,
    K8S,
    OVERLAYS,
    REPO,
    arg_defaults,
    check_settings,
    container_env,
    containers,
    env_of,
    kustomize,
    one,
    parse_dockerfile,
    settings_env_names,
    with_components,
)

# The oldest Kubernetes minor still commonly run, and the newest the validator knows.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CRD_KINDS = {"ServiceMonitor"}  # no schema bundled: checked by hand below
RUNTIME = parse_dockerfile(REPO / "Dockerfile").stage("runtime")
IMAGE_ENV = env_of(RUNTIME)
IMAGE_UID = int(arg_defaults(RUNTIME)["UID"])
CONTAINER_PORT = int(IMAGE_ENV["BENTOML_PORT"])


_RENDERED: dict[str, list[dict[str, Any]]] = {}


def render(name: str, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """``cpu``/``gpu``: the overlay; ``cpu+components``: it plus every opt-in component."""
    if name not in _RENDERED:
        if name.endswith("+components"):
            overlay = name.removesuffix("+components")
            tmp = tmp_path_factory.mktemp(f"k8s-{overlay}")
            _RENDERED[name] = kustomize(with_components(tmp, overlay))
        else:
            _RENDERED[name] = kustomize(K8S / "overlays" / name)
    return copy.deepcopy(_RENDERED[name])


TREES = (*OVERLAYS, *(f"{o}+components" for o in OVERLAYS))
WITH_COMPONENTS = tuple(t for t in TREES if t.endswith("+components"))


@pytest.fixture(scope="module", params=TREES)
def tree(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return SimpleNamespace(name=request.param, docs=render(request.param, tmp_path_factory))


@pytest.fixture(scope="module", params=WITH_COMPONENTS)
def full_tree(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return SimpleNamespace(name=request.param, docs=render(request.param, tmp_path_factory))


def test_every_file_is_used() -> None:
    """Each YAML file under deploy/k8s is a kustomization or listed by one."""
    listed: set[Path] = set()
    import yaml

    for kfile in K8S.rglob("kustomization.yaml"):
        listed.add(kfile)
        spec = yaml.safe_load(kfile.read_text())
        for entry in spec.get("resources", []) + [p["path"] for p in spec.get("patches", [])]:
            path = (kfile.parent / entry).resolve()
            if path.is_file():
                listed.add(path)
    files = {p.resolve() for p in K8S.rglob("*.yaml")}
    assert files - listed == set()


def test_components_are_components() -> None:
    import yaml

    for name in COMPONENTS:
        spec = yaml.safe_load((K8S / "components" / name / "kustomization.yaml").read_text())
        assert spec["kind"] == "Component"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_schema_valid(tree: Any, version: str) -> None:
    for doc in tree.docs:
        if doc["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)


def test_schema_check_can_fail(tree: Any) -> None:
    deployment = copy.deepcopy(one(tree.docs, "Deployment"))
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["pth"] = probe["httpGet"].pop("path")  # a typo a reviewer could miss
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_expected_objects(tree: Any) -> None:
    kinds = sorted(d["kind"] for d in tree.docs)
    expected = [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
    ]
    if tree.name.endswith("+components"):
        expected += ["PersistentVolumeClaim", "ServiceMonitor"]
    assert kinds == sorted(expected)


def test_probes_and_ports_match_the_service(tree: Any) -> None:
    from bentoml._internal.server.base_app import BaseAppFactory

    # BentoML's own health and metrics routes, which every bentoml serve process has.
    stub = SimpleNamespace(livez=None, readyz=None, metrics=None)
    system_paths = {r.path for r in BaseAppFactory.get_system_routes(stub)}  # type: ignore[arg-type]
    assert {"/livez", "/readyz", "/metrics"} <= system_paths

    deployment = one(tree.docs, "Deployment")
    (container,) = containers(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": CONTAINER_PORT}
    env = container_env(container, tree.docs)
    assert int(env["BENTOML_PORT"]) == CONTAINER_PORT

    def probe_target(probe: dict[str, Any]) -> tuple[str, int]:
        get = probe["httpGet"]
        port = get["port"]
        return get["path"], ports[port] if isinstance(port, str) else port

    assert probe_target(container["livenessProbe"]) == ("/livez", CONTAINER_PORT)
    assert probe_target(container["startupProbe"]) == ("/livez", CONTAINER_PORT)
    assert probe_target(container["readinessProbe"]) == ("/readyz", CONTAINER_PORT)

    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == CONTAINER_PORT
    assert annotations["prometheus.io/path"] == "/metrics"

    service = one(tree.docs, "Service")
    (sport,) = service["spec"]["ports"]
    target = sport["targetPort"]
    assert (ports[target] if isinstance(target, str) else target) == CONTAINER_PORT


def test_probes_leave_the_supervisor_time_and_shutdown_covers_a_request(tree: Any) -> None:
    """Liveness must not restart a pod whose supervisor is replacing a hung worker (it kills it
    after GAN_WORKER_HANG_S, then a new one starts), and the grace period must cover the preStop
    sleep plus the longest request."""
    from service.settings import Settings

    defaults = Settings()
    deployment = one(tree.docs, "Deployment")
    (container,) = containers(deployment)
    live = container["livenessProbe"]
    worker_start_s = 15  # measured: 3-10 s on the loaded 2-core box (docs/reliability.md)
    assert (
        live["periodSeconds"] * live["failureThreshold"] > defaults.worker_hang_s + worker_start_s
    )
    assert container["readinessProbe"]["timeoutSeconds"] <= 5
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= int(sleep[-1]) + defaults.request_timeout_s + 5


def test_selectors_and_references(tree: Any) -> None:
    deployment = one(tree.docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector and selector.items() <= pod_labels.items()
    service = one(tree.docs, "Service")
    assert service["spec"]["selector"] and service["spec"]["selector"].items() <= pod_labels.items()
    pdb = one(tree.docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    hpa = one(tree.docs, "HorizontalPodAutoscaler")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    # The HPA scales on CPU utilisation, which needs a CPU request to be a percentage of.
    (container,) = containers(deployment)
    assert "cpu" in container["resources"]["requests"]


def test_settings_env_is_what_the_service_reads(tree: Any, tmp_path: Path) -> None:
    (container,) = containers(one(tree.docs, "Deployment"))
    env = container_env(container, tree.docs)
    gan = {k for k in env if k.startswith("GAN_")}
    unknown = gan - settings_env_names()
    assert not unknown, f"GAN_* names the service does not read: {sorted(unknown)}"
    if "GAN_API_KEY_FILE" in env:  # the Secret's file: stand in a valid key for the check
        key_file = tmp_path / "api-key"
        key_file.write_text("k" * 40 + "\n")
        env["GAN_API_KEY_FILE"] = str(key_file)
    check_settings(env)  # and it accepts the values
    # BentoML reads these two itself; they must match the image's.
    assert env["BENTOML_HOME"] == IMAGE_ENV["BENTOML_HOME"]
    assert env["BENTOML_PORT"] == IMAGE_ENV["BENTOML_PORT"]


def test_non_root_read_only_with_writable_tmp(tree: Any) -> None:
    deployment = one(tree.docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    (container,) = containers(deployment)
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    env = container_env(container, tree.docs)
    assert env["BENTOML_HOME"].startswith("/tmp/"), "BentoML must write under the /tmp mount"
    # The models folder is the image's, or a read-only mounted volume.
    models_dir = env["GAN_MODELS_DIR"]
    if models_dir != IMAGE_ENV["GAN_MODELS_DIR"]:
        assert mounts[models_dir].get("readOnly") is True


def test_resources_requested_and_limited(tree: Any) -> None:
    (container,) = containers(one(tree.docs, "Deployment"))
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    for key in ("cpu", "memory"):
        assert key in requests and key in limits
    assert _quantity(requests["cpu"]) <= _quantity(limits["cpu"])
    assert _quantity(requests["memory"]) <= _quantity(limits["memory"])


def test_gpu_variant(tree: Any) -> None:
    deployment = one(tree.docs, "Deployment")
    (container,) = containers(deployment)
    env = container_env(container, tree.docs)
    gpu = tree.name.startswith("gpu")
    limits = container["resources"]["limits"]
    if gpu:
        assert limits["nvidia.com/gpu"] == 1
        assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
        assert env["GAN_PROVIDER"] == "cuda"
        assert container["image"].endswith(":gpu")
        assert deployment["metadata"]["name"].endswith("-gpu")
        tolerations = deployment["spec"]["template"]["spec"]["tolerations"]
        assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)
    else:
        assert "nvidia.com/gpu" not in limits
        assert env["GAN_PROVIDER"] == "cpu"


def test_servicemonitor_scrapes_the_service(full_tree: Any) -> None:
    tree = full_tree
    monitor = one(tree.docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = one(tree.docs, "Service")
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"


def test_api_key_component(full_tree: Any) -> None:
    deployment = one(full_tree.docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = containers(deployment)
    env = container_env(container, full_tree.docs)
    # Prometheus (annotations or ServiceMonitor) sends no key: /metrics must stay open.
    assert env["GAN_METRICS_PUBLIC"] == "true"
    key_file = Path(env["GAN_API_KEY_FILE"])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(key_file.parent))
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"]
    # The pod's group can read the Secret's file (fsGroup owns projected volumes).
    assert volume["secret"]["defaultMode"] & 0o040
    assert pod["securityContext"]["fsGroup"] == IMAGE_UID


def test_models_pvc_component(full_tree: Any) -> None:
    tree = full_tree
    deployment = one(tree.docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = containers(deployment)
    env = container_env(container, tree.docs)
    claim = one(tree.docs, "PersistentVolumeClaim")["metadata"]["name"]
    volume = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert volume["persistentVolumeClaim"]["claimName"] == claim
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert mount["mountPath"] == env["GAN_MODELS_DIR"] and mount["readOnly"] is True


def _quantity(value: str | int) -> float:
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.integration
def test_probe_paths_answer_on_a_real_server(
    tiny_models_dir: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """bentoml serve with the CPU Deployment's environment answers every path the manifests use."""
    docs = render("cpu", tmp_path_factory)
    deployment = one(docs, "Deployment")
    (container,) = containers(deployment)
    env = container_env(container, docs)
    port = _free_port()
    env.update(
        # Only what a laptop needs on top: a free port, a private home, the tiny models.
        BENTOML_PORT=str(port),
        BENTOML_HOST="127.0.0.1",
        BENTOML_HOME=str(tmp_path / "bentoml"),
        GAN_MODELS_DIR=str(tiny_models_dir),
        BENTOML_DO_NOT_TRACK="true",
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GAN_", "BENTOML_"))}
    paths = [
        container["livenessProbe"]["httpGet"]["path"],
        container["readinessProbe"]["httpGet"]["path"],
        container["startupProbe"]["httpGet"]["path"],
        deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"],
    ]
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("bentoml")), "serve", "service.service:GanService"],
        cwd=REPO,
        env={**base, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.25)
        for path in paths:
            assert httpx.get(url + path, timeout=5).status_code == 200, path
        reply = httpx.post(url + "/generate", json={"seed": 1, "n": 1}, timeout=30)
        assert reply.status_code == 200 and reply.json()["images"]
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=5)
        log.close()
