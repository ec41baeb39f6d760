"""The committed classifiers (training/classifiers/*.onnx) and the code that makes them.

The ONNX files are what every FID_c / KID_c / class-histogram figure is measured with, so they
are checked as files: contract (names, shapes, dynamic batch), size, sidecar hash, accuracy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from fixtures.real_data import require_real_data

from training.classifier import (
    CLASSIFIER_DIR,
    FEATURE_DIM,
    SmallCNN,
    check_parity,
    export_onnx,
    random_shift,
    to_model_range,
)
from training.idx import load_split

TARGETS = {"mnist": 0.99, "fashion-mnist": 0.90}


def _session(dataset: str) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(CLASSIFIER_DIR / f"{dataset}.onnx"), providers=["CPUExecutionProvider"]
    )


def _test_subset(dataset: str, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    require_real_data(dataset, splits=("test",))
    images, labels = load_split(dataset, "test")
    keep = np.random.default_rng(0).choice(len(images), n, replace=False)
    return images[keep], labels[keep]


@pytest.mark.parametrize("dataset", sorted(TARGETS))
def test_committed_classifier_meets_its_accuracy_target(dataset: str) -> None:
    images, labels = _test_subset(dataset)
    logits, features = _session(dataset).run(
        ["logits", "features"], {"images": to_model_range(images)}
    )
    assert logits.shape == (len(images), 10)
    assert features.shape == (len(images), FEATURE_DIM)
    assert np.mean(logits.argmax(axis=1) == labels) >= TARGETS[dataset]


@pytest.mark.parametrize("dataset", sorted(TARGETS))
def test_committed_classifier_file_matches_the_contract(dataset: str) -> None:
    path = CLASSIFIER_DIR / f"{dataset}.onnx"
    assert path.stat().st_size < 1_000_000  # committed to git
    model = onnx.load(str(path))
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    (inp,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "images" and isinstance(dims[0], str) and dims[1:] == [1, 28, 28]
    assert [o.name for o in model.graph.output] == ["logits", "features"]

    sidecar = json.loads((CLASSIFIER_DIR / f"{dataset}.json").read_text())
    assert sidecar["onnx"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sidecar["test_accuracy"] >= TARGETS[dataset]
    assert sidecar["test_images"] == 10_000


def test_committed_classifier_scores_an_image_alike_in_any_batch() -> None:
    """The dynamic batch axis must not change results: features are per-image facts."""
    images = np.random.default_rng(1).uniform(-1, 1, (7, 1, 28, 28)).astype(np.float32)
    sess = _session("mnist")
    batched = sess.run(["features"], {"images": images})[0]
    single = sess.run(["features"], {"images": images[3:4]})[0]
    np.testing.assert_allclose(single[0], batched[3], rtol=1e-5, atol=1e-5)


def test_pixel_range_is_the_gans() -> None:
    u8 = np.zeros((1, 28, 28), dtype=np.uint8)
    u8[0, 0, 0] = 255
    x = to_model_range(u8)
    assert x.shape == (1, 1, 28, 28) and x.min() == -1.0 and x.max() == 1.0


def test_random_shift_translates_without_changing_shape() -> None:
    x = torch.full((5, 1, 28, 28), -1.0)
    x[:, 0, 14, 14] = 1.0
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(random_shift(x, 0, gen), x)
    shifted = random_shift(x, 2, gen)
    assert shifted.shape == x.shape
    for image in shifted[:, 0]:
        ((row, col),) = (image == 1.0).nonzero().tolist()
        assert abs(row - 14) <= 2 and abs(col - 14) <= 2


@pytest.mark.slow  # a dynamo export: ~5-20 s on the shared 2-core machine
def test_export_keeps_the_contract_and_matches_torch(tmp_path: Path) -> None:
    """An untrained net (BN statistics made non-trivial) exports to ORT within 1e-4 of torch."""
    torch.manual_seed(0)
    model = SmallCNN()
    model.train()
    with torch.no_grad():
        model(torch.randn(64, 1, 28, 28) * 0.5 + 0.2)
    model.eval()
    path = tmp_path / "c.onnx"
    export_onnx(model, path)
    images = np.random.default_rng(2).uniform(-1, 1, (9, 1, 28, 28)).astype(np.float32)
    assert check_parity(model, path, images) < 1e-4
