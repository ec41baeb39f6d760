"""bentofile.yaml (CPU) and deploy/bento/bentofile.gpu.yaml: BentoML accepts them, they serve the
same service as the Dockerfile, ship service/ and models/ but not training/, and install exactly
pyproject's dependencies plus the matching extra.

`bentoml build` itself is not run here (it locks packages against PyPI); docs/deploy.md records a run.
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
        ("models/mnist-dcgan/model.json", True),
        ("models/mnist-dcgan/generator.onnx", True),
        ("service/__pycache__/service.cpython-311.pyc", False),
        ("training/train.py", False),
        ("tests/conftest.py", False),
        ("runs/x/ckpt.pt", False),
    ],
)
def test_bento_ships_service_and_models_only(variant: str, path: str, shipped: bool) -> None:
    assert path_spec(variant).includes(path) is shipped


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
    assert (cpu.include, cpu.exclude) == (gpu.include, gpu.exclude)
    assert cpu.name != gpu.name
    assert Path(BENTOFILES["gpu"]).parent.name == "bento"
