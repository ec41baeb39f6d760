"""Honest quality figures for an exported model folder, measured with a frozen per-dataset classifier.

    python -m training.metrics models/NAME [--n 10000] [--data-root DIR] [--write]
                                           [--compare-weak models/WEAK]

Generates ``n`` images from seeds ``0 .. n-1`` (``contract.latents``, so they are exactly the images
the service serves for those seeds), quantises them to uint8 like the service does, and reports:

- class histogram under the classifier, which classes are missing or rare, KL(generated || real)
  and the mean top-1 confidence;
- FID_c and KID_c: Fréchet distance / kernel inception distance in the classifier's 128-d
  penultimate feature space against the real test set, next to the floor (real train vs real test,
  same sample size) and, with ``--compare-weak``, a ceiling (a deliberately weak model);
- the discriminator as a realness scorer: ROC AUC of real test images against generated,
  out-of-distribution (the other dataset) and uniform-noise images.

Everything here is numpy + onnxruntime (no torch): the metric functions are pure and reusable,
and ``evaluate_model_dir`` is what the exporter calls. ``--write`` stores the report under
``evaluation`` in model.json and touches nothing else there (the ONNX sha256s stay as they are).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import scipy.linalg

from contract.latents import latents
from training.idx import load_split

METRICS_FORMAT = "gan-eval/1"
CLASSIFIER_DIR = Path(__file__).resolve().parent / "classifiers"
OOD_DATASET = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}
CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
}  # fmt: skip
ORT_THREADS = int(os.environ.get("GAN_EVAL_THREADS", "2"))  # the dev machines are shared


# --------------------------------------------------------------------------------------------
# Pure metric functions (numpy in, float out)
# --------------------------------------------------------------------------------------------


def class_histogram(labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Fraction of ``labels`` in each class (sums to 1)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    return counts / max(counts.sum(), 1)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats; terms with p = 0 contribute 0, and p > 0 where q = 0 gives inf.

    No smoothing on purpose: an epsilon would make the figure depend on a constant we made up.
    """
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    support = p > 0
    if np.any(q[support] <= 0):
        return float("inf")
    return float(np.sum(p[support] * np.log(p[support] / q[support])))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row max so large logits do not overflow."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def mean_top1_confidence(logits: np.ndarray) -> float:
    """Mean over images of the classifier's highest class probability."""
    return float(softmax(logits).max(axis=1).mean())


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``features`` (N, D), in float64 for the matrix sqrt."""
    f = np.asarray(features, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)): the Fréchet distance of two Gaussians.

    ``sqrtm`` of a product of (near-)singular covariances can come back non-finite or with a
    small imaginary part from round-off (dead ReLU features make covariances singular). As in
    the reference FID code, a non-finite result is retried with ``eps`` added to both diagonals,
    and an imaginary part is dropped only if it is negligible next to the trace; a large one
    means the inputs are not covariances, which is an error, not a number to report.
    """
    diff = mu1 - mu2
    with warnings.catch_warnings():  # singular inputs are expected and handled right here
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.all(np.isfinite(covmean)):
            offset = np.eye(len(sigma1)) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        scale = max(1.0, float(np.trace(sigma1) + np.trace(sigma2)))
        if np.abs(np.diagonal(covmean).imag).max() > 1e-3 * scale:
            raise ValueError("sqrtm(S1 S2) has a large imaginary part: inputs are not covariances")
        covmean = covmean.real
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)  # round-off can give -1e-12 for identical inputs


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussian fits of two feature sets (N, D) and (M, D)."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3, the KID kernel (Bińkowski et al. 2018; torchmetrics default)."""
    k = x @ y.T / x.shape[1] + 1.0
    return k * k * k  # several times faster than ** 3 (which goes through pow)


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 estimate with the cubic polynomial kernel (within-set diagonals excluded).

    Unbiased means its expectation is exactly 0 for identical distributions, so small negative
    values are normal; that is what makes KID comparable across sample sizes, unlike FID.
    """
    m, n = len(x), len(y)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * k_xy.mean())


def kid(
    a: np.ndarray, b: np.ndarray, n_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID as in torchmetrics: mean and std of MMD^2 over random subsets (without replacement).

    Subsets keep the cost at O(n_subsets * subset_size^2) instead of O(N^2); ``subset_size`` is
    clipped to the smaller set so small evaluations (tests, quick looks) still work.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError("KID needs at least 2 samples per set")
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(
            a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)]
        )
        for _ in range(n_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, ties sharing the mean of their ranks (as scipy's rankdata)."""
    values = np.asarray(values)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    new_group = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + 1 + ends) / 2.0  # ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = mean_rank[np.cumsum(new_group) - 1]
    return ranks


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC = P(score(pos) > score(neg)) + 0.5 P(tie), via the Mann-Whitney U statistic.

    Ranks make it O(N log N) and exact with ties (a tie counts one half), with no thresholds.
    """
    positive, negative = np.ravel(positive), np.ravel(negative)
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError("AUC needs at least one positive and one negative score")
    scores = np.concatenate([positive, negative]).astype(np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError("AUC scores must be finite")
    ranks = average_ranks(scores)
    n_pos, n_neg = len(positive), len(negative)
    u = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


# --------------------------------------------------------------------------------------------
# Pixels: everything is judged as the uint8 the service shows / accepts
# --------------------------------------------------------------------------------------------


def to_uint8(x: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """The contract's ``to_uint8``: clip(round((x - lo) * 255 / (hi - lo)), 0, 255)."""
    lo, hi = value_range
    return np.clip(np.round((x - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def from_uint8(u8: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """The contract's upload path ``x = lo + u8 * (hi - lo) / 255``, as (N, 1, H, W) float32."""
    lo, hi = value_range
    x = lo + np.asarray(u8, dtype=np.float32) * np.float32((hi - lo) / 255.0)
    return x.reshape(len(x), 1, *x.shape[-2:]).astype(np.float32)


def uniform_noise_images(n: int, seed: int = 0) -> np.ndarray:
    """``n`` 28x28 uint8 images of i.i.d. uniform pixels: the easiest out-of-distribution case."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# ONNX helpers
# --------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _session(path: Path) -> ort.InferenceSession:
    """One CPU session per file version (a re-exported file at the same path gets a new one)."""
    stat = path.stat()
    return _cached_session(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _cached_session(path: str, _mtime_ns: int, _size: int) -> ort.InferenceSession:
    """Few threads: the evaluation shares machines with training."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = ORT_THREADS
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run_batched(
    path: Path, inputs: np.ndarray, input_name: str, outputs: list[str], batch: int = 500
) -> list[np.ndarray]:
    """Run an ONNX file over ``inputs`` in batches; returns each output concatenated."""
    sess = _session(Path(path))
    parts: list[list[np.ndarray]] = [[] for _ in outputs]
    for i in range(0, len(inputs), batch):
        for part, value in zip(
            parts, sess.run(outputs, {input_name: inputs[i : i + batch]}), strict=True
        ):
            part.append(value)
    return [np.concatenate(p) for p in parts]


def classifier_path(dataset: str) -> Path:
    path = CLASSIFIER_DIR / f"{dataset}.onnx"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} missing: run `python -m training.classifier --dataset {dataset}`"
        )
    return path


def classify(dataset: str, images_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(logits (N,10), features (N,128))`` of uint8 images under the dataset's classifier."""
    x = from_uint8(images_u8, (-1.0, 1.0))  # the classifier's input is u8 / 127.5 - 1
    logits, features = run_batched(classifier_path(dataset), x, "images", ["logits", "features"])
    return logits, features


# --------------------------------------------------------------------------------------------
# Model folders (docs/model-format.md)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelDir:
    """A loaded model folder: its manifest and the paths of its two graphs."""

    path: Path
    manifest: dict[str, Any]

    @property
    def dataset(self) -> str:
        dataset = self.manifest.get("training", {}).get("config", {}).get("dataset")
        if dataset not in OOD_DATASET:
            raise ValueError(
                f"{self.path}: training.config.dataset is {dataset!r}; "
                f"metrics exist for {sorted(OOD_DATASET)}"
            )
        return dataset

    @property
    def value_range(self) -> tuple[float, float]:
        lo, hi = self.manifest["image"]["value_range"]
        return float(lo), float(hi)

    def graph(self, role: str) -> tuple[Path, str, str]:
        """``(file, input name, output name)`` of ``generator`` or ``discriminator``."""
        entry = self.manifest["onnx"][role]
        return self.path / entry["file"], entry["input"], entry["output"]


def load_model_dir(path: Path | str, verify_sha256: bool = True) -> ModelDir:
    """Read model.json and check that the ONNX files are the ones it describes.

    The hash check ties the figures to the exact bytes: an evaluation of a file that was
    re-exported but not re-hashed would describe a model nobody serves.
    """
    path = Path(path)
    manifest = json.loads((path / "model.json").read_text())
    model = ModelDir(path, manifest)
    image = manifest["image"]
    if (image["channels"], image["height"], image["width"]) != (1, 28, 28):
        raise ValueError(f"{path}: the classifiers judge 1x28x28 images, got {image}")
    for role in ("generator", "discriminator"):
        file, _, _ = model.graph(role)
        expected = manifest["onnx"][role].get("sha256")
        if verify_sha256 and expected and sha256_file(file) != expected:
            raise ValueError(f"{file}: sha256 differs from model.json; re-export the model")
    return model


def generate_uint8(
    model: ModelDir, n: int, seed: int = 0, truncation: float = 1.0, batch: int = 500
) -> np.ndarray:
    """Images of seeds ``seed .. seed+n-1`` as the service would serve them: (n, 28, 28) uint8."""
    file, input_name, output_name = model.graph("generator")
    z = latents(seed, n, int(model.manifest["z_dim"]), truncation)
    (images,) = run_batched(file, z, input_name, [output_name], batch)
    return to_uint8(images, model.value_range).reshape(n, 28, 28)


def realness_scores(model: ModelDir, images_u8: np.ndarray) -> np.ndarray:
    """``a * logit + b`` of the manifest's realness calibration, in float64.

    realness = sigmoid(a * logit + b) is a strictly increasing function of this score, so ROC
    AUCs are identical; but sigmoid saturates to exactly 1.0 in floating point for a confident D,
    which would turn a clean separation into ties. AUCs therefore use this score.
    """
    file, input_name, output_name = model.graph("discriminator")
    (logits,) = run_batched(
        file, from_uint8(images_u8, model.value_range), input_name, [output_name]
    )
    cal = model.manifest.get("realness", {})
    a, b = float(cal.get("a", 1.0)), float(cal.get("b", 0.0))
    return a * logits.reshape(len(images_u8)).astype(np.float64) + b


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))  # no overflow warnings


# --------------------------------------------------------------------------------------------
# Real-data reference (independent of the model: cached per process)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """Real images and their classifier outputs; ``train_*`` is a subset the size of the fakes."""

    test_u8: np.ndarray
    test_labels: np.ndarray
    test_logits: np.ndarray
    test_features: np.ndarray
    train_features: np.ndarray
    ood_u8: np.ndarray
    ood_dataset: str


def _subset(n_total: int, n: int, seed: int) -> np.ndarray:
    """Sorted random indices (all of them when ``n >= n_total``): reproducible subsets."""
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))


