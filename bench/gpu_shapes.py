"""Why batching at low concurrency was slow on CUDA: time ONNX Runtime generator runs whose batch
size changes every call (as a micro-batcher's do) against a fixed batch size, for each cuDNN
convolution algorithm search (``cudnn_conv_algo_search``) and with memory patterns on/off.

    python bench/gpu_shapes.py MODEL_DIR [--rounds 40]      (needs onnxruntime-gpu and a GPU)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from contract.latents import latents


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--rounds", type=int, default=40)
    a = ap.parse_args()
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    manifest = json.loads((a.model / "model.json").read_text())
    z_dim = manifest["z_dim"]
    onnx = (a.model / "generator.onnx").read_bytes()
    results = {}
    for algo in ("EXHAUSTIVE", "HEURISTIC", "DEFAULT"):
        for mem_pattern in (True, False):
            so = ort.SessionOptions()
            so.enable_mem_pattern = mem_pattern
            s = ort.InferenceSession(
                onnx, so, providers=[("CUDAExecutionProvider", {"cudnn_conv_algo_search": algo})]
            )
            name = s.get_inputs()[0].name
            for b in range(1, 9):  # first sight of every shape
                s.run(None, {name: latents(0, b, z_dim)})
            times = {"changing": [], "fixed8": []}
            sizes = [1, 3, 8, 2, 5, 7, 4, 6]
            for r in range(a.rounds):
                b = sizes[r % len(sizes)]
                t = time.perf_counter()
                s.run(None, {name: latents(r, b, z_dim)})
                times["changing"].append((time.perf_counter() - t) * 1e3)
                t = time.perf_counter()
                s.run(None, {name: latents(r, 8, z_dim)})
                times["fixed8"].append((time.perf_counter() - t) * 1e3)
            key = f"{algo.lower()} mem_pattern={mem_pattern}"
            results[key] = {k: round(statistics.median(v), 3) for k, v in times.items()}
            results[key]["changing_max"] = round(max(times["changing"]), 3)
            print(key, results[key], flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
