from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contract.manifest import ImageSpec, Manifest, ManifestError, RealnessSpec, read_manifest


@pytest.fixture
def raw(tiny_models_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tiny_models_dir / "tiny-b" / "model.json").read_text())
    return data


def test_reads_the_fixture(tiny_models_dir: Path) -> None:
    m = read_manifest(tiny_models_dir / "tiny-b")
    assert (m.name, m.loss, m.z_dim) == ("tiny-b", "wgan-gp", 16)
    assert m.image == ImageSpec(3, 32, 32, (-1.0, 1.0))
    assert m.generator.file == "generator.onnx"
    assert m.realness == RealnessSpec("platt", 0.5, 0.1)
    assert m.raw["evaluation"]["fid"] == 123.4


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("format",), "gan-model/2", "format"),
        (("z_dim",), 0, "z_dim"),
        (("z_dim",), "8", "z_dim"),
        (("image", "channels"), 2, "image.channels"),
        (("image", "value_range"), [1.0, -1.0], "image.value_range"),
        (("latent", "algorithm"), "numpy-default", "latent.algorithm"),
        (("onnx", "generator", "sha256"), "abc", "onnx.generator.sha256"),
        (("onnx", "discriminator", "file"), "../x.onnx", "onnx.discriminator.file"),
        (("realness", "a"), "one", "realness.a"),
    ],
)
def test_contract_violations_name_the_field(
    raw: dict[str, Any], path: tuple[str, ...], value: object, message: str
) -> None:
    data = copy.deepcopy(raw)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ManifestError, match=message.replace(".", r"\.")):
        Manifest.from_dict(data)


def test_missing_field(raw: dict[str, Any]) -> None:
    del raw["onnx"]["generator"]["output"]
    with pytest.raises(ManifestError, match=r"onnx\.generator\.output is missing"):
        Manifest.from_dict(raw)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="missing"):
        read_manifest(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ManifestError, match="unreadable"):
        read_manifest(tmp_path)


def test_to_uint8_is_the_contract_formula() -> None:
    spec = ImageSpec(1, 1, 4, (-1.0, 1.0))
    x = np.array([[[[-2.0, -1.0, 0.0, 1.0]]]], dtype=np.float32)
    assert spec.to_uint8(x).tolist() == [[[[0], [0], [128], [255]]]]
    assert spec.to_uint8(x).shape == (1, 1, 4, 1)


def test_from_uint8_inverts_to_uint8() -> None:
    spec = ImageSpec(3, 2, 2, (-1.0, 1.0))
    u8 = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3) * 20
    x = spec.from_uint8(u8)
    assert x.shape == (1, 3, 2, 2) and x.dtype == np.float32
    assert (spec.to_uint8(x) == u8).all()


def test_realness_is_a_stable_sigmoid() -> None:
    spec = RealnessSpec("platt", 2.0, -1.0)
    logits = np.array([-1e4, 0.5, 1e4], dtype=np.float32)
    r = spec.realness(logits)
    assert r[0] == 0.0 and r[2] == 1.0
    assert r[1] == pytest.approx(0.5)
