"""The mode-collapse lab's report: the summary of its runs, docs/mode-collapse.md and its figure.

The document's prose lives in docs/: ``mode-collapse.template.md`` (the page, with ``$name``
placeholders) and ``mode-collapse-lab.toml`` (the published numbers, one line of why per
configuration, the tuned configuration's paragraph). This module only computes and formats
the numbers that fill them, so editing the text never means editing code.
"""

from __future__ import annotations

import json
import math
import statistics
import tomllib
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

import numpy as np

from training.toy import TOY_DATASETS, mode_centers, mode_std

if TYPE_CHECKING:
    from training.lab import Budget, Variant

DOCS = Path(__file__).resolve().parents[1] / "docs"
TEMPLATE, DATA = DOCS / "mode-collapse.template.md", DOCS / "mode-collapse-lab.toml"
MD_NAME, PNG_NAME, JSON_NAME = "mode-collapse.md", "mode-collapse.png", "mode-collapse-results.json"
BEST = "best"  # the tuned configuration, reported against TARGETS
# What the best configuration must reach on every seed.
TARGETS: dict[str, dict[str, float]] = {
    "ring8": {"modes": 8, "hq_fraction": 0.95},
    "grid25": {"modes": 25, "hq_fraction": 0.90, "reverse_kl": 0.05},
}


@cache
def report_data() -> dict[str, Any]:
    """docs/mode-collapse-lab.toml: ``published``, ``why`` and ``text``."""
    return tomllib.loads(DATA.read_text())


def why(name: str) -> str:
    return str(report_data()["why"].get(name, ""))


# --- summary ---------------------------------------------------------------------------------


