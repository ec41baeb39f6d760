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
        (("format",), "gan-model/3", "format"),
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


def _v2(raw: dict[str, Any], **extra: Any) -> dict[str, Any]:
    data = copy.deepcopy(raw)
    data["format"] = "gan-model/2"
    data["conditioning"] = {"classes": ["cat", "dog", "owl"], "input": "class"}
    data["realness"]["ood"] = {
        "output": "ood",
        "quantiles": [10.0, 15.0, 20.0],  # probabilities 0, 0.5, 1
        "held_out": 1000,
        "full_credit": 0.5,
    }
    data.update(extra)
    return data


def test_format_2_reads_conditioning_and_the_ood_term(raw: dict[str, Any]) -> None:
    m = Manifest.from_dict(_v2(raw))
    assert m.conditioning is not None and m.conditioning.classes == ("cat", "dog", "owl")
    assert m.conditioning.index("dog") == 1 and m.conditioning.index(2) == 2
    for bad in ("horse", 3, -1, True):
        with pytest.raises(KeyError):
            m.conditioning.index(bad)  # type: ignore[arg-type]
    assert m.realness.ood is not None and m.realness.ood.output == "ood"
    # As typical as the median real image or more: no cost; at the 75th percentile the p-value
    # is 0.25, half the full credit; past every held-out image it keeps falling.
    near, mid, edge, far = m.realness.realness(np.full(4, 1e4), np.array([12.0, 17.5, 20.0, 40.0]))
    assert near == pytest.approx(1.0) and mid == pytest.approx(0.5)
    assert edge == pytest.approx(2 * 0.5 / 1000) and 0 < far < edge * 1e-6
    with pytest.raises(ValueError, match="ood"):
        m.realness.realness(np.array([0.0]))  # the term is part of the contract once declared


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("conditioning", "classes"), ["only"], "conditioning.classes"),
        (("conditioning", "classes"), ["a", "a"], "conditioning.classes"),
        (("conditioning", "input"), 3, "conditioning.input"),
        (("conditioning", "without_class"), "mod-k", "conditioning.without_class"),
        (("realness", "ood", "quantiles"), [3.0, 2.0], "realness.ood.quantiles"),
        (("realness", "ood", "quantiles"), [1.0], "realness.ood.quantiles"),
        (("realness", "ood", "held_out"), 0, "realness.ood.held_out"),
        (("realness", "ood", "full_credit"), 1.5, "realness.ood.held_out"),
    ],
)
def test_format_2_violations_name_the_field(
    raw: dict[str, Any], path: tuple[str, ...], value: object, message: str
) -> None:
    data = _v2(raw)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ManifestError, match=message.replace(".", r"\.")):
        Manifest.from_dict(data)


def test_format_1_ignores_keys_it_did_not_have(raw: dict[str, Any]) -> None:
    """Bundled format-1 models load unchanged: a stray key of format 2 does not change them."""
    data = _v2(raw)
    data["format"] = "gan-model/1"
    m = Manifest.from_dict(data)
    assert m.conditioning is None and m.realness.ood is None


def test_write_manifest_validates_and_round_trips(raw: dict[str, Any], tmp_path: Path) -> None:
    from contract.manifest import write_manifest

    data = _v2(raw)
    written = write_manifest(tmp_path, data)
    assert (
        read_manifest(tmp_path) == written
        and json.loads((tmp_path / "model.json").read_text()) == data
    )
    bad = _v2(raw)
    bad["z_dim"] = 0
    with pytest.raises(ManifestError, match="z_dim"):
        write_manifest(tmp_path / "nowhere", bad)
    assert not (tmp_path / "nowhere").exists()
    nan = _v2(raw)
    nan["evaluation"] = {"fid": float("nan")}
    with pytest.raises(ValueError):
        write_manifest(tmp_path, nan)  # NaN is not JSON: a reader would choke on it
