"""The mode-collapse lab: budget arithmetic, the summary, and the --quick run end to end."""

from __future__ import annotations

import json
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


def test_variant_settings_reach_the_config() -> None:
    best = next(v for v in lab.VARIANTS if v.name == lab.BEST)
    cfg = lab.make_config(best, "grid25", 2, lab.FULL)
    assert cfg.seed == 2 and cfg.loss == best.loss
    # The lab's schedule is the trainer's own (TrainConfig.lr_decay), not a lab-only copy.
    assert cfg.lr_decay == best.lr_decay == 0.5 and cfg.extra["init"] == lab.FULL.init
    for key, value in {**best.params, **best.per_dataset.get("grid25", {})}.items():
        assert getattr(cfg, key) == value
    names = [v.name for v in lab.VARIANTS]
    assert len(set(names)) == len(names)
    # Every loss of training.losses has its plain row.
    from training.losses import LOSSES

    assert set(LOSSES) <= {v.name for v in lab.VARIANTS if v.kind == "loss"}


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
