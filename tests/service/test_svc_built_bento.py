"""service/built_bento.py: a built Bento's envs and packed models become the service's defaults;
the environment still wins. The real `bentoml build` + `bentoml serve` is in
tests/deploy/test_deploy_bento_build.py."""

from __future__ import annotations

from pathlib import Path

import yaml

from service import built_bento
from service.settings import Settings

BENTO_YAML = {
    "service": "service.service:GanService",
    "models": [
        {"tag": "mnist-dcgan:f282823c6641de51", "module": ""},
        {"tag": "fashion-dcgan:118ff9d15dd9b877", "module": ""},
        {"tag": "org--some-llm:abc", "registry": "huggingface"},
    ],
    "services": [
        {"name": "gan_service", "models": [{"tag": "mnist-dcgan:f282823c6641de51"}]},
    ],
    "envs": [
        {"name": "GAN_PROVIDER", "value": "cpu", "stage": "all"},
        {"name": "ORT_DISABLE_TELEMETRY", "value": "1"},
        {"name": "PIP_INDEX_URL", "value": "https://mirror.invalid", "stage": "build"},
    ],
}


def _bento(tmp_path: Path, info: dict[str, object] = BENTO_YAML) -> Path:
    root = tmp_path / "bentos" / "gan_service" / "v1"
    (root / "src" / "service").mkdir(parents=True)
    (root / "bento.yaml").write_text(yaml.safe_dump(info))
    return root


def test_bento_root_is_found_only_from_a_bentos_src(tmp_path: Path) -> None:
    root = _bento(tmp_path)
    assert built_bento.bento_root(root / "src" / "service" / "built_bento.py") == root
    assert built_bento.bento_root() is None  # this checkout is not a Bento
    (root / "bento.yaml").unlink()
    assert built_bento.bento_root(root / "src" / "service" / "built_bento.py") is None


def test_envs_and_packed_models_fill_what_the_environment_leaves_unset(tmp_path: Path) -> None:
    env: dict[str, str] = {"ORT_DISABLE_TELEMETRY": "0"}
    applied = built_bento.apply_defaults(env, _bento(tmp_path))
    assert env == {
        "ORT_DISABLE_TELEMETRY": "0",  # set by whoever started the server: kept
        "GAN_PROVIDER": "cpu",
        # the bentofile's order, each once, BentoML's own registry only
        "GAN_BENTO_MODELS": "mnist-dcgan:f282823c6641de51,fashion-dcgan:118ff9d15dd9b877",
    }
    assert applied == {k: v for k, v in env.items() if k != "ORT_DISABLE_TELEMETRY"}
    settings = Settings.from_env(env)
    assert settings.provider == "cpu"
    assert settings.bento_models[0] == "mnist-dcgan:f282823c6641de51"


def test_a_models_folder_or_models_named_by_the_environment_win(tmp_path: Path) -> None:
    root = _bento(tmp_path)
    env = {"GAN_MODELS_DIR": "/mnt/models", "GAN_PROVIDER": "auto"}
    built_bento.apply_defaults(env, root)
    assert "GAN_BENTO_MODELS" not in env
    assert (env["GAN_MODELS_DIR"], env["GAN_PROVIDER"]) == ("/mnt/models", "auto")
    env = {"GAN_BENTO_MODELS": "mnist-dcgan:latest"}
    built_bento.apply_defaults(env, root)
    assert env["GAN_BENTO_MODELS"] == "mnist-dcgan:latest"


def test_a_bento_without_models_or_envs_changes_nothing(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    assert built_bento.apply_defaults(env, _bento(tmp_path, {"service": "x"})) == {}
    assert env == {}
    assert built_bento.apply_defaults(env) == {}  # not in a Bento at all


def test_workers_outside_a_build_are_the_resolved_count() -> None:
    assert not built_bento.building_bento()
    assert built_bento.service_workers(3, {}) == 3
    assert built_bento.service_workers(3, {"GAN_WORKERS": "3"}) == 3