@functools.lru_cache(maxsize=4)
def real_reference(
    dataset: str, n_fake: int, n_real: int = 10_000, data_root: str | None = None, seed: int = 0
) -> Reference:
    """Load and classify the real sets once per process (the exporter may evaluate many models).

    The floor uses ``n_fake`` training images so that it carries the same finite-sample bias as
    the model's own FID_c (FID is biased upwards, more so for small N).
    """
    test_u8, test_labels = load_split(dataset, "test", data_root)
    keep = _subset(len(test_u8), n_real, seed)
    test_u8, test_labels = test_u8[keep], test_labels[keep]
    train_u8, _ = load_split(dataset, "train", data_root)
    train_u8 = train_u8[_subset(len(train_u8), n_fake, seed + 1)]
    ood_dataset = OOD_DATASET[dataset]
    ood_u8, _ = load_split(ood_dataset, "test", data_root)
    ood_u8 = ood_u8[_subset(len(ood_u8), n_real, seed + 2)]
    test_logits, test_features = classify(dataset, test_u8)
    _, train_features = classify(dataset, train_u8)
    return Reference(
        test_u8, test_labels, test_logits, test_features, train_features, ood_u8, ood_dataset
    )


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def _r(x: float, digits: int = 6) -> float:
    return float(round(float(x), digits))


