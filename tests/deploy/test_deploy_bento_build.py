"""A real `bentoml build` of both bentofiles in a BENTOML_HOME of its own, after importing the
bundled models (`python -m service.bento_models import`), then `bentoml serve gan_service:latest`
of the built Bento: it packs the models, records no build-machine worker count, and, served,
loads its packed models from the store with the bentofile's envs applied.

The one change to the bentofiles: `python.lock_packages: false`, since locking asks PyPI for every
package (docs/deploy.md records a locked build).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from deploy_support import REPO
from integration.server_process import Server, free_port, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent
BENTOFILES = {"cpu": REPO / "bentofile.yaml", "gpu": REPO / "deploy/bento/bentofile.gpu.yaml"}
BUNDLED = [
    REPO / "models" / name
    for name in ("mnist-dcgan", "fashion-dcgan", "stacked-mnist", "cifar10-cgan")
]


@dataclass
class Home:
    path: Path
    env: dict[str, str]
    tags: list[str]  # the imported models, mnist-dcgan first

    def run(self, *args: str, cwd: Path = REPO) -> str:
        result = subprocess.run(
            list(args), cwd=cwd, env=self.env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    path = tmp_path_factory.mktemp("bentoml-home")
    env = {
        # GAN_WORKERS unset on purpose: the automatic count is what a build must not freeze.
        **{k: v for k, v in os.environ.items() if not k.startswith(("GAN_", "BENTOML_"))},
        "BENTOML_HOME": str(path),
        "BENTOML_DO_NOT_TRACK": "true",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    home = Home(path, env, [])
    out = home.run(sys.executable, "-m", "service.bento_models", "import", *map(str, BUNDLED))
    home.tags = [line.split()[0] for line in out.splitlines()]
    assert [t.partition(":")[0] for t in home.tags] == [
        "mnist-dcgan",
        "fashion-dcgan",
        "stacked-mnist",
        "cifar10-cgan",
    ]
    return home


@pytest.fixture(scope="module")
def built(home: Home, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """variant -> `bentoml get NAME:latest -o yaml` of the Bento built from that bentofile."""
    infos = {}
    for variant, bentofile in BENTOFILES.items():
        config = yaml.safe_load(bentofile.read_text())
        config["python"]["lock_packages"] = False
        unlocked = tmp_path_factory.mktemp("bentofile") / "bentofile.yaml"
        unlocked.write_text(yaml.safe_dump(config, sort_keys=False))
        home.run(str(BIN / "bentoml"), "build", "-f", str(unlocked), str(REPO))
        infos[variant] = yaml.safe_load(
            home.run(str(BIN / "bentoml"), "get", f"{config['name']}:latest", "-o", "yaml")
        )
    return infos


def test_the_bento_packs_the_imported_models(home: Home, built: dict[str, Any]) -> None:
    for info in built.values():
        assert [m["tag"] for m in info["models"]] == home.tags  # `latest` resolved, in order
    listed = json.loads(home.run(str(BIN / "bentoml"), "list", "-o", "json"))
    sizes = {b["tag"].partition(":")[0]: b["model_size"] for b in listed}
    assert set(sizes) == {"gan_service", "gan_service_gpu"}
    for size in sizes.values():
        number, unit = size.split()
        assert unit == "MiB" and float(number) > 10, size  # two models of ~7.6 MiB


def test_the_bento_records_no_worker_count_of_the_build_machine(built: dict[str, Any]) -> None:
    for info in built.values():
        (service,) = info["services"]
        # not available_cpus() (2 on CI), nor any other number: decided where it is served
        assert service["config"]["workers"] == "cpu_count", service["config"]


def test_the_bento_keeps_the_bentofiles_envs_and_no_model_files(
    home: Home, built: dict[str, Any]
) -> None:
    provider = {
        v: {e["name"]: e["value"] for e in i["envs"]}["GAN_PROVIDER"] for v, i in built.items()
    }
    assert provider == {"cpu": "cpu", "gpu": "cuda"}
    src = home.path / "bentos" / "gan_service" / built["cpu"]["version"] / "src"
    assert (src / "service" / "service.py").is_file()
    assert not (src / "models").exists()  # the models are in the store, once


def _serve(target: str, env: dict[str, str], cwd: Path, *, cpus: set[int] | None = None) -> Server:
    port = free_port()
    log_path = cwd / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "bentoml"), "serve", target, *("--host", "127.0.0.1", "--port", str(port))],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
        )
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_ready(server, timeout=120)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def served(home: Home, built: dict[str, Any]) -> Iterator[tuple[Server, dict[str, Any]]]:
    """`bentoml serve gan_service:latest` from outside the checkout, on one CPU: the Bento's own
    code, models and envs, and a worker count decided here and now."""
    server = _serve("gan_service:latest", home.env, home.path, cpus={min(os.sched_getaffinity(0))})
    try:
        yield server, httpx.get(f"{server.url}/models", timeout=10).json()
    finally:
        server.stop()


def test_served_bento_loads_its_packed_models_from_the_store(
    home: Home, served: tuple[Server, dict[str, Any]]
) -> None:
    server, listing = served
    assert listing["default"] == "mnist-dcgan"
    assert {m["name"]: m["source"] for m in listing["models"]} == {
        tag.partition(":")[0]: f"bentoml:{tag}" for tag in home.tags
    }
    assert listing["broken"] == []
    assert listing["settings"]["bento_models"] == home.tags
    reply = httpx.post(f"{server.url}/generate", json={"seed": 7, "n": 2}, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "mnist-dcgan"


def test_served_bento_applies_the_bentofiles_envs(served: tuple[Server, dict[str, Any]]) -> None:
    _, listing = served
    # GAN_PROVIDER is not in the server's environment: only the bentofile says cpu (default auto)
    assert listing["requested_provider"] == "cpu"
    assert listing["settings"]["provider"] == "cpu"


def test_served_bento_counts_its_workers_where_it_runs(
    served: tuple[Server, dict[str, Any]],
) -> None:
    server, listing = served
    assert listing["settings"]["workers"] == 1  # one CPU here, whatever the build machine had
    # The supervisor's count of the worker processes that run; it may log just after /readyz.
    deadline = time.monotonic() + 60
    while "worker(s) serving" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "1 worker(s) serving" in server.log()


def test_an_exported_bento_carries_its_models(
    home: Home, built: dict[str, Any], tmp_path: Path
) -> None:
    """`bentoml export` (what containerize and BentoCloud ship) holds the models themselves: the
    extracted Bento serves them with an empty BENTOML_HOME, from its own models/ folder."""
    archive = tmp_path / "gan_service.bento"
    home.run(str(BIN / "bentoml"), "export", "gan_service:latest", str(archive))
    bento = tmp_path / "bento"
    bento.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(bento, filter="data")
    assert sorted(p.name for p in (bento / "models").iterdir()) == [
        "cifar10-cgan",
        "fashion-dcgan",
        "mnist-dcgan",
        "stacked-mnist",
    ]
    empty = {**home.env, "BENTOML_HOME": str(tmp_path / "empty-home")}
    server = _serve(str(bento), empty, tmp_path)
    try:
        listing = httpx.get(f"{server.url}/models", timeout=10).json()
    finally:
        server.stop()
    assert [m["source"] for m in listing["models"]] == sorted(f"bentoml:{t}" for t in home.tags)
    assert listing["requested_provider"] == "cpu"
    assert not (tmp_path / "empty-home" / "models" / "mnist-dcgan").exists()
