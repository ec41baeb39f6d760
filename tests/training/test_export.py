"""Export: a training run becomes a model folder the service loads, with checked ONNX parity."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from service.latents import latents
from training import export

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 1-step lsgan run with PacGAN packing (k=2), exported: exercises Platt realness and pack scoring."""
    base = tmp_path_factory.mktemp("export")
    run = base / "run"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "training.train",
            "--dataset",
            "mnist",
            "--arch",
            "dcgan28",
            "--loss",
            "lsgan",
            "--pack",
            "2",
            "--ema",
            "0.9",
            "--width",
            "8",
            "--batch-size",
            "16",
            "--steps",
            "2",
            "--ckpt-every",
            "1",
            "--sample-every",
            "1",
            "--out",
            str(run),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    out = base / "models" / "tiny-lsgan"
    manifest = export.export_run(run, "tiny-lsgan", out, evaluate=False)
    return run, out, manifest


def test_folder_and_manifest(exported):
    _, out, manifest = exported
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "discriminator.onnx",
        "generator.onnx",
        "model.json",
        "samples.png",
    ]
    on_disk = json.loads((out / "model.json").read_text())
    assert on_disk == manifest
    for kind in ("generator", "discriminator"):
        assert on_disk["onnx"][kind]["sha256"] == export.sha256_file(
            out / on_disk["onnx"][kind]["file"]
        )
    assert on_disk["image"] == {**on_disk["image"], "channels": 1, "height": 28, "width": 28}
    assert on_disk["latent"]["algorithm"] == "splitmix64-boxmuller/1"
    assert on_disk["training"]["generator_weights"] == "G_ema"
    assert on_disk["discriminator"] == {"pack": 2, "pack_scoring": "replicate"}
    assert on_disk["parity"]["max_abs_diff_generator"] <= export.PARITY_TOL
    assert on_disk["parity"]["max_abs_diff_discriminator"] <= export.PARITY_TOL
    # lsgan's D is not a log-odds: realness must come from a fitted calibration.
    assert on_disk["realness"]["method"] == "platt" and on_disk["realness"]["a"] != 1.0
    assert "python -m training.export" in (out / "README.md").read_text()


def test_the_service_loader_serves_what_torch_computes(exported, monkeypatch):
    from service.model_store import ModelStore
    from service.settings import Settings

    run, out, _ = exported
    monkeypatch.setenv("GAN_MODELS_DIR", str(out.parent))
    store = ModelStore.load(Settings.from_env(), cpu_only=True)
    model = store.get("tiny-lsgan")
    cfg, _, state = export.load_run(run)
    g, d, _ = export.rebuild_networks(cfg, state)
    export.recalibrate_batch_norm(g, cfg.z_dim)
    z = latents(123, 8, cfg.z_dim)
    with torch.no_grad():
        expected = g(torch.from_numpy(z)).numpy()
        # The packed D scores one image as the pack made of that image repeated.
        expected_logits = d(torch.from_numpy(expected).repeat(1, 2, 1, 1)).numpy()
    np.testing.assert_allclose(model.generate(z), expected, atol=1e-4)
    np.testing.assert_allclose(model.discriminate(expected), expected_logits, atol=1e-4)


def test_parity_failure_is_loud(exported):
    run, out, _ = exported
    cfg, _, state = export.load_run(run)
    g, d, _ = export.rebuild_networks(cfg, state)
    with torch.no_grad():
        next(g.parameters()).add_(0.5)  # torch now disagrees with the exported graph
    with pytest.raises(export.ParityError, match="disagree"):
        export.check_parity(
            g,
            export.SingleImageScorer(d, 2).eval(),
            out / "generator.onnx",
            out / "discriminator.onnx",
            cfg.z_dim,
            None,
        )


def test_platt_fit_recovers_known_parameters():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=20000) * 3
    labels = (rng.random(20000) < 1 / (1 + np.exp(-(0.5 * logits - 1.0)))).astype(float)
    a, b = export.fit_platt(logits, labels)
    assert abs(a - 0.5) < 0.05 and abs(b + 1.0) < 0.08


def test_cli_refuses_toy_runs_and_missing_runs(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.export",
            str(tmp_path / "nope"),
            "--name",
            "x",
            "--out",
            str(tmp_path / "m"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "no checkpoint" in r.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_export_of_an_rgb_folder_run_evaluates_what_it_can(tmp_path):
    """A 3x32x32 folder run has no classifier: the export must still succeed, with an
    evaluation that names what it could not compute (it used to die on the 1x28x28 check)."""
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "training.train", "--dataset", f"folder:{photos}"]
    cmd += ["--arch", "dcgan32", "--loss", "ns", "--width", "8", "--batch-size", "4"]
    cmd += ["--steps", "1", "--ckpt-every", "1", "--sample-every", "1", "--out", str(run)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=300)
    out = tmp_path / "models" / "rgb"
    manifest = export.export_run(run, "rgb", out)  # evaluate=True
    ev = json.loads((out / "model.json").read_text())["evaluation"]
    assert ev == manifest["evaluation"] and ev["image"] == "3x32x32"
    reasons = {f: g["reason"] for g in ev["not_computed"] for f in g["figures"]}
    assert "no classifier exists" in reasons["fid"] and "precision" in reasons
    assert len(ev["sets"]["generated"][0]["channel_mean"]) == 3
    card = (out / "README.md").read_text()
    assert "not computed:" in card and "no classifier exists" in card