def class_report(dataset: str, gen_logits: np.ndarray, ref: Reference) -> dict[str, Any]:
    """Histogram, missing/rare classes, KL(generated || real), confidences.

    Direction KL(generated || real): the real histogram (the classifier's predictions on the real
    test set, so its own biases cancel) gives every class ~10%, so this direction is always
    finite and needs no smoothing constant; it is 0 for a perfectly balanced mix and at most
    log(1 / min real fraction) ~ 2.3 nats for a single-class collapse. The reverse, KL(real ||
    generated), is infinite as soon as one class is missing, which says less than listing the
    missing classes (done below) while making every such model incomparable.
    """
    names = CLASS_NAMES[dataset]
    gen_hist = class_histogram(gen_logits.argmax(axis=1))
    real_hist = class_histogram(ref.test_logits.argmax(axis=1))
    rare = [names[c] for c in range(10) if 0 < gen_hist[c] < 0.5 * real_hist[c]]
    return {
        "class_names": names,
        "generated_histogram": [_r(v, 4) for v in gen_hist],
        "real_test_histogram": [_r(v, 4) for v in real_hist],
        "all_classes_present": bool(np.all(gen_hist > 0)),
        "missing_classes": [names[c] for c in range(10) if gen_hist[c] == 0],
        "rare_classes": rare,  # present, but under half their real share
        "kl_generated_real_nats": _r(kl_divergence(gen_hist, real_hist)),
        "mean_top1_confidence": _r(mean_top1_confidence(gen_logits), 4),
        "real_test_mean_top1_confidence": _r(mean_top1_confidence(ref.test_logits), 4),
    }


