"""bentofile.yaml (CPU) and deploy/bento/bentofile.gpu.yaml: BentoML accepts them, they serve the
same service as the Dockerfile, ship service/ but neither training/ nor the model folders (the
models travel in BentoML's model store: the bentofile's `models:`), and install exactly pyproject's
dependencies plus the matching extra.

A real `bentoml build` and a `bentoml serve` of the Bento are in test_deploy_bento_build.py.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

import pytest
from bentoml._internal.bento.build_config import BentoBuildConfig, BentoPathSpec
from deploy_support import REPO, SERVICE_TARGET
from packaging.requirements import Requirement

pytestmark = pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning")

BENTOFILES = {"cpu": REPO / "bentofile.yaml", "gpu": REPO / "deploy/bento/bentofile.gpu.yaml"}


def _normalised(reqs: list[str]) -> set[str]:
    out = set()
    for text in reqs:
        req = Requirement(text)
        extras = ",".join(sorted(req.extras))
        out.add(f"{req.name.lower().replace('_', '-')}[{extras}]{req.specifier}")
    return out


@pytest.fixture(params=sorted(BENTOFILES))
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@cache
def load(variant: str) -> BentoBuildConfig:
    # BentoML's own loader: unknown keys and bad values raise here.
    return BentoBuildConfig.from_file(str(BENTOFILES[variant])).with_defaults()


def test_bentoml_accepts_the_bentofile(variant: str) -> None:
    config = load(variant)
    assert config.service == SERVICE_TARGET
    assert config.docker.python_version == "3.11"
    if variant == "gpu":
        assert config.docker.cuda_version is not None


def test_packages_are_pyproject_dependencies_plus_extra(variant: str) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    expected = [*project["dependencies"], *project["optional-dependencies"][variant]]
    packages = load(variant).python.packages
    assert packages is not None
    assert _normalised(packages) == _normalised(expected), (
        "bentofile python.packages drifted from pyproject.toml: copy the dependencies and the "
        f"'{variant}' extra"
    )


@pytest.mark.parametrize(
    ("path", "shipped"),
    [
        ("service/service.py", True),
        ("service/static/index.html", True),
        ("models/mnist-dcgan/model.json", False),
        ("models/mnist-dcgan/generator.onnx", False),
        ("contract/manifest.py", True),
        ("service/__pycache__/service.cpython-311.pyc", False),
        ("training/train.py", False),
        ("tests/conftest.py", False),
        ("runs/x/ckpt.pt", False),
    ],
)
def test_bento_ships_service_and_models_only(variant: str, path: str, shipped: bool) -> None:
    assert path_spec(variant).includes(path) is shipped


def test_bento_packs_every_bundled_model_default_first(variant: str) -> None:
    bundled = sorted(d.name for d in (REPO / "models").iterdir() if d.is_dir())
    tags = [spec.tag for spec in load(variant).models]
    assert sorted(tag.partition(":")[0] for tag in tags) == bundled
    assert all(tag.endswith(":latest") for tag in tags), "the versions `make bento` imports"
    # The service serves a Bento's models with the first listed as its default (model_store).
    assert tags[0].partition(":")[0] == (REPO / "models" / "DEFAULT").read_text().strip()


@cache
def path_spec(variant: str) -> BentoPathSpec:
    """BentoML's own include/exclude matcher, as `bentoml build` applies it."""
    config = load(variant)
    return BentoPathSpec(config.include or ["*"], config.exclude or [], str(REPO))


def test_settings_envs_are_real(variant: str) -> None:
    from deploy_support import check_settings, settings_env_names

    envs = {e.name: e.value or "" for e in load(variant).envs}
    gan = {k for k in envs if k.startswith("GAN_")}
    assert gan <= settings_env_names()
    check_settings(envs)
    assert envs["GAN_PROVIDER"] == ("cuda" if variant == "gpu" else "cpu")


def test_gpu_bentofile_mirrors_the_cpu_one() -> None:
    cpu, gpu = load("cpu"), load("gpu")
    assert (cpu.include, cpu.exclude, cpu.models) == (gpu.include, gpu.exclude, gpu.models)
    assert cpu.name != gpu.name
    assert Path(BENTOFILES["gpu"]).parent.name == "bento"
