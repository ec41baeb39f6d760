"""training.cond_sweep: candidates, margins and ranking, the step calibration, and the whole
sweep (probe, calibrated resume, export, judge, the winner judged again) on tiny fake data."""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures.fake_data import write_idx

from training import cond_sweep as cs
from training import metrics
from training.train import build_parser, resolve_config

ROOT = Path(__file__).resolve().parents[2]


def fake_idx(root: Path, name: str, n: int) -> Path:
    """Both splits of an IDX dataset in the real format: a bar whose place depends on the label."""
    rng = np.random.default_rng(0)
    labels = (np.arange(n) % 10).astype(np.uint8)
    images = np.zeros((n, 28, 28), np.uint8)
    for i, y in enumerate(labels):
        images[i, 4:24, 4 + 2 * y : 6 + 2 * y + int(rng.integers(0, 2))] = rng.integers(150, 256)
    write_idx(root, images, name, labels)
    for kind in ("images-idx3", "labels-idx1"):
        train = root / name / f"train-{kind}-ubyte.gz"
        shutil.copy(train, train.with_name(f"t10k-{kind}-ubyte.gz"))
    return root


def _args(**kw: object) -> argparse.Namespace:
    base = {"device": "cpu", "threads": 1, "seed": 0, "data_root": None, "override": ""}
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("candidate", cs.CANDIDATES, ids=lambda c: c.name)
def test_every_candidate_is_a_conditional_config_of_the_bundled_recipe(
    candidate: cs.Candidate, dataset: str, tmp_path: Path
) -> None:
    cmd = cs._base_train_cmd(dataset, candidate, tmp_path / "run", _args())
    cfg, resumed = resolve_config(build_parser().parse_args([*cmd[3:], "--steps", "9"]))
    assert not resumed and cfg.dataset == dataset and cfg.arch == "dcgan28"
    assert cfg.conditional and cfg.loss == "hinge" and cfg.spectral_norm
    assert cfg.lr_decay == 0.5 and cfg.ema >= 0.999 and cfg.steps == 9


def test_candidate_flags_win_over_the_base_recipe(tmp_path: Path) -> None:
    b256 = next(c for c in cs.CANDIDATES if c.name == "w96-b256")
    cmd = cs._base_train_cmd("mnist", b256, tmp_path / "run", _args(override="--width 8"))
    cfg, _ = resolve_config(build_parser().parse_args(cmd[3:]))
    assert (cfg.lr_d, cfg.lr_g, cfg.batch_size, cfg.width) == (8e-4, 2e-4, 256, 8)


def _target(needed: str, ratio: float | None, passed: bool | None, **kw: float) -> dict:
    return {"target": f"t {needed} {ratio}", "needed": needed, "ratio": ratio, "pass": passed, **kw}


def test_margins_are_ratio_over_threshold_in_each_direction() -> None:
    assert cs.margin(_target("ratio >= 0.85", 0.8053, False)) == pytest.approx(0.8053 / 0.85)
    assert cs.margin(_target("ratio < 1", 0.25, True)) == pytest.approx(4.0)
    assert cs.margin(_target("ratio <= 2", 4.0, False)) == pytest.approx(0.5)
    memo = _target("value <= reference + 2 SE", None, True, standard_error=0.01)
    assert cs.margin({**memo, "value": 0.02, "reference_value": 0.01}) == pytest.approx(1.5)
    assert cs.margin({**memo, "value": 0.0, "reference_value": 0.01}) == math.inf
    assert cs.margin(_target("ratio >= 0.9", None, None)) is None


def test_an_unknown_threshold_is_an_error_not_a_silent_skip() -> None:
    with pytest.raises(ValueError, match="unknown target threshold"):
        cs.margin(_target("ratio ~ 3", 1.0, True))


def test_every_threshold_training_metrics_writes_is_understood() -> None:
    """The strings come from training.metrics itself: a new target there fails here first."""
    source = (ROOT / "training" / "metrics.py").read_text()
    needed = set(re.findall(r'"((?:ratio|value) [<>=]+ [^"]+)"', source))
    needed = {t for t in needed if "{" not in t}  # the f-string one: its factors are below
    assert {"ratio < 1", "value <= reference + 2 SE"} <= needed
    # The f-string thresholds, with the factors every dataset's targets really use.
    formatted: set[str] = set()
    for t in {*metrics.TARGETS.values(), metrics.ISSUE_13}:
        formatted |= {f"ratio >= {f}" for _, _, f in t.ratio_at_least}
        formatted.add(f"ratio >= {t.class_agreement_factor}")
        if t.fid_affine_factor is not None:
            formatted.add(f"ratio <= {t.fid_affine_factor:g}")
    assert "ratio <= 2" in formatted  # issue 13's affine row
    for text in needed | formatted:
        cs.margin(_target(text, 1.0, True, value=0.01, reference_value=0.01))


