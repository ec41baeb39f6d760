"""The serving image's Dockerfile: hadolint, its shape, and agreement with the service.

The image build itself is not run here (minutes, needs buildah or docker): `make image` does it,
and docs/deploy.md records a run.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest
from deploy_support import (
    REPO,
    SERVICE_TARGET,
    arg_defaults,
    dockerignore_excludes,
    env_of,
    parse_dockerfile,
    read_dockerignore,
    settings_env_names,
    tool,
)

DOCKERFILE = REPO / "Dockerfile"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("hadolint"), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_passes() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, f"hadolint findings:\n{result.stdout}{result.stderr}"


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\nCMD python app.py\n")
    result = hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3025"):
        assert rule in result.stdout


def test_multi_stage_with_cpu_and_gpu_bases() -> None:
    df = parse_dockerfile(DOCKERFILE)
    assert df.global_args["BASE_IMAGE"] == "python:3.11-slim-bookworm"
    assert df.global_args["VARIANT"] == "cpu"
    assert df.global_args["CUDA_IMAGE"].startswith("nvidia/cuda:")
    assert "-runtime-" in df.global_args["CUDA_IMAGE"]
    names = [s.name for s in df.stages]
    assert names == ["python-cpu", "python-gpu", "builder", "runtime"]
    assert df.stage("python-cpu").base == "${BASE_IMAGE}"
    assert df.stage("python-gpu").base == "${CUDA_IMAGE}"
    # The build argument picks the variant for both the builder and the final image.
    assert df.stage("builder").base == df.stage("runtime").base == "python-${VARIANT}"
    assert df.stages[-1].name == "runtime", "the default target must be the serving image"


def test_builder_installs_only_the_service_dependencies() -> None:
    spec = importlib.util.spec_from_file_location(
        "deploy_requirements", REPO / "deploy" / "docker" / "requirements.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    requirements = module.requirements
    pyproject = str(REPO / "pyproject.toml")
    for extra, runtime in (("cpu", "onnxruntime"), ("gpu", "onnxruntime-gpu")):
        reqs = requirements(pyproject, extra)
        assert any(r.startswith(runtime) for r in reqs), reqs
        assert not any(r.lower().startswith("torch") for r in reqs), reqs
    run = " ".join(i.args for i in parse_dockerfile(DOCKERFILE).stage("builder").all("RUN"))
    assert 'requirements.py --extra "${VARIANT}"' in run
    assert "pip install --no-cache-dir -r requirements.txt" in run


def test_runtime_copies_the_contract_service_and_models_only() -> None:
    runtime = parse_dockerfile(DOCKERFILE).stage("runtime")
    sources = []
    for copy in runtime.all("COPY"):
        words = [w for w in copy.args.split() if not w.startswith("--")]
        if "--from=builder" in copy.args:
            assert words == ["/opt/venv", "/opt/venv"]
            continue
        sources += words[:-1]
    assert sorted(sources) == ["contract/", "models/", "service/"]


@pytest.mark.parametrize(
    ("path", "in_context"),
    [
        ("pyproject.toml", True),
        ("deploy/docker/requirements.py", True),
        ("service/service.py", True),
        ("service/static/index.html", True),
        ("models/mnist-dcgan/generator.onnx", True),
        ("service/__pycache__/service.cpython-311.pyc", False),
        ("training/train.py", False),
        ("tests/conftest.py", False),
        (".venv/bin/python", False),
        ("runs/mnist/checkpoint.pt", False),
        (".git/HEAD", False),
        ("Dockerfile", False),
    ],
)
def test_dockerignore_keeps_the_context_to_the_service(path: str, in_context: bool) -> None:
    assert dockerignore_excludes(read_dockerignore(), path) is not in_context


def test_dockerignore_matcher_can_fail() -> None:
    # The matcher itself: '*' excludes everything, a later '!' brings a folder back.
    assert dockerignore_excludes(["*"], "training/train.py")
    assert not dockerignore_excludes(["*", "!training/"], "training/train.py")
    assert dockerignore_excludes(["*", "!training/", "**/*.pyc"], "training/x.pyc")


def test_non_root_port_healthcheck_entrypoint() -> None:
    runtime = parse_dockerfile(DOCKERFILE).stage("runtime")
    env = env_of(runtime)
    (user,) = runtime.all("USER")
    uid = arg_defaults(runtime)["UID"]
    assert user.args in (f"{uid}:{uid}", "${UID}:${UID}")
    assert int(uid) >= 1000
    (expose,) = runtime.all("EXPOSE")
    assert expose.args == "3000" == env["BENTOML_PORT"]
    assert env["BENTOML_HOST"] == "0.0.0.0"
    (health,) = runtime.all("HEALTHCHECK")
    probe = health.exec_form()
    assert probe is not None and probe[0] == "python3"
    assert "/readyz" in probe[-1] and "'BENTOML_PORT', '3000'" in probe[-1]
    (entry,) = runtime.all("ENTRYPOINT")
    assert entry.exec_form() == ["bentoml", "serve", SERVICE_TARGET]
    # Writable state lives under /tmp, so a read-only root filesystem works.
    assert env["BENTOML_HOME"].startswith("/tmp/")
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_image_env_names_are_real_settings() -> None:
    env = env_of(parse_dockerfile(DOCKERFILE).stage("runtime"))
    gan = {k for k in env if k.startswith("GAN_")}
    assert gan, "the image should at least point GAN_MODELS_DIR at the bundled models"
    assert gan <= settings_env_names()
    assert env["GAN_MODELS_DIR"] == "/app/models"
    workdir = [i.args for i in parse_dockerfile(DOCKERFILE).stage("runtime").all("WORKDIR")]
    assert workdir[-1] == "/app"


def test_service_entry_point_exists() -> None:
    module, _, name = SERVICE_TARGET.partition(":")
    source = (REPO / (module.replace(".", "/") + ".py")).read_text()
    assert f"class {name}" in source
