"""training/uint8_graph.py: the contract's float -> uint8 rule as ONNX ops, bit for bit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from fixtures.tiny_models import build_tiny_model
from onnx import TensorProto, helper, numpy_helper

from contract import pixels
from contract.manifest import ManifestError, read_manifest
from contract.onnx_runtime import cpu_session
from training.uint8_graph import (
    FINITE_OUTPUT,
    UINT8_OUTPUT,
    add_uint8_outputs,
    convert_folder,
    main,
)

SIDE = 4


def _passthrough(value_range: tuple[float, float] = (-1.0, 1.0)) -> onnx.ModelProto:
    """A "generator" whose images are its input: ``z (B, 3*SIDE*SIDE) -> (B, 3, SIDE, SIDE)``,
    so any float can be put through the uint8 ops."""
    size = 3 * SIDE * SIDE
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["z", "shape"], ["images"])],
        "passthrough",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["B", size])],
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["B", 3, SIDE, SIDE])],
        initializer=[
            numpy_helper.from_array(np.array([-1, 3, SIDE, SIDE], dtype=np.int64), "shape")
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return add_uint8_outputs(model, "images", value_range)


def _midpoints(value_range: tuple[float, float]) -> tuple[np.ndarray, int]:
    """float32 values around every rounding boundary of the rule (4 neighbours each side), and
    how many of them land exactly on a half (the values half-to-even decides)."""
    lo, hi = value_range
    values = []
    for n in range(-3, 258):
        x = np.float32(lo + (n + 0.5) * (hi - lo) / 255.0)
        values.append(x)
        up = down = x
        for _ in range(4):
            up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(-np.inf))
            values += [up, down]
    array = np.array(values, dtype=np.float32)
    scaled = (array - lo) * (255.0 / (hi - lo))
    return array, int((scaled == np.floor(scaled) + 0.5).sum())


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0), (-0.5, 2.0)])
def test_the_graph_rounds_exactly_as_the_contract(value_range: tuple[float, float]) -> None:
    session = cpu_session(_passthrough(value_range).SerializeToString())
    rng = np.random.default_rng(0)
    edges, halves = _midpoints(value_range)
    assert halves > 50  # exact halves are there: odd ones round down, even ones up
    lo, hi = value_range
    special = np.array([lo, hi, lo - 1, hi + 1, -0.0, 1e30, -1e30], dtype=np.float32)
    noise = rng.uniform(lo - 0.2, hi + 0.2, 200_000).astype(np.float32)
    flat = np.concatenate([edges, special, noise])
    size = 3 * SIDE * SIDE
    flat = np.concatenate([flat, np.zeros(-len(flat) % size, np.float32)]).reshape(-1, size)
    u8, finite = session.run([UINT8_OUTPUT, FINITE_OUTPUT], {"z": flat})
    images = flat.reshape(-1, 3, SIDE, SIDE)
    expected = pixels.to_uint8(images, value_range).transpose(0, 2, 3, 1)
    assert u8.dtype == np.uint8 and u8.shape == expected.shape
    assert (u8 == expected).all()
    assert finite.dtype == np.bool_ and finite.all()


def test_non_finite_rows_are_flagged() -> None:
    session = cpu_session(_passthrough().SerializeToString())
    z = np.zeros((5, 3 * SIDE * SIDE), np.float32)
    z[1, 7] = np.nan
    z[2, 0] = np.inf
    z[3, -1] = -np.inf
    z[4] = 3.4e38  # huge but finite: x * 0 stays 0
    _, finite = session.run([UINT8_OUTPUT, FINITE_OUTPUT], {"z": z})
    assert finite.tolist() == [True, False, False, False, True]


def test_the_float_output_stays_and_bad_graphs_are_refused() -> None:
    model = _passthrough()
    assert [o.name for o in model.graph.output] == ["images", UINT8_OUTPUT, FINITE_OUTPUT]
    with pytest.raises(ValueError, match="already has an output"):
        add_uint8_outputs(model, "images", (-1.0, 1.0))
    with pytest.raises(ValueError, match="no output 'pixels'"):
        add_uint8_outputs(model, "pixels", (-1.0, 1.0))
    old = onnx.ModelProto()
    old.CopyFrom(model)
    old.opset_import[0].version = 11
    with pytest.raises(ValueError, match="opset is 11"):
        add_uint8_outputs(old, "images", (-1.0, 1.0))


def test_convert_folder_declares_it_and_keeps_old_manifests_readable(tmp_path: Path) -> None:
    folder = build_tiny_model(tmp_path, name="t", seed=3)
    before = read_manifest(folder)
    assert before.generator.uint8_output is None  # an old folder still loads, as it was
    assert main([str(folder)]) == 0
    after = read_manifest(folder)
    assert after.generator.uint8_output == UINT8_OUTPUT
    assert after.generator.finite_output == FINITE_OUTPUT
    assert after.generator.sha256 != before.generator.sha256
    assert after.discriminator == before.discriminator
    # Idempotent: a second run changes nothing.
    text = (folder / "model.json").read_text()
    convert_folder(folder)
    assert (folder / "model.json").read_text() == text
    # Both or neither, and the generator's only.
    data = json.loads(text)
    del data["onnx"]["generator"]["finite_output"]
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "model.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="both or neither"):
        read_manifest(broken)
    data = json.loads(text)
    data["onnx"]["discriminator"].update(uint8_output="a", finite_output="b")
    (broken / "model.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="generator only"):
        read_manifest(broken)
