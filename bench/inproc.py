"""In-process ceiling: what one Python process does with the service's own code, no HTTP.

usage: python bench/inproc.py MODEL_DIR [--secs 1.5] [--batches 1,8,64,256] [--quick]
                                        [--threads 0,1,2] [--provider cpu|cuda] [--json-out F]
                                        [--start-at UNIX_TIME]

Generator (images/s), per batch size B, each step cumulative:
  ort      latents (contract.latents) + ONNX Runtime generator + to_uint8   (= the batcher's call)
  png      + PNG encoding (service.imaging.encode_png, the hand-written encoder the service uses)
  png_b64  + base64                                                   (= what /generate returns)
  pil_b64  ort + Pillow PNG (default level) + base64 (the TorchServe peer's encoder, for reference)
Discriminator (images/s scored), per batch size B:
  ort      from_uint8 + ONNX Runtime discriminator + realness           (= the batcher's call)
  decode   + decoding B uploaded 28x28 PNGs (service.imaging.uploads_to_pixels) first

Sessions are made exactly as the service makes them (service/model_store.py: graph optimisation
ALL, no spinning); ``--threads`` adds intra-op thread counts (0 = ONNX Runtime's default).
Each cell is the median of 3 timed windows of secs/3 each, after 2 warm calls.
``--start-at`` holds the timing (not the imports and sessions) until that wall-clock time, so
that several copies run side by side (bench/run.py's two-process ceiling).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import onnxruntime as ort
from PIL import Image

from contract.latents import classes_for_seeds, latents_for_seeds
from contract.manifest import Manifest, read_manifest
from contract.onnx_runtime import session_options
from service.imaging import encode_png, uploads_to_pixels

BATCHES = (1, 8, 64, 256)


def rate(fn: Callable[[int], object], batch: int, secs: float, reps: int = 3) -> float:
    """images/s: median of ``reps`` windows of >= secs/reps seconds (>= 3 calls each)."""
    fn(0)
    fn(1)
    out, k = [], 2
    for _ in range(reps):
        calls, t0 = 0, time.perf_counter()
        while True:
            fn(k)
            calls += 1
            k += 1
            dt = time.perf_counter() - t0
            if dt >= secs / reps and calls >= 3:
                break
        out.append(calls * batch / dt)
    return sorted(out)[len(out) // 2]


def session(path: Path, threads: int, providers: list[str]) -> ort.InferenceSession:
    options = session_options(threads)
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def pil_png_b64(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue())


def generator_cells(
    m: Manifest, sess: ort.InferenceSession, batch: int, secs: float, stages: list[str]
) -> dict[str, float]:
    spec, z_dim = m.generator, m.z_dim

    def pixels(k: int) -> np.ndarray:
        seeds = np.arange(k * batch, (k + 1) * batch, dtype=np.uint64)
        feed: dict[str, np.ndarray] = {spec.input: latents_for_seeds(seeds, z_dim)}
        if m.conditioning is not None:  # what the service feeds: each seed's own class
            feed[m.conditioning.input] = classes_for_seeds(seeds, m.conditioning.num_classes)
        return m.image.to_uint8(sess.run([spec.output], feed)[0])

    fns: dict[str, Callable[[int], object]] = {
        "ort": pixels,
        "png": lambda k: [encode_png(p) for p in pixels(k)],
        "png_b64": lambda k: [base64.b64encode(encode_png(p)).decode("ascii") for p in pixels(k)],
        "pil_b64": lambda k: [pil_png_b64(p) for p in pixels(k)],
    }
    return {stage: rate(fns[stage], batch, secs) for stage in stages}


def discriminator_cells(
    m: Manifest, gen: ort.InferenceSession, disc: ort.InferenceSession, batch: int, secs: float
) -> dict[str, float]:
    g, d = m.generator, m.discriminator
    z = latents_for_seeds(np.arange(batch, dtype=np.uint64), m.z_dim)
    pixels = m.image.to_uint8(gen.run([g.output], {g.input: z})[0])
    files = [encode_png(p) for p in pixels]

    def score(px: np.ndarray) -> np.ndarray:
        logits = disc.run([d.output], {d.input: m.image.from_uint8(px)})[0]
        return m.realness.realness(np.asarray(logits).reshape(px.shape[0]))

    def decode_and_score(_: int) -> np.ndarray:
        decoded = uploads_to_pixels(files, m.image.channels, m.image.height, m.image.width, 1 << 24)
        return score(np.stack([p for p in decoded if isinstance(p, np.ndarray)]))

    return {
        "ort": rate(lambda _: score(pixels), batch, secs),
        "decode": rate(decode_and_score, batch, secs),
    }


def run(
    model_dir: Path,
    *,
    batches: tuple[int, ...] = BATCHES,
    secs: float = 1.5,
    threads: tuple[int, ...] = (0,),
    provider: str = "cpu",
    stages: tuple[str, ...] = ("ort", "png", "png_b64", "pil_b64"),
    discriminator: bool = True,
    log: Callable[[str], None] = print,
    start_at: float | None = None,
) -> dict[str, object]:
    m = read_manifest(model_dir)
    providers = ["CPUExecutionProvider"]
    if provider == "cuda":
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    rows: list[dict[str, object]] = []
    result: dict[str, object] = {
        "model": str(model_dir),
        "name": m.name,
        "versions": {
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "cpus": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
    }
    for th in threads:
        gen = session(model_dir / m.generator.file, th, providers)
        disc = session(model_dir / m.discriminator.file, th, providers)
        active = gen.get_providers()[0]
        result["provider"] = active
        if start_at is not None:
            result["start_late_s"] = wait_until(start_at)
            start_at = None
        for b in batches:
            cells = generator_cells(m, gen, b, secs, list(stages))
            rows.append({"graph": "generator", "threads": th, "batch": b, **cells})
            log(
                f"generator     threads={th or 'default':<7} batch={b:<4d} "
                + " ".join(f"{k}={v:8.0f}" for k, v in cells.items())
            )
        if discriminator and m.conditioning is not None:
            # its (B, K) logits and OOD output go through engine.py's realness: not timed here
            print("discriminator cells skipped: class-conditional model", file=sys.stderr)
        elif discriminator:
            for b in batches:
                cells = discriminator_cells(m, gen, disc, b, secs)
                rows.append({"graph": "discriminator", "threads": th, "batch": b, **cells})
                log(
                    f"discriminator threads={th or 'default':<7} batch={b:<4d} "
                    + " ".join(f"{k}={v:8.0f}" for k, v in cells.items())
                )
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def wait_until(when: float) -> float:
    """Sleep until wall-clock time ``when``; how many seconds past it this returned (>= 0)."""
    while (left := when - time.time()) > 0:
        time.sleep(min(left, 0.5))
    return round(time.time() - when, 3)


def ceiling(result: dict[str, object], batch: int = 64, stage: str = "png_b64") -> float | None:
    """The generator's images/s at ``batch`` and ``stage`` (best over thread settings)."""
    rows = result["rows"]
    assert isinstance(rows, list)
    values = [
        float(r[stage])
        for r in rows
        if r["graph"] == "generator" and r["batch"] == batch and stage in r
    ]
    return max(values) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--secs", type=float, default=1.5, help="per cell (3 windows); default 1.5")
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--threads", default="0", help="intra-op threads to try, 0 = ORT default")
    ap.add_argument("--provider", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="only the ceiling the load figures are compared to: generator, batch 64, png_b64",
    )
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--start-at", type=float, help="begin timing at this time.time()")
    ap.add_argument("--nice", type=int, default=0, help="priority (bench/run.py passes its own)")
    args = ap.parse_args()
    if args.nice:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import harness

        harness.take_priority(args.nice)
    if args.quick:
        result = run(
            args.model_dir,
            batches=(64,),
            secs=args.secs,
            threads=tuple(int(t) for t in args.threads.split(",")),
            provider=args.provider,
            stages=("png_b64", "pil_b64"),
            discriminator=False,
            start_at=args.start_at,
        )
    else:
        result = run(
            args.model_dir,
            batches=tuple(int(b) for b in args.batches.split(",")),
            secs=args.secs,
            threads=tuple(int(t) for t in args.threads.split(",")),
            provider=args.provider,
            start_at=args.start_at,
        )
    result["ceiling_b64_png_b64"] = ceiling(result)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))
    print(json.dumps({"ceiling_b64_png_b64": result["ceiling_b64_png_b64"]}))


if __name__ == "__main__":
    main()
