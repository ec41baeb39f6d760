"""The mode-collapse lab's report (training.lab_report): the summary, and the page it renders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from training import lab, lab_report

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _run(variant: str, dataset: str, seed: int, modes: int, hq: float, kl: float | None) -> dict:
    k = 25 if dataset == "grid25" else 8
    return {
        "variant": variant,
        "dataset": dataset,
        "seed": seed,
        "modes": modes,
        "n_modes": k,
        "hq_fraction": hq,
        "reverse_kl": kl,
        "g_steps": 10,
        "train_s": 1.0,
    }


def test_summary_verdicts_and_targets() -> None:
    variants = [lab.Variant("a", "ns"), lab.Variant(lab_report.BEST, "ns", kind="tuned")]
    runs = [
        _run("a", "grid25", 0, 3, 0.9, 2.0),
        _run("a", "grid25", 1, 5, 0.9, None),
        _run(lab_report.BEST, "grid25", 0, 25, 0.95, 0.01),
        _run(lab_report.BEST, "grid25", 1, 25, 0.89, 0.01),
    ]
    rows = {r["variant"]: r for r in lab_report.summarise(runs, variants)}
    a = rows["a"]
    assert a["modes"] == [3, 5] and a["modes_mean_std"] == (4.0, pytest.approx(math.sqrt(2)))
    assert a["kl_mean_std"] == (2.0, 0.0)  # the seed without HQ samples has no KL
    assert a["verdict"].startswith("collapses")
    best = rows[lab_report.BEST]
    assert best["verdict"].startswith("covers every mode")
    assert [p["met"] for p in best["targets"]["per_seed"]] == [True, False]  # HQ 0.89 < 0.90
    assert best["targets"]["met_all"] is False
    assert lab_report.verdict([24, 25], [0.95, 0.95], 25).startswith("drops modes")
    assert lab_report.verdict([0, 0], [0.0, 0.0], 25).startswith("no usable samples")


def test_the_committed_report_is_what_its_json_renders_to() -> None:
    """docs/mode-collapse.md is generated: template + text file + results JSON give it exactly."""
    result = json.loads((DOCS / lab_report.JSON_NAME).read_text())
    names = [v["name"] for v in result["variants"]]
    variants = [v for v in lab.VARIANTS + lab.EXTRA_VARIANTS if v.name in names]
    md = lab_report.render_markdown(result, variants, lab.EXTRA_VARIANTS)
    assert md == (DOCS / lab_report.MD_NAME).read_text()


def test_every_configuration_has_its_why_and_every_why_a_configuration() -> None:
    every = {v.name for v in lab.VARIANTS + lab.EXTRA_VARIANTS}
    assert set(lab_report.report_data()["why"]) == every
    assert all(lab_report.why(name) for name in every)


def test_quick_runs_say_so_at_the_top() -> None:
    result = json.loads((DOCS / lab_report.JSON_NAME).read_text())
    result["meta"]["quick"] = True
    md = lab_report.render_markdown(result, lab.VARIANTS)
    assert md.splitlines()[2].startswith("> **QUICK run")
