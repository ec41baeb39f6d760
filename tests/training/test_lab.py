"""The mode-collapse lab: budget arithmetic, the summary, and the --quick run end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from training import lab
from training.evaluate import main as evaluate_main


def test_every_loss_gets_the_same_number_of_updates() -> None:
    budget = lab.Budget(steps={"ring8": 300, "grid25": 600}, common={"width": 2, "batch_size": 16})
    for v in lab.VARIANTS:
        for ds, steps in budget.steps.items():
            cfg = lab.make_config(v, ds, 0, budget)
            assert cfg.n_critic is not None
            assert cfg.steps * (cfg.n_critic + 1) == pytest.approx(2 * steps, abs=cfg.n_critic + 1)
    assert lab.make_config(lab.Variant("w", "wgan-gp"), "grid25", 0, budget).steps == 200


def test_lr_decay_schedule() -> None:
    assert lab.lr_factor(0, 100, 0.0) == 1.0
    assert lab.lr_factor(49, 100, 0.5) == 1.0
    assert lab.lr_factor(50, 100, 0.5) == 1.0
    assert lab.lr_factor(75, 100, 0.5) == pytest.approx(0.5)
    assert lab.lr_factor(99, 100, 0.5) == pytest.approx(0.02)


def test_variant_settings_reach_the_config() -> None:
    best = next(v for v in lab.VARIANTS if v.name == lab.BEST)
    cfg = lab.make_config(best, "grid25", 2, lab.FULL)
    assert cfg.seed == 2 and cfg.loss == best.loss
    assert cfg.extra["lr_decay"] == best.lr_decay and cfg.extra["init"] == lab.FULL.init
    for key, value in {**best.params, **best.per_dataset.get("grid25", {})}.items():
        assert getattr(cfg, key) == value
    names = [v.name for v in lab.VARIANTS]
    assert len(set(names)) == len(names)
    # Every loss of training.losses has its plain row.
    from training.losses import LOSSES

    assert set(LOSSES) <= {v.name for v in lab.VARIANTS if v.kind == "loss"}


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
    variants = [lab.Variant("a", "ns"), lab.Variant(lab.BEST, "ns", kind="tuned")]
    runs = [
        _run("a", "grid25", 0, 3, 0.9, 2.0),
        _run("a", "grid25", 1, 5, 0.9, None),
        _run(lab.BEST, "grid25", 0, 25, 0.95, 0.01),
        _run(lab.BEST, "grid25", 1, 25, 0.89, 0.01),
    ]
    rows = {r["variant"]: r for r in lab.summarise(runs, variants)}
    a = rows["a"]
    assert a["modes"] == [3, 5] and a["modes_mean_std"] == (4.0, pytest.approx(math.sqrt(2)))
    assert a["kl_mean_std"] == (2.0, 0.0)  # the seed without HQ samples has no KL
    assert a["verdict"].startswith("collapses")
    best = rows[lab.BEST]
    assert best["verdict"].startswith("covers every mode")
    assert [p["met"] for p in best["targets"]["per_seed"]] == [True, False]  # HQ 0.89 < 0.90
    assert best["targets"]["met_all"] is False
    assert lab.verdict([24, 25], [0.95, 0.95], 25).startswith("drops modes")
    assert lab.verdict([0, 0], [0.0, 0.0], 25).startswith("no usable samples")


def test_quick_lab_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, runs = tmp_path / "docs", tmp_path / "runs"
    threads = torch.get_num_threads()
    assert lab.main(["--quick", "--out", str(out), "--runs-dir", str(runs)]) == 0
    assert torch.get_num_threads() == threads  # the in-process worker gave its thread setting back

    result = json.loads((out / lab.JSON_NAME).read_text())
    n_expected = len(lab.VARIANTS) * 2 * len(lab.QUICK.seeds)
    assert (
        result["meta"]["quick"] is True
        and result["meta"]["n_runs"] == len(result["runs"]) == n_expected
    )
    assert len(result["summary"]) == len(lab.VARIANTS) * 2
    assert all("samples" not in r for r in result["runs"])

    md = (out / lab.MD_NAME).read_text()
    assert "QUICK run" in md
    for name in [v.name for v in lab.VARIANTS] + [
        "published GAN",
        "published PacGAN4",
        "published PacGAN2",
    ]:
        assert f"| {name} |" in md or f"| **{name}** |" in md or f"| *{name}* |" in md
    assert "## Which losses collapse" in md

    png = (out / lab.PNG_NAME).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    # Every run is a run folder the evaluate CLI scores to the lab's own numbers.
    rec = next(r for r in result["runs"] if r["variant"] == "ns+pac4" and r["dataset"] == "ring8")
    capsys.readouterr()
    assert evaluate_main([rec["run_dir"]]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert (scored["modes"], scored["hq_fraction"], scored["reverse_kl"]) == (
        rec["modes"],
        rec["hq_fraction"],
        rec["reverse_kl"],
    )

    # The report can be rewritten from the JSON and the run folders alone.
    (out / lab.MD_NAME).write_text("stale")
    assert lab.main(["--render-only", "--out", str(out)]) == 0
    assert (out / lab.MD_NAME).read_text() == md
    assert json.loads((out / lab.JSON_NAME).read_text())["summary"] == result["summary"]


def test_quick_does_not_overwrite_a_full_report(tmp_path: Path) -> None:
    (tmp_path / lab.JSON_NAME).write_text(json.dumps({"meta": {"quick": False}}))
    with pytest.raises(SystemExit) as e:
        lab.main(["--quick", "--out", str(tmp_path), "--no-runs"])
    assert e.value.code == 2
