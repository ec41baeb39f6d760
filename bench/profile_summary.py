"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) of a server under load.

usage: python bench/profile_summary.py PROFILE.txt [--top 25]
Prints, over all sampled (non-idle) stacks: the share of samples by thread, the inclusive share
of each component (a stack counts for every component it passes through; the first match from
the leaf decides the "self" column), and the hottest leaf functions.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path

# (label, regex on one frame "func (file:line)"); order matters for the self column: first hit
# from the leaf up wins.
COMPONENTS: list[tuple[str, str]] = [
    ("onnxruntime run", r"onnxruntime"),
    ("png encode (zlib)", r"encode_png|_png_chunk|zlib"),
    ("base64", r"base64"),
    ("json dumps/loads", r"json/|json_response|dumps|loads"),
    ("latents", r"latents"),
    ("service: request parsing", r"request_parsing"),
    ("service: engine/batcher", r"service/engine|service/batcher"),
    ("service: http_app", r"service/http_app"),
    ("prometheus_client", r"prometheus_client"),
    ("opentelemetry", r"opentelemetry"),
    ("bentoml middlewares/context", r"bentoml/_internal|_bentoml_impl|_bentoml_sdk"),
    ("starlette", r"starlette"),
    ("uvicorn/httptools", r"uvicorn|httptools"),
    ("asyncio/uvloop", r"asyncio|uvloop"),
    ("threading", r"threading|concurrent/futures"),
]


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.rstrip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def summarise(stacks: list[tuple[list[str], int]], top: int = 25) -> dict[str, object]:
    total = sum(c for _, c in stacks) or 1
    by_thread: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    compiled = [(label, re.compile(rx)) for label, rx in COMPONENTS]
    for frames, count in stacks:
        thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else "?"
        if len(frames) > 1 and frames[1].startswith("thread"):
            thread = frames[1]
        by_thread[re.sub(r"\(.*?\)|0x[0-9a-f]+", "", thread).strip()] += count
        hit = set()
        for label, rx in compiled:
            if any(rx.search(f) for f in frames):
                hit.add(label)
        for label in hit:
            inclusive[label] += count
        leaf_label = "other"
        for frame in reversed(frames):
            found = next((label for label, rx in compiled if rx.search(frame)), None)
            if found:
                leaf_label = found
                break
        self_[leaf_label] += count
        leaves[frames[-1] if frames else "?"] += count
    return {
        "samples": total,
        "threads": {k: round(v / total, 3) for k, v in by_thread.most_common(8)},
        "inclusive": {k: round(v / total, 3) for k, v in inclusive.most_common()},
        "self": {k: round(v / total, 3) for k, v in self_.most_common()},
        "top_leaves": [(k, round(v / total, 3)) for k, v in leaves.most_common(top)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = summarise(parse(args.profile), args.top)
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
        return
    print(f"samples: {result['samples']}")
    for key in ("threads", "inclusive", "self"):
        print(f"\n{key}:")
        for k, v in result[key].items():  # type: ignore[attr-defined]
            print(f"  {100 * v:5.1f}%  {k}")
    print("\ntop leaf frames:")
    for k, v in result["top_leaves"]:  # type: ignore[union-attr]
        print(f"  {100 * v:5.1f}%  {k}")


if __name__ == "__main__":
    main()