def feature_report(
    gen_features: np.ndarray, ref: Reference, kid_subsets: int, kid_subset_size: int
) -> dict[str, Any]:
    """FID_c and KID_c of the fakes, and the same figures for real train vs real test (floor)."""
    test_stats = gaussian_stats(ref.test_features)
    kid_mean, kid_std = kid(gen_features, ref.test_features, kid_subsets, kid_subset_size)
    floor_mean, _ = kid(ref.train_features, ref.test_features, kid_subsets, kid_subset_size)
    return {
        "fid_c": _r(frechet_distance(*gaussian_stats(gen_features), *test_stats), 4),
        "fid_c_floor_real_train_vs_test": _r(
            frechet_distance(*gaussian_stats(ref.train_features), *test_stats), 4
        ),
        "kid_c": _r(kid_mean),
        "kid_c_std": _r(kid_std),
        "kid_c_floor_real_train_vs_test": _r(floor_mean),
        "kid_subsets": kid_subsets,
        "kid_subset_size": min(kid_subset_size, len(gen_features), len(ref.test_features)),
    }


def realness_report(model: ModelDir, gen_u8: np.ndarray, ref: Reference) -> dict[str, Any]:
    """ROC AUC of the realness score, real test images being the positives.

    1.0: D ranks every real image above every image of the other set; 0.5: D cannot tell them
    apart. For generated images 0.5 is the generator's success (or a D that learned nothing,
    which the OOD and noise AUCs expose); for OOD and noise, near 1.0 is what a realness score
    exposed to users needs.
    """
    real = realness_scores(model, ref.test_u8)
    sets = {
        "generated": realness_scores(model, gen_u8),
        "ood": realness_scores(model, ref.ood_u8),
        "noise": realness_scores(model, uniform_noise_images(len(ref.test_u8))),
    }
    report: dict[str, Any] = {"positives": "real test images", "ood_dataset": ref.ood_dataset}
    for name, scores in sets.items():
        report[f"auc_real_vs_{name}"] = _r(roc_auc(real, scores), 4)
    report["mean_realness"] = {
        name: _r(sigmoid(scores).mean(), 4) for name, scores in {"real": real, **sets}.items()
    }
    return report


def ceiling_report(
    weak_path: Path | str,
    dataset: str,
    ref: Reference,
    n: int,
    truncation: float,
    kid_subsets: int,
    kid_subset_size: int,
) -> dict[str, Any]:
    """FID_c / KID_c of a deliberately weak model (e.g. an early checkpoint), as a ceiling."""
    weak = load_model_dir(weak_path)
    if weak.dataset != dataset:
        raise ValueError(f"weak model {weak_path} is a {weak.dataset} model, not {dataset}")
    _, features = classify(dataset, generate_uint8(weak, n, 0, truncation))
    kid_mean, _ = kid(features, ref.test_features, kid_subsets, kid_subset_size)
    return {
        "model": weak.manifest.get("name", Path(weak_path).name),
        "step": weak.manifest.get("training", {}).get("step"),
        "fid_c": _r(fid_from_features(features, ref.test_features), 4),
        "kid_c": _r(kid_mean),
    }


