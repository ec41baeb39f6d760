"""Tables, target checks and the scaling plot from one ``bench/run.py`` output folder.

usage: python bench/report.py OUT [--plot docs/bench-scaling.png] [--inproc OUT/inproc.json]

Every ratio is taken within one round (the systems of a round ran back to back, interleaved),
then the median over rounds is shown with its range; absolute numbers are medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

NAMES = {
    "ours": "ours (BentoML + batcher, defaults)",
    "nobatch": "ours, batching off",
    "ours2w": "ours, GAN_WORKERS=2",
    "ours1w": "ours, GAN_WORKERS=1",
    "ort1": "ours, GAN_ORT_THREADS=1",
    "nosplit": "ours, GAN_SPLIT_THREADS=1 (no batch split)",
    "ours2w_ort1": "ours, 2 workers, 1 ORT thread",
    "bare": "ours without BentoML",
    "slowpath": "ours, GAN_FAST_PATH=false",
    "cudaexh": "ours, GAN_CUDA_CONV_ALGO=exhaustive",
    "torchserve": "TorchServe 0.12",
    "pytriton": "PyTriton 0.7 (Triton 2.51)",
    "ceiling": "in-process ceiling",
    "ceiling2": "in-process ceiling, two processes",
}

PEERS = ("torchserve", "pytriton")
CEILINGS = {"ceiling": "one process", "ceiling2": "two processes, 1 ORT thread each"}
# issue 18: at each point ours >= 2x the best peer's images/s with lower p99, and at n=16
# >= 85% of the two-process ceiling
PEER_POINTS = ((1, 1), (64, 1), (1, 16), (64, 16))


SYSTEM_ORDER = (
    "ours",
    "ours2w",
    "ours1w",
    "slowpath",
    "cudaexh",
    "nosplit",
    "ort1",
    "ours2w_ort1",
    "bare",
    "nobatch",
)


def load(out: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x.strip()]
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return rows, meta


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_ratio(values: list[float]) -> str:
    if not values:
        return "-"
    m = med(values)
    if len(values) == 1:
        return f"{m:.2f}x"
    return f"{m:.2f}x ({min(values):.2f}-{max(values):.2f})"


def index(
    rows: list[dict[str, Any]], phase: str
) -> dict[tuple[int, int], dict[str, dict[int, dict[str, Any]]]]:
    """(c, n) -> system -> round -> row."""
    out: dict[tuple[int, int], dict[str, dict[int, dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for r in rows:
        if r["phase"] == phase:
            out[r["c"], r["n"]][r["system"]][r["round"]] = r
    return out


def ratios(
    point: dict[str, dict[int, dict[str, Any]]], a: str, b: str, key: str = "img_per_s"
) -> list[float]:
    if a not in point or b not in point:
        return []
    return [
        point[a][k][key] / point[b][k][key]
        for k in sorted(point[a])
        if k in point[b] and point[b][k].get(key)
    ]


def agg(point: dict[int, dict[str, Any]], key: str) -> float:
    return med([r[key] for r in point.values() if key in r])


def load_table(rows: list[dict[str, Any]], phase: str = "load") -> list[str]:
    idx = index(rows, phase)
    lines = [
        "| c | n | system | images/s | req/s | p50 ms | p95 ms | p99 ms | errors | server CPU (cores) "
        "| server CPU us/image | server RSS MB | wrk CPU (cores) | vs TorchServe (images/s) "
        "| vs PyTriton (images/s) | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (c, n), point in sorted(idx.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        for system in (*SYSTEM_ORDER, *PEERS, *CEILINGS):
            if system not in point:
                continue
            p = point[system]
            if system in CEILINGS:
                lines.append(
                    f"| {c} | {n} | {NAMES[system]} (batch 64 + PNG + base64) | "
                    f"{agg(p, 'img_per_s'):.0f} | | | | | | | | | | "
                    f" | | {_load(p)} |"
                )
                continue
            vs = " | ".join(
                "" if system in PEERS else fmt_ratio(ratios(point, system, peer)) for peer in PEERS
            )
            errors = sum(r.get("errors", 0) for r in p.values())
            lines.append(
                f"| {c} | {n} | {NAMES.get(system, system)} | {agg(p, 'img_per_s'):.0f} | "
                f"{agg(p, 'req_per_s'):.0f} | {agg(p, 'p50_ms'):.2f} | {agg(p, 'p95_ms'):.2f} | "
                f"{agg(p, 'p99_ms'):.2f} | {errors} | {agg(p, 'server_cpu_cores'):.2f} | "
                f"{cpu_per_image(p):.0f} | "
                f"{max(r.get('server_rss_mb', 0) for r in p.values()):.0f} | "
                f"{agg(p, 'client_cpu_cores'):.3f} | {vs} | {_load(p)} |"
            )
    return lines


def cpu_per_image(p: dict[int, dict[str, Any]]) -> float:
    """Server CPU microseconds per image served (median over rounds): the cost that does not
    depend on how much of a shared machine the server got."""
    return med(
        [1e6 * r["server_cpu_cores"] / r["img_per_s"] for r in p.values() if r.get("img_per_s")]
    )


def _load(p: dict[int, dict[str, Any]]) -> str:
    values = [r["load_average"][0] for r in p.values() if r.get("load_average")]
    if not values:
        return "-"
    return f"{min(values):.1f}-{max(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def best_peer(point: dict[str, dict[int, dict[str, Any]]]) -> str | None:
    """The peer with the highest median images/s at this point (None if no peer ran)."""
    present = [p for p in PEERS if p in point]
    return max(present, key=lambda p: agg(point[p], "img_per_s")) if present else None


def peer_targets(
    idx: dict[tuple[int, int], dict[str, dict[int, dict[str, Any]]]], system: str, sfx: str
) -> tuple[list[str], dict[str, Any]]:
    """Issue 18's targets for one of our systems: >= 2x the best peer's images/s with lower p99
    at each PEER_POINTS point, and n=16 >= 85% of the two-process ceiling."""
    lines, out = [], {}
    name = NAMES.get(system, system)
    for c, n in PEER_POINTS:
        p = idx.get((c, n), {})
        peer = best_peer(p)
        if system in p and peer is not None and not agg(p[peer], "ok"):
            # no peer got an answer back within the window (p99 0): nothing to compare with
            out[f"c{c}_n{n}_vs_best_peer{sfx}"] = {"peer": None, "met": None}
            lines.append(
                f"| c={c}, n={n}: >= 2x the best peer's images/s, lower p99 | {name} | "
                "not measured: no peer answered a request within the window | - |"
            )
        elif system in p and peer is not None:
            r = ratios(p, system, peer)
            p99 = ratios(p, system, peer, "p99_ms")
            ok = bool(r) and med(r) >= 2.0 and med(p99) < 1.0
            out[f"c{c}_n{n}_vs_best_peer{sfx}"] = {
                "peer": peer,
                "img_ratio": med(r),
                "p99_ratio": med(p99),
                "met": ok,
            }
            others = "; ".join(
                f"vs {NAMES[q]} {fmt_ratio(ratios(p, system, q))}"
                for q in PEERS
                if q in p and q != peer
            )
            lines.append(
                f"| c={c}, n={n}: >= 2x the best peer's images/s, lower p99 | {name} | "
                f"best peer {NAMES[peer]}: images/s {fmt_ratio(r)}; p99 "
                f"{agg(p[system], 'p99_ms'):.1f} vs {agg(p[peer], 'p99_ms'):.1f} ms (ratio "
                f"{fmt_ratio(p99)}){'; ' + others if others else ''} | {'yes' if ok else 'no'} |"
            )
        if n == 16 and system in p and "ceiling2" in p:
            r = ratios(p, system, "ceiling2")
            ok = bool(r) and med(r) >= 0.85
            out[f"c{c}_n{n}_vs_ceiling2{sfx}"] = {"ratio": med(r), "met": ok}
            lines.append(
                f"| c={c}, n={n}: >= 85% of the two-process in-process ceiling | {name} | "
                f"{100 * med(r):.0f}% ({', '.join(f'{100 * x:.0f}%' for x in r)}); ceiling "
                f"{agg(p['ceiling2'], 'img_per_s'):.0f} images/s | {'yes' if ok else 'no'} |"
            )
    return lines, out


def targets(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """The issue's targets for "ours" (keys without suffix) and for each tuned variant present
    (keys suffixed with the system name, rows labelled with it)."""
    idx = index(rows, "load")
    out: dict[str, Any] = {}
    lines = ["| target | system | measured (median of rounds, range) | met? |", "|---|---|---|---|"]
    present = {s for point in idx.values() for s in point}
    for system in [
        s
        for s in SYSTEM_ORDER
        if s in present and s not in ("bare", "nobatch", "slowpath", "cudaexh")
    ]:
        sfx = "" if system == "ours" else f"_{system}"
        name = NAMES.get(system, system)
        p = idx.get((64, 1), {})
        if system in p and "torchserve" in p:
            r = ratios(p, system, "torchserve")
            p99 = ratios(p, system, "torchserve", "p99_ms")
            ok = bool(r) and med(r) >= 2.0 and med(p99) < 1.0
            out["c64_n1_vs_ts" + sfx] = {"img_ratio": med(r), "p99_ratio": med(p99), "met": ok}
            lines.append(
                f"| c=64, n=1: >= 2x TorchServe images/s, lower p99 | {name} | images/s "
                f"{fmt_ratio(r)}; p99 {agg(p[system], 'p99_ms'):.1f} vs "
                f"{agg(p['torchserve'], 'p99_ms'):.1f} ms (ratio {fmt_ratio(p99)}) | "
                f"{'yes' if ok else 'no'} |"
            )
        p = idx.get((8, 16), {})
        if system in p and "ceiling" in p:
            r = ratios(p, system, "ceiling")
            ok = bool(r) and med(r) >= 0.70
            out["c8_n16_vs_ceiling" + sfx] = {"ratio": med(r), "met": ok}
            lines.append(
                f"| c=8, n=16: >= 70% of the in-process ceiling (ORT b64 + PNG + base64) | "
                f"{name} | {100 * med(r):.0f}% ({', '.join(f'{100 * x:.0f}%' for x in r)}); "
                f"ceiling {agg(p['ceiling'], 'img_per_s'):.0f} images/s | "
                f"{'yes' if ok else 'no'} |"
            )
        if system in p and "torchserve" in p:
            r = ratios(p, system, "torchserve")
            ok = bool(r) and med(r) >= 1.5
            out["c8_n16_vs_ts" + sfx] = {"ratio": med(r), "met": ok}
            lines.append(
                f"| c=8, n=16: >= 1.5x TorchServe | {name} | {fmt_ratio(r)} | "
                f"{'yes' if ok else 'no'} |"
            )
        p = idx.get((1, 1), {})
        if system in p:
            p50 = agg(p[system], "p50_ms")
            each = ", ".join(f"{r['p50_ms']:.2f}" for r in p[system].values())
            ok = p50 <= 3.0
            out["c1_n1_p50_ms" + sfx] = {"ours": p50, "met": ok}
            ts = (
                f"; TorchServe {agg(p['torchserve'], 'p50_ms'):.1f} ms" if "torchserve" in p else ""
            )
            lines.append(
                f"| c=1, n=1: p50 <= 3 ms end to end | {name} | {p50:.2f} ms ({each}){ts} | "
                f"{'yes' if ok else 'no'} |"
            )
        more, found = peer_targets(idx, system, sfx)
        lines += more
        out |= found
    for c, n in ((64, 1), (64, 16), (256, 1)):
        p = idx.get((c, n), {})
        if "ours" in p and "nobatch" in p:
            r = ratios(p, "ours", "nobatch")
            p99 = ratios(p, "ours", "nobatch", "p99_ms")
            out[f"batching_c{c}_n{n}"] = {"img_ratio": med(r), "p99_ratio": med(p99)}
            lines.append(
                f"| batching on vs off, c={c}, n={n} | ours | images/s {fmt_ratio(r)}, "
                f"p99 {fmt_ratio(p99)} | {'yes' if med(r) > 1.1 else 'no'} |"
            )
    return lines, out


def score_table(rows: list[dict[str, Any]]) -> list[str]:
    idx = index(rows, "score")
    if not idx:
        return []
    lines = [
        "| c | images per request | images/s | req/s | p50 ms | p95 ms | p99 ms | errors | server CPU | RSS MB | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (c, n), point in sorted(idx.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        for p in point.values():
            lines.append(
                f"| {c} | {n} | {agg(p, 'img_per_s'):.0f} | {agg(p, 'req_per_s'):.0f} | "
                f"{agg(p, 'p50_ms'):.2f} | {agg(p, 'p95_ms'):.2f} | {agg(p, 'p99_ms'):.2f} | "
                f"{sum(r.get('errors', 0) for r in p.values())} | "
                f"{agg(p, 'server_cpu_cores'):.2f} | "
                f"{max(r.get('server_rss_mb', 0) for r in p.values()):.0f} | {_load(p)} |"
            )
    return lines


def sweep_table(rows: list[dict[str, Any]], phase: str, var: str) -> list[str]:
    idx = index(rows, phase)
    if not idx:
        return []
    systems = sorted({s for point in idx.values() for s in point}, key=lambda s: s != "ours")
    head = f"| {var} | " + " | ".join(f"{NAMES.get(s, s)} images/s, p50/p99 ms" for s in systems)
    lines = [head + " | ratio ours/TorchServe |", "|---" * (len(systems) + 2) + "|"]
    for (c, n), point in sorted(idx.items()):
        cells = []
        for s in systems:
            p = point.get(s)
            cells.append(
                f"{agg(p, 'img_per_s'):.0f}, {agg(p, 'p50_ms'):.1f}/{agg(p, 'p99_ms'):.1f}"
                if p
                else "-"
            )
        r = fmt_ratio(ratios(point, "ours", "torchserve"))
        lines.append(f"| {c if var == 'c' else n} | " + " | ".join(cells) + f" | {r} |")
    return lines


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    styles = {
        "ours": ("tab:blue", "o"),
        "ours2w": ("tab:green", "D"),
        "torchserve": ("tab:red", "s"),
        "pytriton": ("tab:purple", "v"),
        "nobatch": ("tab:gray", "^"),
    }
    for col, (phase, var, label) in enumerate(
        (
            ("sweep_n", "n", "images per request n (c=8)"),
            ("sweep_c", "c", "concurrent clients c (n=1)"),
        )
    ):
        idx = index(rows, phase)
        systems = sorted({s for point in idx.values() for s in point})
        for s in systems:
            pts = sorted(
                ((c if var == "c" else n), point[s][0])
                for (c, n), point in idx.items()
                if s in point and 0 in point[s]
            )
            if not pts:
                continue
            xs = [x for x, _ in pts]
            color, marker = styles.get(s, ("tab:green", "d"))
            axes[0][col].plot(
                xs,
                [r["img_per_s"] for _, r in pts],
                marker=marker,
                color=color,
                label=NAMES.get(s, s),
            )
            axes[1][col].plot(
                xs,
                [r["p50_ms"] for _, r in pts],
                marker=marker,
                color=color,
                label=f"{NAMES.get(s, s)} p50",
            )
            axes[1][col].plot(
                xs,
                [r["p99_ms"] for _, r in pts],
                marker=marker,
                color=color,
                linestyle="--",
                label=f"{NAMES.get(s, s)} p99",
            )
        for row in (0, 1):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            ax.set_xlabel(label)
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        axes[0][col].set_ylabel("images/s")
        axes[1][col].set_ylabel("latency ms")
        axes[1][col].set_yscale("log")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(out: Path, plot_path: Path | None = None) -> str:
    rows, meta = load(out)
    lines = [
        f"# bench run {out.name}",
        "",
        f"- machine: {meta.get('cpus')} CPUs, {meta.get('cpu_model', '?')}; load average at start "
        f"{meta.get('load_average_start')}, at end {meta.get('load_average_end')}",
        f"- model: {meta.get('model')} ({meta.get('models_dir')}); TorchServe config "
        f"W:DELAY:THREADS = {meta.get('ts_config')}; PyTriton config INSTANCES:DELAY_US = "
        f"{meta.get('pt_config')} ({meta.get('pt_onnx')}); nice {meta.get('nice', 0)}; {meta.get('wrk', [''])[0] if meta.get('wrk') else ''}",
        f"- command: `{' '.join(meta.get('argv', []))}`; {meta.get('seconds', '?')} s",
        "",
        "## Targets",
        "",
    ]
    target_lines, summary = targets(rows)
    lines += [*target_lines, "", "## Load (wrk, closed loop)", "", *load_table(rows)]
    s = score_table(rows)
    if s:
        lines += ["", "## /score under load (ours)", "", *s]
    for phase, var, title in (
        ("sweep_n", "n", "images/s and latency against n (c=8)"),
        ("sweep_c", "c", "against concurrency (n=1)"),
    ):
        t = sweep_table(rows, phase, var)
        if t:
            lines += ["", f"## Scaling: {title}", "", *t]
    if plot_path is not None and any(r["phase"].startswith("sweep") for r in rows):
        plot(
            rows,
            plot_path,
            f"{meta.get('model')} on {meta.get('cpus')} CPUs ({meta.get('cpu_model', '')}), load avg {meta.get('load_average_start')}",
        )
        lines += ["", f"Plot: `{plot_path}`"]
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    (out / "targets.json").write_text(json.dumps(summary, indent=1))
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args()
    print(report(args.out, args.plot))


if __name__ == "__main__":
    main()
