"""``--config FILE``: TrainConfig fields in a TOML, YAML or JSON file, read as if they were flags.

Each key becomes its flag (``lr_g`` -> ``--lr-g``) and goes through the CLI's own parser, so a
bad value in a file gets the message the flag would get, and the flags given beside
``--config`` override the file. A run folder's ``config.json`` is such a file: every field, and
``null`` where the default applies.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
from pathlib import Path
from typing import Any

from training.config import TrainConfig

FORMATS = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML", ".json": "JSON"}
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# ``extra`` is free-form data, not a flag: it is taken from the file as it is.
FLAG_FIELDS = frozenset(FIELDS) - {"extra"}


class ConfigFileError(ValueError):
    """An unreadable file or a key that is no TrainConfig field; the message is one line."""


def read_config_file(path: Path) -> dict[str, Any]:
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ConfigFileError(
            f"--config {path}: use a {', '.join(sorted(FORMATS))} file (the suffix decides the format)"
        )
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigFileError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    try:
        if kind == "TOML":
            data: Any = tomllib.loads(text)
        elif kind == "JSON":
            data = json.loads(text)
        else:
            data = _load_yaml(text)
    except (ValueError, ImportError) as e:
        first = " ".join(str(e).split())
        raise ConfigFileError(f"--config {path}: not valid {kind}: {first}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"--config {path}: expected a table of TrainConfig fields, got {type(data).__name__}"
        )
    return data


def _load_yaml(text: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise ImportError("reading YAML needs PyYAML (pip install pyyaml)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(str(e)) from None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def config_argv(values: dict[str, Any], source: str) -> tuple[list[str], dict[str, Any] | None]:
    """The command-line arguments that say what ``values`` say, and the file's ``extra`` table.

    ``None`` (JSON null) means "not set": the field keeps its default, as an absent flag would.
    """
    argv: list[str] = []
    extra = None
    for key, value in values.items():
        if key not in FIELDS:
            close = difflib.get_close_matches(key, sorted(FIELDS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigFileError(
                f"{source}: unknown key {key!r}{hint}: keys are TrainConfig fields"
            )
        if value is None:
            continue
        if key == "extra":
            if not isinstance(value, dict):
                raise ConfigFileError(f"{source}: 'extra' must be a table, got {value!r}")
            extra = value
            continue
        flag = _flag(key)
        if FIELDS[key].type == "bool":
            if not isinstance(value, bool):
                raise ConfigFileError(
                    f"{source}: argument {flag}: expected true or false, got {value!r}"
                )
            argv.append(flag if value else "--no-" + flag.removeprefix("--"))
        elif isinstance(value, dict | list):
            raise ConfigFileError(f"{source}: argument {flag}: expected one value, got {value!r}")
        else:
            # repr of a float round-trips exactly; the parser's type checks do the rest.
            argv += [flag, repr(value) if isinstance(value, float) else str(value)]
    return argv, extra
