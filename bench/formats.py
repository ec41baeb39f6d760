"""Output formats in process: the uint8-in-graph generator, and encoding over threads.

usage: python bench/formats.py MODEL_DIR [--reps 200] [--batches 1,64] [--threads 1,2]
                                         [--json-out F]

1. ``generate``: one batcher call of ``service.engine.generate_rows`` (latents + ONNX Runtime +
   the float -> uint8 rule), per batch size, for MODEL_DIR as it is (the rule in numpy) and for
   a copy converted by ``training.uint8_graph`` (the rule in the graph). Loaded by the service's
   own loader (``ModelStore.load``) with ``--ort-threads`` (default 1: what each of the two
   workers of the 2-core box runs with). Both variants are timed interleaved, call by call, so
   a neighbour's load hits both alike; median microseconds per call.
2. ``encode``: ``service.encoding.Encoder(threads).encode`` of one batch of 64 of the model's
   images, per format, per thread count, interleaved the same way; median milliseconds per
   batch (``npy``: ``encode_npy``, one file, no pool). A busy machine (other sessions'
   training) shrinks any gain of more threads: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from service.conditioning import FROM_SEED
from service.encoding import Encoder, encode_npy
from service.engine import generate_rows
from service.model_store import LoadedModel, ModelStore
from service.settings import Settings
from training.uint8_graph import convert_folder


def _load(folder: Path, threads: int) -> LoadedModel:
    store = ModelStore.load(
        Settings(models_dir=folder.parent, default_model=folder.name, ort_threads=threads),
        cpu_only=True,
    )
    return store.get(folder.name)


def _rows(batch: int, k: int) -> np.ndarray:
    rows = np.empty((batch, 3), dtype=np.float64)
    rows[:, 0] = np.arange(k * batch, (k + 1) * batch)
    rows[:, 1] = 1.0
    rows[:, 2] = FROM_SEED
    return rows


def interleaved(variants: dict[str, Callable[[int], object]], reps: int) -> dict[str, float]:
    """Median seconds per call of each variant, called in turn ``reps`` times after 3 warm ones."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for k in range(reps + 3):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn(k)
            if k >= 3:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def generate_cells(
    folder: Path, batches: list[int], reps: int, threads: int
) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(shutil.copytree(folder, Path(tmp) / folder.name))
        convert_folder(copy)
        models = {"numpy_rule": _load(folder, threads), "graph_rule": _load(copy, threads)}
        assert not models["numpy_rule"].uint8_in_graph and models["graph_rule"].uint8_in_graph
        out: dict[str, dict[str, float]] = {}
        for batch in batches:
            first = {n: generate_rows(m, _rows(batch, 0)) for n, m in models.items()}
            assert (first["numpy_rule"] == first["graph_rule"]).all()  # same pixels
            medians = interleaved(
                {
                    name: (lambda k, m=model, b=batch: generate_rows(m, _rows(b, k)))
                    for name, model in models.items()
                },
                reps,
            )
            out[str(batch)] = {name: round(s * 1e6, 1) for name, s in medians.items()}
        return out


def encode_cells(
    folder: Path, thread_counts: list[int], reps: int, threads: int
) -> dict[str, dict[str, float]]:
    model = _load(folder, threads)
    pixels = generate_rows(model, _rows(64, 7))
    encoders = {n: Encoder(n) for n in thread_counts}
    loop = asyncio.new_event_loop()  # one loop, as in a worker
    out: dict[str, dict[str, float]] = {}
    try:
        for fmt in ("png", "webp", "jpeg"):
            variants: dict[str, Callable[[int], object]] = {
                f"{n}_threads": (lambda k, e=e, f=fmt: loop.run_until_complete(e.encode(pixels, f)))
                for n, e in encoders.items()
            }
            medians = interleaved(variants, reps)
            out[fmt] = {name: round(s * 1e3, 3) for name, s in medians.items()}
        npy = interleaved({"inline": lambda k: encode_npy(pixels)}, reps)
        out["npy"] = {name: round(s * 1e3, 3) for name, s in npy.items()}
    finally:
        loop.close()
        for e in encoders.values():
            e.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--threads", default="1,2", help="encoder thread counts to compare")
    ap.add_argument("--ort-threads", type=int, default=1)
    ap.add_argument("--json-out", type=Path)
    a = ap.parse_args()
    result = {
        "model": a.model_dir.name,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "reps": a.reps,
        "ort_threads": a.ort_threads,
        "generate_us_per_call": generate_cells(
            a.model_dir, [int(b) for b in a.batches.split(",")], a.reps, a.ort_threads
        ),
        "encode_ms_per_batch_of_64": encode_cells(
            a.model_dir, [int(t) for t in a.threads.split(",")], a.reps, a.ort_threads
        ),
    }
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2)
    print(text)
    if a.json_out:
        a.json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
