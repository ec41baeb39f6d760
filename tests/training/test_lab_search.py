"""The fair trial of the lab's losses (training.lab_search): grids, keys, resume, the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from training import lab, lab_search
from training.lab_report import JSON_NAME, MD_NAME


def test_every_loss_has_a_grid_with_its_published_settings_first() -> None:
    for name in lab_search.DEFAULT_LOSSES:
        grid = lab_search.GRIDS[name]
        assert len(grid) >= 3
        published = next(v for v in lab.VARIANTS if v.name == name)
        key = lab_search.run_key(published, "grid25", 0, lab_search.SEARCH_BUDGET)
        assert lab_search.run_key(grid[0], "grid25", 0, lab_search.SEARCH_BUDGET) == key
        keys = {lab_search.run_key(v, "grid25", 0, lab_search.SEARCH_BUDGET) for v in grid}
        assert len(keys) == len(grid)  # no candidate is another one under a new name
        for v in grid:  # the lab's budget: the same number of optimiser updates for all
            cfg = lab.make_config(v, "grid25", 0, lab_search.SEARCH_BUDGET)
            assert cfg.n_critic is not None and cfg.loss == published.loss
            assert abs(cfg.steps * (cfg.n_critic + 1) - 2 * 8000) <= cfg.n_critic + 1


def test_run_key_is_the_resolved_config() -> None:
    b = lab_search.SEARCH_BUDGET
    plain = lab.Variant("a", "wgan")
    spelled = lab.Variant("b", "wgan", {"weight_clip": 0.01, "n_critic": 5})
    assert lab_search.run_key(plain, "grid25", 0, b) == lab_search.run_key(spelled, "grid25", 0, b)
    faster = lab.Variant("a", "wgan", {"lr_g": 5e-4})
    assert lab_search.run_key(faster, "grid25", 0, b) != lab_search.run_key(plain, "grid25", 0, b)
    assert lab_search.run_key(plain, "grid25", 1, b) != lab_search.run_key(plain, "grid25", 0, b)
    assert lab_search.run_key(plain, "ring8", 0, b) != lab_search.run_key(plain, "grid25", 0, b)


def test_score_prefers_coverage_quality_and_balance() -> None:
    def r(modes: int, hq: float, kl: float | None) -> dict:
        return {"modes": modes, "n_modes": 25, "hq_fraction": hq, "reverse_kl": kl}

    assert lab_search.score(r(25, 0.95, 0.0)) == pytest.approx(1.95)
    assert lab_search.score(r(0, 0.0, None)) == pytest.approx(-1.0)
    assert lab_search.score(r(25, 0.9, 0.02)) > lab_search.score(r(22, 0.9, 0.02))
    assert lab_search.score(r(25, 0.9, 0.02)) > lab_search.score(r(25, 0.2, 0.02))
    assert lab_search.score(r(25, 0.9, 0.02)) > lab_search.score(r(25, 0.9, 1.0))
    assert lab_search.score(r(25, 0.9, 9.0)) == pytest.approx(1.9 - 1.0)  # KL capped at log K
    assert math.log(25) > 3


def test_lab_runs_count_as_cached(tmp_path: Path) -> None:
    ns = next(v for v in lab.VARIANTS if v.name == "ns")
    record = {"variant": "ns", "dataset": "grid25", "seed": 0, "modes": 20, "n_modes": 25}
    meta = {"budget": {**vars(lab.FULL)}, "quick": False}
    (tmp_path / JSON_NAME).write_text(json.dumps({"meta": meta, "runs": [record]}))
    cache = lab_search.RunCache(
        tmp_path / "runs.jsonl", None, lab_search.SEARCH_BUDGET, train=False
    )
    assert cache.add_lab_runs(tmp_path / JSON_NAME) == 1
    found = cache.lookup(lab_search.GRIDS["ns"][0], "grid25", 0)
    assert found is not None and found["modes"] == 20 and found["variant"] == "ns: published"
    with pytest.raises(KeyError):
        cache.get(ns, "grid25", 1)  # train=False: never trains
    # A lab run at another budget is not the same run.
    meta["budget"]["steps"] = {"ring8": 1, "grid25": 1}
    (tmp_path / JSON_NAME).write_text(json.dumps({"meta": meta, "runs": [record]}))
    other = lab_search.RunCache(tmp_path / "x.jsonl", None, lab_search.SEARCH_BUDGET)
    assert other.add_lab_runs(tmp_path / JSON_NAME) == 0


def test_quick_search_end_to_end_resumes_and_folds_into_the_lab_report(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    assert lab.main(["--quick", "--out", str(out), "--no-runs", "--only", "wgan,ns+pac2"]) == 0
    args = [
        "--quick",
        "--out",
        str(out),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--only",
        "wgan,ns+pac2",
    ]
    assert lab_search.main(args) == 0
    lines = (out / lab_search.RUNS_NAME).read_text().splitlines()
    # 3 candidates each on grid25 seed 0, then the winner on grid25 seed 1 and ring8 seeds 0, 1.
    assert len(lines) == 2 * (3 + 3)
    search = json.loads((out / lab_search.SEARCH_JSON).read_text())
    assert [t["loss"] for t in search["trials"]] == ["wgan", "ns+pac2"]
    for t in search["trials"]:
        best = max(t["candidates"], key=lambda c: c["score"])
        assert t["winner"] == best["variant"] and not t["not_run"]
        assert {(r["dataset"], r["seed"]) for r in t["runs"]} == {
            (ds, s) for ds in ("ring8", "grid25") for s in (0, 1)
        }
    md = (out / MD_NAME).read_text()
    assert "## A fair trial: every loss tuned" in md and "| **wgan tuned** |" in md
    assert "*Tuned*" in md
    png = (out / lab_search.TUNED_PNG).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    lab_json = json.loads((out / JSON_NAME).read_text())
    assert {r["variant"] for r in lab_json["tuned"]["summary"]} == {"wgan tuned", "ns+pac2 tuned"}

    # Resume: nothing is trained twice; --render-only rewrites the same report.
    assert lab_search.main(args) == 0
    assert (out / lab_search.RUNS_NAME).read_text().splitlines() == lines
    (out / MD_NAME).write_text("stale")
    assert lab_search.main([*args, "--render-only"]) == 0
    assert (out / MD_NAME).read_text() == md