def _mean_std(xs: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def summarise(runs: list[dict[str, Any]], variants: Sequence[Variant]) -> list[dict[str, Any]]:
    """One row per (variant, dataset): means, standard deviations, per-seed values, verdicts."""
    rows = []
    for v in variants:
        for ds in TOY_DATASETS:
            rs = sorted(
                (r for r in runs if r["variant"] == v.name and r["dataset"] == ds),
                key=lambda r: r["seed"],
            )
            if not rs:
                continue
            k = rs[0]["n_modes"]
            modes = [r["modes"] for r in rs]
            hq = [r["hq_fraction"] for r in rs]
            kls = [r["reverse_kl"] for r in rs]
            kl_ok = [x for x in kls if x is not None]
            row = {
                "variant": v.name,
                "kind": v.kind,
                "dataset": ds,
                "n_modes": k,
                "seeds": [r["seed"] for r in rs],
                "modes": modes,
                "modes_mean_std": _mean_std(modes),
                "hq_fraction": hq,
                "hq_mean_std": _mean_std(hq),
                "reverse_kl": kls,
                # A seed without any HQ sample has no mode histogram: its KL is left out of the mean.
                "kl_mean_std": _mean_std(kl_ok) if kl_ok else None,
                "g_steps": rs[0]["g_steps"],
                "train_s_mean": statistics.fmean(r["train_s"] for r in rs),
                "verdict": verdict(modes, hq, k),
            }
            if v.name == BEST:
                row["targets"] = check_targets(rs, ds)
            rows.append(row)
    return rows


def verdict(modes: Sequence[int], hq: Sequence[float], k: int) -> str:
    """Mode coverage first (the question the lab asks), then sample quality."""
    mean_modes, mean_hq = statistics.fmean(modes), statistics.fmean(hq)
    if mean_hq < 0.05:
        return "no usable samples (HQ < 5%): not converged or collapsed off the modes"
    if mean_modes <= k / 2:
        cover = "collapses"
    elif min(modes) < k:
        cover = "drops modes"
    else:
        cover = "covers every mode"
    quality = (
        "sharp" if mean_hq >= 0.9 else "blurry / off-mode mass" if mean_hq < 0.5 else "partly sharp"
    )
    return f"{cover}, {quality}"


def check_targets(rs: list[dict[str, Any]], dataset: str) -> dict[str, Any]:
    target = TARGETS[dataset]
    per_seed = []
    for r in rs:
        ok = r["modes"] >= target["modes"] and r["hq_fraction"] >= target["hq_fraction"]
        if "reverse_kl" in target:
            ok = ok and r["reverse_kl"] is not None and r["reverse_kl"] <= target["reverse_kl"]
        per_seed.append({"seed": r["seed"], "met": ok})
    return {"target": target, "per_seed": per_seed, "met_all": all(p["met"] for p in per_seed)}


# --- markdown --------------------------------------------------------------------------------


def num(x: float | None, digits: int) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _pm(ms: tuple[float, float] | None, digits: int, scale: float = 1.0) -> str:
    if ms is None:
        return "n/a"
    return f"{ms[0] * scale:.{digits}f} ± {ms[1] * scale:.{digits}f}"


def markdown_table(rows: list[dict[str, Any]], dataset: str) -> list[str]:
    lines = [
        "| config | modes (mean ± std) | modes per seed | HQ % | reverse KL | KL per seed | G steps | s / run | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in (r for r in rows if r["dataset"] == dataset):
        name = f"**{r['variant']}**" if r["kind"] == "tuned" else r["variant"]
        lines.append(
            f"| {name} | {_pm(r['modes_mean_std'], 1)} / {r['n_modes']} | {' '.join(map(str, r['modes']))} "
            f"| {_pm(r['hq_mean_std'], 1, 100)} | {_pm(r['kl_mean_std'], 3)} "
            f"| {' '.join(num(x, 3) for x in r['reverse_kl'])} | {r['g_steps']} | {r['train_s_mean']:.0f} | {r['verdict']} |"
        )
    for name, m, hq, kl in report_data()["published"][dataset]:
        lines.append(
            f"| *published {name}* | {m} / {len(mode_centers(dataset))} | | {100 * hq:.1f} | {kl:.2f} | | | | PacGAN Table 1 |"
        )
    return lines


def render_markdown(
    result: dict[str, Any], variants: Sequence[Variant], left_out: Sequence[Variant] = ()
) -> str:
    """docs/mode-collapse.md from a results JSON and the configurations it reports.

    ``left_out``: configurations outside the default set, listed with their why when not run.
    """
    meta, rows, budget = result["meta"], result["summary"], result["meta"]["budget"]
    text = report_data()["text"]
    collapse = []
    for v in variants:
        verdicts = "; ".join(
            f"{r['dataset']}: {r['verdict']}" for r in rows if r["variant"] == v.name
        )
        if verdicts:
            collapse.append(f"- **{v.name}** ({verdicts}). {why(v.name)}".rstrip())
    for v in left_out:
        if all(v.name != u.name for u in variants):
            collapse.append(f"- **{v.name}** ({text['left_out']}). {why(v.name)}")
    tuned = result.get("tuned")
    if tuned:
        by_base = {
            r["variant"].removesuffix(TUNED_SUFFIX) + r["dataset"]: r for r in tuned["summary"]
        }
        rows = [x for r in rows for x in (r, by_base.get(r["variant"] + r["dataset"])) if x]
        for i, line in enumerate(collapse):
            name = line.split("**")[1]
            t = next((t for t in tuned["trials"] if t["loss"] == name), None)
            if t is not None:
                collapse[i] = f"{line} {tuned_sentence(t, tuned['summary'])}"
    tables = "".join(
        "\n".join([f"## {ds}", "", *markdown_table(rows, ds), "", ""])
        for ds in TOY_DATASETS
        if any(r["dataset"] == ds for r in rows)
    )
    return Template(TEMPLATE.read_text()).substitute(
        quick_banner=text["quick_banner"] + "\n\n" if meta["quick"] else "",
        command=meta["command"],
        finished=meta["finished"],
        n_eval=f"{budget['n_eval']:,}",
        # A 2-D Gaussian puts 1 - e^-4.5 of its mass within 3 std: the HQ of the true data.
        true_hq=f"{100 * (1 - math.exp(-4.5)):.1f}",
        hidden=4 * budget["common"]["width"],
        batch_size=budget["common"]["batch_size"],
        init=budget["init"],
        steps_ring8=budget["steps"]["ring8"],
        steps_grid25=budget["steps"]["grid25"],
        seeds=", ".join(map(str, budget["seeds"])),
        best_section=best_section(rows, variants),
        result_tables=tables,
        search_section=search_section(tuned) if tuned else "",
        collapse_list="\n".join(collapse),
        first_seed=budget["seeds"][0],
        wall_min=f"{meta['wall_s'] / 60:.1f}",
        n_runs=meta["n_runs"],
        workers=meta["workers"],
        cpu_min=f"{meta['cpu_s'] / 60:.1f}",
        machine=meta["machine"],
        loadavg_start=meta["loadavg_start"],
        loadavg_end=meta["loadavg_end"],
    )


TUNED_SUFFIX = " tuned"  # training.lab_search names a loss's tuned row "<loss> tuned"


def _per_seed(r: dict[str, Any]) -> str:
    hq = " ".join(f"{100 * x:.0f}" for x in r["hq_fraction"])
    return f"{' '.join(map(str, r['modes']))} modes, HQ {hq} %"


def tuned_sentence(trial: dict[str, Any], summary: list[dict[str, Any]]) -> str:
    """What tuning changed for one loss: its winner, and the tuned rows' numbers per seed."""
    name = trial["loss"] + TUNED_SUFFIX
    rows = [r for r in summary if r["variant"] == name]
    change = trial["winner"].split(": ", 1)[1]
    said = "; ".join(
        f"{r['dataset']} seeds {' '.join(map(str, r['seeds']))}: {_per_seed(r)}" for r in rows
    )
    note = str(report_data().get("tuned", {}).get(trial["loss"], ""))
    if change == "published":
        return f"*Tuned*: no candidate beat the published settings ({said}). {note}".rstrip()
    return f"*Tuned* ({change}): {said}. {note}".rstrip()


def search_section(tuned: dict[str, Any]) -> str:
    """The fair trial: every loss's grid on grid25 seed 0, its winner, and the search's cost."""
    meta = tuned["meta"]
    text = report_data()["text"]
    out = [
        "## A fair trial: every loss tuned",
        "",
        Template(text["search"]).substitute(
            command=meta["command"],
            n_runs=meta["n_runs"],
            train_min=f"{meta['train_s'] / 60:.0f}",
            wall_min=f"{meta['wall_s'] / 60:.0f}",
            machine=meta["machine"],
            score=meta["score"],
        ),
        "",
        "| loss | candidate (grid25, seed 0) | modes | HQ % | reverse KL | score | G steps | s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in tuned["trials"]:
        for c in t["candidates"]:
            mark = "**" if c["variant"] == t["winner"] else ""
            out.append(
                f"| {t['loss']} | {mark}{c['variant'].split(': ', 1)[1]}{mark} | {c['modes']} / {c['n_modes']} "
                f"| {100 * c['hq_fraction']:.1f} | {num(c['reverse_kl'], 3)} | {c['score']:.3f} | {c['g_steps']} | {c['train_s']:.0f} |"
            )
        for name in t["not_run"]:
            out.append(
                f"| {t['loss']} | {name.split(': ', 1)[1]} | not run (out of time) | | | | | |"
            )
    out += ["", text["search_after"], "", ""]
    return "\n".join(out)


def best_section(rows: list[dict[str, Any]], variants: Sequence[Variant]) -> str:
    best = next((v for v in variants if v.name == BEST), None)
    if best is None:
        return ""
    paragraph = Template(report_data()["text"]["best"]).substitute(
        loss=best.loss,
        params=json.dumps(best.params),
        per_dataset="".join(
            f", on {ds} also {json.dumps(p)}" for ds, p in best.per_dataset.items()
        ),
        decay_pct=f"{100 * best.lr_decay:.0f}",
    )
    out = ["## The tuned configuration (`best`)", "", paragraph, ""]
    for ds in TOY_DATASETS:
        row = next((r for r in rows if r["variant"] == BEST and r["dataset"] == ds), None)
        if row is None:
            continue
        t = row["targets"]
        want = ", ".join(
            f"{k} {'≤' if k == 'reverse_kl' else '≥'} {v}" for k, v in t["target"].items()
        )
        seeds = ", ".join(f"seed {p['seed']} {'✓' if p['met'] else '✗'}" for p in t["per_seed"])
        out.append(
            f"- {ds}: target {want} on every seed: **{'met' if t['met_all'] else 'NOT met'}** ({seeds})"
        )
    return "\n".join([*out, "", ""])


# --- figure ----------------------------------------------------------------------------------


def plot_samples(
    runs: list[dict[str, Any]], variants: Sequence[Variant], budget: Budget, path: Path
) -> None:
    """One panel per (dataset, config) on the first seed, plus the real data, in one PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    first = {(r["dataset"], r["variant"]): r for r in runs if r["seed"] == budget.seeds[0]}
    datasets = [ds for ds in TOY_DATASETS if any(k[0] == ds for k in first)]
    ncol = 6
    rows_per_ds = math.ceil((len(variants) + 1) / ncol)
    fig = Figure(figsize=(2.3 * ncol, 2.45 * rows_per_ds * len(datasets)))
    axes = fig.subplots(rows_per_ds * len(datasets), ncol, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for d, ds in enumerate(datasets):
        centers, lim = mode_centers(ds), 1.5 if ds == "ring8" else 5.5
        real = (
            np.random.default_rng(0).normal(size=(budget.n_eval, 2)) * mode_std(ds)
            + centers[np.random.default_rng(1).integers(len(centers), size=budget.n_eval)]
        )
        panels: list[tuple[str, np.ndarray]] = [(f"{ds}: real data", real)]
        panels += [
            (_panel_title(first[(ds, v.name)]), first[(ds, v.name)]["samples"])
            for v in variants
            if (ds, v.name) in first
        ]
        for i, (title, x) in enumerate(panels):
            ax = axes[d * rows_per_ds + i // ncol, i % ncol]
            ax.set_axis_on()
            _scatter(ax, x, centers, mode_std(ds), lim)
            ax.set_title(title, fontsize=7.5)
    fig.tight_layout(pad=0.4)
    fig.savefig(path, dpi=80)


def _panel_title(r: dict[str, Any]) -> str:
    return f"{r['dataset']}: {r['variant']}\n{r['modes']}/{r['n_modes']} modes, HQ {100 * r['hq_fraction']:.0f}%, KL {num(r['reverse_kl'], 2)}"


def _scatter(ax: Any, x: np.ndarray, centers: np.ndarray, std: float, lim: float) -> None:
    x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=1e9)
    near = np.linalg.norm(x[:, None, :] - centers[None], axis=2).min(axis=1) <= 3 * std
    ax.scatter(*x[~near].T, s=1.5, c="0.65", linewidths=0, rasterized=True)
    ax.scatter(*x[near].T, s=1.5, c="tab:blue", linewidths=0, rasterized=True)
    ax.scatter(*centers.T, s=14, c="red", marker="+", linewidths=0.8)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=6, length=2)