def _row(name: str, *margins: float) -> dict:
    targets = [_target("ratio >= 1.0", m, m >= 1.0) for m in margins] + [
        _target("ratio >= 0.98", None, None)
    ]  # not applicable: ignored
    return {"name": name, "score": cs.score(targets)}


def test_rank_by_targets_met_then_by_the_worst_margin() -> None:
    rows = [
        _row("close-but-one-fails", 1.5, 1.2, 0.99),
        _row("all-pass-narrowly", 1.01, 1.02, 1.03),
        _row("all-pass-widely", 1.3, 1.4, 1.1),
        _row("two-fail", 2.0, 0.5, 0.98),
        {"name": "not-judged"},
    ]
    ranked = [r["name"] for r in cs.rank(rows)]
    assert ranked == [
        "all-pass-widely",
        "all-pass-narrowly",
        "close-but-one-fails",
        "two-fail",
        "not-judged",
    ]
    s = rows[0]["score"]
    assert (s["passed"], s["judged"], s["worst_margin"]) == (2, 3, 0.99)


def test_rate_skips_the_warm_up_lines() -> None:
    # 10 steps/s in the first second (warm-up), then 100 steps/s.
    records = [{"step": 10, "elapsed_s": 1.0}] + [
        {"step": 10 + 100 * i, "elapsed_s": 1.0 + i} for i in range(1, 7)
    ]
    assert cs.measured_rate(records) == pytest.approx(100.0)
    # Too few lines for a second half: the average since the loop began.
    assert cs.measured_rate(records[:2]) == pytest.approx(110 / 2.0)
    assert cs.measured_rate([]) is None


def test_calibrated_steps_end_at_the_deadline_and_keep_the_recipe() -> None:
    steps = cs.calibrated_steps(4000, 100.0, 300.0, 20.0, 0.5)
    assert steps == 4000 + int(0.95 * 100 * 280)
    assert cs.calibrated_steps(4000, None, 300.0, 20.0, 0.5) is None
    # The probe ran past where the decay would have started: not the recipe any more.
    assert cs.calibrated_steps(4000, 10.0, 30.0, 0.0, 0.5) is None


def test_non_finite_figures_become_null_and_are_named() -> None:
    clean, where = cs.finite({"a": [1.0, math.inf], "b": {"kl": -math.inf, "n": 3}})
    assert clean == {"a": [1.0, None], "b": {"kl": None, "n": 3}}
    assert where == [".a[1]", ".b.kl"]
    json.dumps(clean, allow_nan=False)


@pytest.mark.slow  # 2 probes + resumes, 2 dynamo exports, 2 judges: ~1-2 min on 2 shared cores
def test_the_sweep_probes_calibrates_judges_and_ships_a_winner(tmp_path: Path) -> None:
    data = fake_idx(fake_idx(tmp_path / "data", "mnist", 400), "fashion-mnist", 400)
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "training.cond_sweep", "--out", str(out), "--dataset", "mnist",
        "--only", "w64,w96", "--override=--width 4 --batch-size 16 --log-every 5",
        "--train-seconds", "45", "--probe-seconds", "18", "--eval-n", "60", "--final-n", "80",
        "--eval-threads", "1", "--parallel", "2", "--data-root", str(data),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "sweep.json").read_text())
    result = report["datasets"]["mnist"]
    rows = result["ranking"]
    assert {r["name"] for r in rows} == {"w64", "w96"}
    for r in rows:
        # The probe stopped the run, the resume took it to the step count it calibrated.
        assert r["probe"]["rc"] != 0 and r["probe"]["stopped_early"]
        assert r["probe"]["steps_per_s"] > 0 and r["steps"] > r["probe"]["step"]
        assert r["train"]["rc"] == 0 and r["step"] == r["steps"]
        assert r["n_per_set"] == 60 and r["score"]["judged"] == len(r["targets"])
    assert cs.rank(rows) == rows
    best = result["best"]
    assert best["candidate"] == rows[0]["name"] and best["n_per_set"] == 80
    shipped = json.loads((out / "best" / "mnist-dcgan" / "model.json").read_text())
    assert shipped["name"] == "mnist-dcgan" and shipped["conditioning"]["classes"]
    assert shipped["evaluation"]["command"].startswith(
        "python -m training.metrics models/mnist-dcgan"
    )
    card = (out / "best" / "mnist-dcgan" / "README.md").read_text()
    assert "Not evaluated at export" not in card and "## Evaluation" in card
    md = (out / "sweep.md").read_text()
    assert f"Shipped as `best/mnist-dcgan`: {best['candidate']}" in md
