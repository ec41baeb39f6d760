"""docs/theory.md and its figures (training.theory_figures): generated, and rerunnable quickly."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from training import theory_figures as tf

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_committed_page_is_what_its_json_renders_to() -> None:
    result = json.loads((DOCS / tf.JSON_NAME).read_text())
    assert result["meta"]["quick"] is False
    assert tf.render(result, result["meta"]["command"]) == (DOCS / tf.MD_NAME).read_text()


def test_quick_run_writes_every_output(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    assert tf.main(["--quick", "--out", str(tmp_path)]) == 0
    torch.set_num_threads(threads)
    result = json.loads((tmp_path / tf.JSON_NAME).read_text())
    assert [r["theta"] for r in result["theta_sweep"]] == list(tf.QUICK.thetas)
    assert all(
        r["jsd_true"] == (0.0 if r["theta"] == 0 else tf.LOG2) for r in result["theta_sweep"]
    )
    stage = result["gradients"][0]
    assert len(stage["minimax"]) == len(stage["ns"]) == len(stage["d_steps"])
    for name in (tf.DIV_PNG, tf.GRAD_PNG):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / tf.MD_NAME).read_text()
    for r in result["theta_sweep"]:  # the page shows the measured numbers, not the template's
        assert f"| {r['theta']:g} | {r['jsd_true']:.3f} | {r['jsd_hat']:.3f} |" in md
    (tmp_path / tf.MD_NAME).write_text("stale")
    assert tf.main(["--render-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / tf.MD_NAME).read_text() == md
