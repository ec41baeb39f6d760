"""The Stacked MNIST runner: which runs it (re)starts, and the report it renders."""

from __future__ import annotations

import json
from pathlib import Path

from training import stacked_mnist_bench as bench


def job(tmp_path: Path, recipe: str = "pacgan2", steps: int | None = None) -> bench.Job:
    return bench.Job(recipe, 1, tmp_path / f"{recipe}-s1", steps)


def test_every_recipe_file_is_a_valid_config() -> None:
    from training.config_file import read_config_file

    for recipe in bench.DESCRIPTIONS:
        values = read_config_file(bench.RECIPE_DIR / f"stacked-mnist-{recipe}.toml")
        assert values["dataset"] == "stacked-mnist" and values["arch"] == "dcgan28"
    pac = read_config_file(bench.RECIPE_DIR / "stacked-mnist-pacgan2.toml")
    base = read_config_file(bench.RECIPE_DIR / "stacked-mnist-dcgan.toml")
    # the baseline differs from the fix only in the fix's regularisers
    differing = {k for k in pac.keys() | base.keys() if pac.get(k) != base.get(k)}
    assert differing == {"pack", "ema", "lr_decay"}


def test_train_command_resumes_and_finished_reads_the_summary(tmp_path: Path) -> None:
    j = job(tmp_path)
    assert "--resume" not in bench.train_command(j) and not bench.finished(j)
    j.run_dir.mkdir()
    (j.run_dir / "ckpt-latest.pt").write_bytes(b"")
    assert "--resume" in bench.train_command(j)
    (j.run_dir / "summary.json").write_text(json.dumps({"step": 10, "steps": 20}))
    assert not bench.finished(j)
    (j.run_dir / "summary.json").write_text(json.dumps({"step": 20, "steps": 20}))
    assert bench.finished(j) and not bench.finished(job(tmp_path, steps=40))
    assert bench.train_command(job(tmp_path, steps=40))[-3:] == ["--steps", "40", "--resume"]


def test_render_puts_runs_beside_real_data_and_the_papers() -> None:
    def run(recipe: str, seed: int, modes: int, kl: float) -> dict:
        return {
            "recipe": recipe, "seed": seed, "modes": modes, "kl": kl, "steps": 100,
            "largest_mode_fraction": 0.002, "train_seconds": 120.0,
            "kl_of_marginals": 0.01, "mean_confidence": 0.95,
            "target_met": modes >= 1000 and kl <= bench.TARGET_KL,
        }  # fmt: skip

    results = {
        "command": "python -m training.stacked_mnist_bench",
        "generated": "now",
        "machine": "test",
        "real": {
            "modes": 1000,
            "kl": 0.0249,
            "largest_mode_fraction": 0.0018,
            "true_labels": {"kl": 0.0248},
            "triple_error_rate": 0.016,
        },
        "chance_floor": {"kl_mean": 0.0194, "kl_p95": 0.0206},
        "runs": [
            run("pacgan2", 0, 1000, 0.028),
            run("pacgan2", 1, 999, 0.04),
            run("dcgan", 0, 700, 0.9),
        ],
    }
    text = bench.render(results)
    assert "| **pacgan2** | 0 1 | 1000 999 | 0.028 0.040 | 0.010 0.010 | 0.95 0.95 |" in text
    assert "| 1 of 2 |" in text
    assert "| **dcgan** | 0 | 700 | 0.900 |" in text and "| 0 of 1 |" in text
    assert "*real stacked test images*" in text and "*published VEEGAN*" in text


def test_keep_runs_replaces_a_rescored_run_and_appends_new_ones() -> None:
    kept = [
        {"recipe": "pacgan2", "seed": 0, "kl": 0.18},
        {"recipe": "dcgan", "seed": 0, "kl": 0.17},
    ]
    scored = [
        {"recipe": "dcgan", "seed": 0, "kl": 0.16},
        {"recipe": "hinge", "seed": 0, "kl": 0.11},
    ]
    merged = bench.merge_runs(kept, scored)
    assert [(r["recipe"], r["kl"]) for r in merged] == [
        ("pacgan2", 0.18),
        ("dcgan", 0.16),
        ("hinge", 0.11),
    ]
