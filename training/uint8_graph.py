"""The contract's float -> uint8 rule inside generator.onnx, so the device hands back pixels.

``python -m training.uint8_graph MODEL_DIR`` (or ``python -m training.export RUN --uint8-output``)
adds two outputs to an exported generator, computed from its float ``images``:

- ``UINT8_OUTPUT`` ``(B, H, W, C)`` uint8: ``contract/pixels.py``'s ``TO_UINT8`` exactly, as
  ONNX ops in the order numpy runs it: ``Sub(x, lo)``, ``Mul(255 / (hi - lo))`` in float32,
  ``Round`` (half to even, as ``numpy.rint``), ``Clip(0, 255)``, ``Cast``, then NCHW -> NHWC;
- ``FINITE_OUTPUT`` ``(B,)`` bool: whether every value of image i is finite. A uint8 cannot
  be NaN, and the service refuses a row whose floats were not finite (``engine.NonFiniteOutput``)
  rather than serve the black image a cast would make of it: ``sum(x * 0)`` is NaN exactly when
  some value is NaN or infinite.

The float output stays, so the folder still works with a service that predates this (it reads
``output``), and the manifest declares the new outputs in ``onnx.generator`` (``uint8_output``,
``finite_output``): a loader that knows them asks for those instead (``service/model_store.py``)
and checks at load that they equal the float graph + the contract rule. Only the ``onnx``
package and numpy: no torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from contract.files import sha256_bytes
from contract.manifest import MANIFEST_FILE, Manifest, read_manifest, write_manifest

UINT8_OUTPUT = "images_u8"
FINITE_OUTPUT = "finite"
# Round needs opset 11, ReduceSum's axes as an input 13.
MIN_OPSET = 13


def _opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ValueError("the graph imports no default ONNX opset")


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    """The declared ``(B, C, H, W)`` of an output (a name where a size is symbolic or unknown)."""
    dims = value.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ValueError(f"output {value.name!r} must be (B, C, H, W), has {len(dims)} dims")
    names = ("batch", "channels", "height", "width")
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or names[i])
        for i, d in enumerate(dims)
    ]


def add_uint8_outputs(
    model: onnx.ModelProto, float_output: str, value_range: tuple[float, float]
) -> onnx.ModelProto:
    """A copy of ``model`` with ``UINT8_OUTPUT`` and ``FINITE_OUTPUT`` computed from its
    ``(B, C, H, W)`` float32 output ``float_output`` (the module docstring says how)."""
    opset = _opset(model)
    if opset < MIN_OPSET:
        raise ValueError(f"the graph's opset is {opset}; the uint8 outputs need {MIN_OPSET}")
    graph = model.graph
    names = {o.name for o in graph.output}
    if float_output not in names:
        raise ValueError(f"the graph has no output {float_output!r} (it has {sorted(names)})")
    if names & {UINT8_OUTPUT, FINITE_OUTPUT}:
        raise ValueError(f"the graph already has an output {UINT8_OUTPUT!r} or {FINITE_OUTPUT!r}")
    lo, hi = value_range
    # What numpy computes in pixels.to_uint8 for float32 x: (x - lo) with lo taken as float32,
    # times 255 / (hi - lo) (a Python float) taken as float32.
    constants = {
        "u8_lo": np.float32(lo),
        "u8_scale": np.float32(255.0 / (hi - lo)),
        "u8_min": np.float32(0.0),
        "u8_max": np.float32(255.0),
        "u8_zero": np.float32(0.0),
        "u8_axes": np.array([1, 2, 3], dtype=np.int64),
    }
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    g.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items())
    g.node.extend(
        [
            helper.make_node("Sub", [float_output, "u8_lo"], ["u8_shifted"]),
            helper.make_node("Mul", ["u8_shifted", "u8_scale"], ["u8_scaled"]),
            helper.make_node("Round", ["u8_scaled"], ["u8_rounded"]),
            helper.make_node("Clip", ["u8_rounded", "u8_min", "u8_max"], ["u8_clipped"]),
            helper.make_node("Cast", ["u8_clipped"], ["u8_nchw"], to=TensorProto.UINT8),
            helper.make_node("Transpose", ["u8_nchw"], [UINT8_OUTPUT], perm=[0, 2, 3, 1]),
            helper.make_node("Mul", [float_output, "u8_zero"], ["u8_zeros"]),
            helper.make_node("ReduceSum", ["u8_zeros", "u8_axes"], ["u8_sum"], keepdims=0),
            helper.make_node("IsNaN", ["u8_sum"], ["u8_not_finite"]),
            helper.make_node("Not", ["u8_not_finite"], [FINITE_OUTPUT]),
        ]
    )
    batch, c, h, w = _dims(next(o for o in graph.output if o.name == float_output))
    g.output.extend(
        [
            helper.make_tensor_value_info(UINT8_OUTPUT, TensorProto.UINT8, [batch, h, w, c]),
            helper.make_tensor_value_info(FINITE_OUTPUT, TensorProto.BOOL, [batch]),
        ]
    )
    onnx.checker.check_model(out)
    return out


def convert_folder(model_dir: Path) -> dict[str, Any]:
    """Add the uint8 outputs to ``model_dir``'s generator.onnx, in place, and declare them in
    model.json (sha256 updated); the manifest as written. A folder that has them already is
    left as it is."""
    manifest = read_manifest(model_dir)
    if manifest.generator.uint8_output is not None:
        return manifest.raw
    path = model_dir / manifest.generator.file
    model = onnx.load(str(path))
    converted = add_uint8_outputs(model, manifest.generator.output, manifest.image.value_range)
    graph = converted.SerializeToString()
    data = json.loads((model_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    entry = data["onnx"]["generator"]
    entry["sha256"] = sha256_bytes(graph)
    entry["uint8_output"] = UINT8_OUTPUT
    entry["finite_output"] = FINITE_OUTPUT
    Manifest.from_dict(data, str(model_dir / MANIFEST_FILE))  # refused before anything is written
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(graph)
    tmp.replace(path)
    write_manifest(model_dir, data)
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.uint8_graph", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("model_dirs", type=Path, nargs="+", help="exported model folders")
    args = p.parse_args(argv)
    for folder in args.model_dirs:
        try:
            data = convert_folder(folder)
        except (OSError, ValueError) as exc:
            print(f"{folder}: {exc}", file=sys.stderr)
            return 2
        print(f"{folder}: {json.dumps(data['onnx']['generator'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
