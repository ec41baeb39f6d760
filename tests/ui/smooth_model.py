"""A tiny model whose images are smooth colour blobs rather than noise, for the docs' screenshot.

The fixture's generator maps z straight to pixels, so its images (and its latent walks) look like
static. This one maps z to a 4x4 image and upsamples it 8x with linear interpolation: a latent
walk between two seeds then visibly morphs one picture into the other. Same folder contract as
tests/fixtures/tiny_models.py (it rewrites that builder's generator and its sha256).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from fixtures.tiny_models import IR_VERSION, OPSET, build_tiny_model
from onnx import TensorProto, checker, helper, numpy_helper


def _smooth_generator(z_dim: int, channels: int, low: int, factor: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((z_dim, channels * low * low)) * (1.6 / np.sqrt(z_dim))).astype(
        np.float32
    )
    shape = np.array([-1, channels, low, low], dtype=np.int64)
    scales = np.array([1.0, 1.0, factor, factor], dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["z", "W"], ["flat"]),
            helper.make_node("Reshape", ["flat", "shape"], ["small"]),
            helper.make_node("Resize", ["small", "", "scales"], ["big"], mode="linear"),
            helper.make_node("Tanh", ["big"], ["images"]),
        ],
        "smooth_generator",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["B", z_dim])],
        [
            helper.make_tensor_value_info(
                "images", TensorProto.FLOAT, ["B", channels, low * factor, low * factor]
            )
        ],
        initializer=[
            numpy_helper.from_array(weight, "W"),
            numpy_helper.from_array(shape, "shape"),
            numpy_helper.from_array(scales, "scales"),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tests.ui"
    )
    model.ir_version = IR_VERSION
    checker.check_model(model, full_check=True)
    return model.SerializeToString()


def build_smooth_model(root: Path, name: str = "blobs", seed: int = 7) -> Path:
    """``root/name``: RGB 32x32, z_dim 16, Platt realness; images are upsampled 4x4 blobs."""
    folder = build_tiny_model(
        root,
        name=name,
        channels=3,
        height=32,
        width=32,
        z_dim=16,
        loss="hinge",
        realness=("platt", 0.8, 0.0),
        seed=seed,
    )
    data = _smooth_generator(16, 3, 4, 8, seed)
    (folder / "generator.onnx").write_bytes(data)
    manifest_path = folder / "model.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["architecture"] = "tiny-smooth"
    manifest["onnx"]["generator"]["sha256"] = hashlib.sha256(data).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return folder
