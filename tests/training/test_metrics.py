"""training.metrics: the metric functions against known values, and the CLI end to end.

The end-to-end test builds two model folders with the onnx helper API (no torch): a "replay"
generator whose images are real MNIST training digits (so it must score near the real-data
floor), and the shared fixtures' random Linear+Tanh generator as the weak ceiling.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from fixtures.tiny_models import build_tiny_model
from onnx import TensorProto, helper, numpy_helper

from training import metrics as M
from training.idx import DatasetNotFound, load_split

ROOT = Path(__file__).resolve().parents[2]


def _data_available() -> bool:
    try:
        load_split("mnist", "test")
        load_split("fashion-mnist", "test")
    except DatasetNotFound:
        return False
    return True


needs_data = pytest.mark.skipif(not _data_available(), reason="../shared/data not present")


# ------------------------------------------------------------------------------------ FID ----


def _correlated(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d))


def test_fid_of_a_set_against_itself_is_zero() -> None:
    x = _correlated(np.random.default_rng(0), 2000, 16)
    assert M.fid_from_features(x, x) == pytest.approx(0.0, abs=1e-6)


def test_fid_of_a_mean_shift_is_the_squared_shift() -> None:
    """Shifting a set changes only its mean, so FID must be exactly ||shift||^2 and grow with it."""
    x = _correlated(np.random.default_rng(1), 2000, 16)
    values = [M.fid_from_features(x, x + s) for s in (0.1, 0.5, 1.0, 2.0)]
    assert values == pytest.approx([16 * s * s for s in (0.1, 0.5, 1.0, 2.0)], rel=1e-6)
    assert values == sorted(values)


def test_fid_matches_the_closed_form_for_gaussians() -> None:
    """Two 8-d Gaussians with commuting covariances Q diag(a) Q^T, Q diag(b) Q^T, for which
    FID = ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2 = 5.621 exactly.

    Tolerance: the plug-in estimate from 20,000 samples per side scatters around that value with
    a standard deviation of 0.047 (measured over 100 seeds; mostly the noise of the mean
    difference, whose theoretical sd is 2 sqrt(dmu^T (S1 + S2) dmu / n) ~ 0.035) and a bias of
    +0.002 ((tr S1 + tr S2) / n). 0.25 is about 5 sd: a wrong formula (a missing factor 2 on
    the cross term moves it by ~13, dropping the trace term by ~1.6) cannot pass, noise cannot fail.
    """
    d, n = 8, 20_000
    rng = np.random.default_rng(123)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a, b = np.linspace(0.5, 3.0, d), np.linspace(2.0, 0.25, d)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    analytic = float((mu1 - mu2) @ (mu1 - mu2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(analytic, abs=1e-8)
    x = mu1 + rng.standard_normal((n, d)) @ np.linalg.cholesky(s1).T
    y = mu2 + rng.standard_normal((n, d)) @ np.linalg.cholesky(s2).T
    assert M.fid_from_features(x, y) == pytest.approx(analytic, abs=0.25)


def test_fid_survives_singular_covariances() -> None:
    """Dead ReLU units give all-zero feature columns; FID must stay finite and real."""
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((500, 8)), rng.standard_normal((500, 8)) + 1.0
    x[:, :3] = 0.0
    y[:, :3] = 0.0
    value = M.fid_from_features(x, y)
    assert np.isfinite(value)
    assert value == pytest.approx(5.0, abs=0.5)  # ||shift||^2 over the 5 live dimensions


# ------------------------------------------------------------------------------------ KID ----


def test_mmd2_unbiased_matches_a_pairwise_loop() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((5, 3)) + 0.5

    def k(u: np.ndarray, v: np.ndarray) -> float:
        return (u @ v / 3 + 1) ** 3

    xx = np.mean([k(x[i], x[j]) for i, j in itertools.permutations(range(4), 2)])
    yy = np.mean([k(y[i], y[j]) for i, j in itertools.permutations(range(5), 2)])
    xy = np.mean([k(u, v) for u in x for v in y])
    assert M.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift() -> None:
    """Same distribution: |KID| stays within its subset spread (it is unbiased, so it may be a
    little negative); shifted by 0.3 per dimension it is ~0.3, 50x the spread."""
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((2000, 16)), rng.standard_normal((2000, 16))
    same, same_std = M.kid(x, y, n_subsets=20, subset_size=500)
    shifted, shifted_std = M.kid(x, y + 0.3, n_subsets=20, subset_size=500)
    assert abs(same) < 2 * same_std
    assert shifted > 10 * shifted_std > 0
    assert shifted > 50 * abs(same)


# ------------------------------------------------------------------------------------ AUC ----


def test_average_ranks_share_ties() -> None:
    np.testing.assert_array_equal(M.average_ranks(np.array([3, 1, 3, 2])), [3.5, 1, 3.5, 2])


def test_auc_of_perfect_separation_is_one_and_of_reversed_zero() -> None:
    assert M.roc_auc(np.array([2.0, 3.0, 4.0]), np.array([-1.0, 0.0, 1.0])) == 1.0
    assert M.roc_auc(np.array([-1.0, 0.0]), np.array([2.0, 3.0, 4.0])) == 0.0


def test_auc_of_identical_scores_is_one_half() -> None:
    assert M.roc_auc(np.ones(7), np.ones(3)) == 0.5
    rng = np.random.default_rng(5)
    # sd of the AUC of two same-distribution samples of 5000: sqrt(10001 / (12 * 5000^2)) = 0.006
    assert M.roc_auc(rng.normal(size=5000), rng.normal(size=5000)) == pytest.approx(0.5, abs=0.03)


def test_auc_hand_computed_with_ties() -> None:
    """pos {0.9, 0.5, 0.5} vs neg {0.5, 0.1}: of 6 pairs, 4 wins and 2 ties (0.5 vs 0.5) -> 5/6."""
    assert M.roc_auc(np.array([0.9, 0.5, 0.5]), np.array([0.5, 0.1])) == pytest.approx(5 / 6)


def test_auc_equals_the_pairwise_definition() -> None:
    rng = np.random.default_rng(6)
    pos, neg = rng.integers(0, 5, 40), rng.integers(0, 4, 30)  # many ties
    pairs = [(p > q) + 0.5 * (p == q) for p in pos for q in neg]
    assert M.roc_auc(pos, neg) == pytest.approx(np.mean(pairs), rel=1e-12)


# ------------------------------------------------------------------------ classes, pixels ----


def test_kl_of_identical_histograms_is_zero_and_known_values() -> None:
    p = M.class_histogram(np.array([0, 1, 1, 2, 9]))
    assert M.kl_divergence(p, p) == 0.0
    assert M.kl_divergence(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))
    assert M.kl_divergence(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == float("inf")


def test_class_histogram_sums_to_one_over_ten_classes() -> None:
    hist = M.class_histogram(np.array([3, 3, 7, 0]))
    assert hist.shape == (10,)
    assert hist.sum() == pytest.approx(1.0)
    assert hist[3] == 0.5


def test_mean_confidence_of_uniform_and_confident_logits() -> None:
    assert M.mean_top1_confidence(np.zeros((4, 10))) == pytest.approx(0.1)
    assert M.mean_top1_confidence(np.eye(10)[:3] * 1000.0) == pytest.approx(1.0)


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_uint8_round_trip(value_range: tuple[float, float]) -> None:
    u8 = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    np.testing.assert_array_equal(
        M.to_uint8(M.from_uint8(u8, value_range), value_range)[0, 0], u8[0]
    )


# ----------------------------------------------------------------------------- end to end ----


def _replay_generator(path: Path, table: np.ndarray) -> str:
    """z (B, K) -> table[argmax(z)]: each seed replays one of K real images (range [-1, 1])."""
    graph = helper.make_graph(
        [
            helper.make_node("ArgMax", ["z"], ["idx"], axis=1, keepdims=0),
            helper.make_node("Gather", ["table", "idx"], ["images"], axis=0),
        ],
        "replay_generator",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["B", len(table)])],
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["B", 1, 28, 28])],
        initializer=[numpy_helper.from_array(table, "table")],
    )
    return _save(graph, path)


def _template_discriminator(path: Path, template: np.ndarray) -> str:
    """logit = <x, mean real image> / 784: high for digit-shaped images, ~0 for noise."""
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["images", "flat_shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["score"]),
            helper.make_node("Reshape", ["score", "out_shape"], ["logits"]),
        ],
        "template_discriminator",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["B", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B"])],
        initializer=[
            numpy_helper.from_array((template.reshape(784, 1) / 784).astype(np.float32), "w"),
            numpy_helper.from_array(np.array([-1, 784], dtype=np.int64), "flat_shape"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "out_shape"),
        ],
    )
    return _save(graph, path)


def _save(graph: onnx.GraphProto, path: Path) -> str:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _set_dataset(folder: Path, dataset: str) -> None:
    manifest = json.loads((folder / "model.json").read_text())
    manifest["training"]["config"]["dataset"] = dataset
    manifest["evaluation"] = {}
    (folder / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(replay, weak) MNIST model folders; replay reuses the fixture's model.json layout."""
    root = tmp_path_factory.mktemp("models")
    train_u8, _ = load_split("mnist", "train")
    table = M.from_uint8(train_u8[-1000:], (-1.0, 1.0))
    replay = build_tiny_model(root, name="replay", z_dim=len(table), seed=1)
    manifest = json.loads((replay / "model.json").read_text())
    manifest["onnx"]["generator"]["sha256"] = _replay_generator(replay / "generator.onnx", table)
    manifest["onnx"]["discriminator"]["sha256"] = _template_discriminator(
        replay / "discriminator.onnx", table.mean(axis=0)
    )
    (replay / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    _set_dataset(replay, "mnist")
    weak = build_tiny_model(root, name="weak", z_dim=8, seed=3)
    _set_dataset(weak, "mnist")
    return replay, weak


@needs_data
def test_metrics_cli_end_to_end(model_folders: tuple[Path, Path]) -> None:
    replay, weak = model_folders
    before = json.loads((replay / "model.json").read_text())
    onnx_bytes = {f: (replay / f).read_bytes() for f in ("generator.onnx", "discriminator.onnx")}
    cmd = [sys.executable, "-m", "training.metrics", str(replay), "--n", "500", "--n-real", "1000"]
    cmd += ["--kid-subsets", "20", "--compare-weak", str(weak), "--write"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    after = json.loads((replay / "model.json").read_text())
    assert after["evaluation"] == report
    assert {k: v for k, v in after.items() if k != "evaluation"} == {
        k: v for k, v in before.items() if k != "evaluation"
    }
    assert all((replay / f).read_bytes() == b for f, b in onnx_bytes.items())
    assert report["evaluated_sha256"]["generator"] == before["onnx"]["generator"]["sha256"]

    classes, features, realness = report["classes"], report["features"], report["realness"]
    assert report["classifier"]["accuracy_on_reference"] >= 0.99
    assert classes["all_classes_present"] and classes["missing_classes"] == []
    assert classes["kl_generated_real_nats"] < 0.1  # replayed real digits are class-balanced
    ceiling = features["ceiling_weak_model"]
    # Replayed real digits sit near the real-vs-real floor, far below the random generator.
    assert features["fid_c"] < 3 * features["fid_c_floor_real_train_vs_test"] + 1.0
    assert ceiling["fid_c"] > 10 * features["fid_c"]
    assert ceiling["kid_c"] > 10 * abs(features["kid_c"])
    assert realness["ood_dataset"] == "fashion-mnist"
    assert realness["auc_real_vs_noise"] > 0.95  # the template D rejects noise
    assert abs(realness["auc_real_vs_generated"] - 0.5) < 0.1  # and cannot tell replayed digits
    assert 0.0 <= realness["auc_real_vs_ood"] <= 1.0


@needs_data
def test_evaluation_refuses_a_model_whose_files_changed(
    model_folders: tuple[Path, Path], tmp_path: Path
) -> None:
    _, weak = model_folders
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ("model.json", "generator.onnx", "discriminator.onnx"):
        (broken / f).write_bytes((weak / f).read_bytes())
    (broken / "generator.onnx").write_bytes((weak / "generator.onnx").read_bytes() + b"\0")
    with pytest.raises(ValueError, match="sha256"):
        M.evaluate_model_dir(broken, 100)


def test_evaluation_needs_a_known_dataset(tmp_path: Path) -> None:
    folder = build_tiny_model(tmp_path, name="nodata")
    with pytest.raises(ValueError, match=r"training\.config\.dataset"):
        M.evaluate_model_dir(folder, 100)