def evaluate_model_dir(
    path: Path | str,
    n: int = 10_000,
    *,
    n_real: int = 10_000,
    data_root: str | Path | None = None,
    truncation: float = 1.0,
    weak: Path | str | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    display_path: str | None = None,
) -> dict[str, Any]:
    """Evaluate one model folder; returns the JSON-ready report (see EVALUATION.md).

    ``display_path`` is the folder named in the report's rerun command, for callers (the
    exporter) that evaluate a temporary folder before moving it to its final place.
    """
    start = time.perf_counter()
    model = load_model_dir(path)
    dataset = model.dataset
    ref = real_reference(dataset, n, n_real, None if data_root is None else str(data_root))
    gen_u8 = generate_uint8(model, n, 0, truncation)
    gen_logits, gen_features = classify(dataset, gen_u8)
    features = feature_report(gen_features, ref, kid_subsets, kid_subset_size)
    if weak is not None:
        features["ceiling_weak_model"] = ceiling_report(
            weak, dataset, ref, n, truncation, kid_subsets, kid_subset_size
        )
    classifier = classifier_path(dataset)
    return {
        "format": METRICS_FORMAT,
        "dataset": dataset,
        "generated": {"n": n, "seeds": [0, n - 1], "truncation": truncation, "as": "uint8"},
        "real_test_images": len(ref.test_u8),
        "evaluated_sha256": {
            role: model.manifest["onnx"][role].get("sha256") or sha256_file(model.graph(role)[0])
            for role in ("generator", "discriminator")
        },
        "classifier": {
            "file": f"training/classifiers/{classifier.name}",
            "sha256": sha256_file(classifier),
            "accuracy_on_reference": _r(
                float(np.mean(ref.test_logits.argmax(axis=1) == ref.test_labels)), 4
            ),
        },
        "classes": class_report(dataset, gen_logits, ref),
        "features": features,
        "realness": realness_report(model, gen_u8, ref),
        "seconds": _r(time.perf_counter() - start, 1),
        "command": _command(
            display_path or path,
            n,
            n_real,
            data_root,
            truncation,
            weak,
            kid_subsets,
            kid_subset_size,
        ),
    }


def _command(
    path: Path | str,
    n: int,
    n_real: int,
    data_root: Any,
    truncation: float,
    weak: Any,
    kid_subsets: int,
    kid_subset_size: int,
) -> str:
    """The CLI line that reproduces a report (defaults left out)."""
    parts = ["python -m training.metrics", str(path), f"--n {n}"]
    optional = {
        "--n-real": (n_real, 10_000),
        "--data-root": (data_root, None),
        "--truncation": (truncation, 1.0),
        "--compare-weak": (weak, None),
        "--kid-subsets": (kid_subsets, 100),
        "--kid-subset-size": (kid_subset_size, 1000),
    }
    parts += [f"{flag} {value}" for flag, (value, default) in optional.items() if value != default]
    return " ".join(parts)


def write_evaluation(path: Path | str, report: dict[str, Any]) -> None:
    """Replace ``evaluation`` in model.json, leaving every other key (the sha256s) as it was.

    Written to a temporary file and renamed, so a reader never sees half a manifest.
    """
    manifest_path = Path(path) / "model.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["evaluation"] = report
    tmp = manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, manifest_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="model folder (model.json + ONNX files)")
    parser.add_argument("--n", type=int, default=10_000, help="generated images (seeds 0..n-1)")
    parser.add_argument("--n-real", type=int, default=10_000, help="real test images used")
    parser.add_argument("--data-root", default=None, help="folder holding mnist/, fashion-mnist/")
    parser.add_argument("--truncation", type=float, default=1.0)
    parser.add_argument("--compare-weak", type=Path, default=None, help="weak model: FID ceiling")
    parser.add_argument("--kid-subsets", type=int, default=100)
    parser.add_argument("--kid-subset-size", type=int, default=1000)
    parser.add_argument("--write", action="store_true", help="store under evaluation in model.json")
    args = parser.parse_args(argv)
    report = evaluate_model_dir(
        args.model,
        args.n,
        n_real=args.n_real,
        data_root=args.data_root,
        truncation=args.truncation,
        weak=args.compare_weak,
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
    )
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.write:
        write_evaluation(args.model, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
