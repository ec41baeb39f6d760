"""Honest quality figures for an exported model folder, each beside the same figure for real data.

    python -m training.metrics models/NAME [--n 10000] [--seed-sets 0,2000000000] [--json]
                                           [--data-root DIR] [--write] [--compare-weak models/WEAK]

Generates ``n`` images for each seed set (``contract.latents``, so they are exactly the images the
service serves for those seeds; a class-conditional model gets class ``seed mod K``), quantises
them to uint8 like the service does, and measures them in the 128-d feature space of a frozen
per-dataset classifier against a random subset of the real training split (as many images):

- FID and KID, improved precision/recall (k=3), density/coverage (k=5), the class histogram's
  KL, the mean top-1 confidence, a nearest-neighbour memorisation check against the whole
  training split (pixel and feature space), and for conditional models class agreement;
- each beside the same figures for real test images (the real-data reference) and for two
  degradations of them (Gaussian blur sigma 1 px; random shifts/rotations), per seed set and as
  mean and range, with the targets of issue 13 as ratios and pass/fail;
- the realness battery: AUC and mean realness of real test images against all-black, all-white,
  mid-grey, uniform noise, inverted, blurred (sigma 2) and the other dataset's images.

Datasets: mnist and fashion-mnist (1x28x28, targets of issue 13) and cifar10 (3x32x32, targets
of issue 17; its real images here are JPEG copies, which every figure says). What each dataset
brings (classifier file, input shape, class names, "other dataset") is in
training.metrics_datasets. A model without a classifier for its dataset or shape (e.g. a
3x32x32 folder model) gets a report that names each figure it lacks and why, plus pixel
statistics and mean realness.

Everything here is numpy + scipy + onnxruntime (no torch): the metric functions are pure and
reusable, and ``evaluate_model_dir`` is what the exporter calls. ``--write`` stores the report
under ``evaluation`` in model.json and touches nothing else there (the ONNX sha256s stay).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
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

from contract import pixels
from contract.files import atomic_write_text, sha256_file
from contract.latents import classes_for_seeds, latents
from contract.manifest import Manifest, read_manifest
from contract.onnx_runtime import cpu_session
from training import metrics_datasets as datasets
from training import real_images, stacked_mnist, swd
from training.metrics_text import render_report, replace_card_evaluation
from training.neighbours import Manifold, nearest_sq_distances, precision_recall_density_coverage
from training.reference_images import (
    AFFINE_MAX_DEGREES,
    AFFINE_MAX_SHIFT,
    AFFINE_SEED,
    BLUR_SIGMA,
    REALNESS_BLUR_SIGMA,
    constant_images,
    gaussian_blur,
    inverted,
    random_affine,
    uniform_noise_images,
)

METRICS_FORMAT = "gan-eval/2"
CLASSIFIER_DIR = datasets.CLASSIFIER_DIR
ORT_THREADS = int(os.environ.get("GAN_EVAL_THREADS", "2"))  # the dev machines are shared
# The second set starts far from the seeds users try and from the exporter's calibration latents
# (1e9 ..): two independent samples of the generator, so the spread between them is visible.
SEED_SETS = (0, 2_000_000_000)
K_PRECISION_RECALL = 3  # Kynkäänniemi et al. 2019
K_DENSITY_COVERAGE = 5  # Naeem et al. 2020
MEMORISATION_PERCENTILE = 1.0
REALNESS_AUC_TARGET = 0.99
REALNESS_MEAN_TARGET = 0.05
# SWD images per set: the paper used 16,384; each set costs ~N x 128 patches to sort per level.
SWD_IMAGES = 4096


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


def from_uint8(u8: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """The contract's upload path (``contract.pixels``) as (N, C, H, W) float32; (N, H, W) grey
    images get their channel axis."""
    u8 = np.asarray(u8)
    return pixels.from_uint8(u8[:, None] if u8.ndim == 3 else u8, value_range)


def _pixels(u8: np.ndarray) -> np.ndarray:
    """(N, C*H*W) float32 in [0, 1]: the space of the pixel-space nearest-neighbour check."""
    return (np.asarray(u8, dtype=np.float32) / 255.0).reshape(len(u8), -1)


# --------------------------------------------------------------------------------------------
# ONNX helpers
# --------------------------------------------------------------------------------------------


def _session(path: Path) -> ort.InferenceSession:
    """One CPU session per file version (a re-exported file at the same path gets a new one)."""
    stat = path.stat()
    return _cached_session(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _cached_session(path: str, _mtime_ns: int, _size: int) -> ort.InferenceSession:
    """Few threads: the evaluation shares machines with training."""
    return cpu_session(path, ORT_THREADS)


def run_batched(
    path: Path, feeds: dict[str, np.ndarray], outputs: list[str], batch: int = 500
) -> list[np.ndarray]:
    """Run an ONNX file over ``feeds`` (equal first axes) in batches; each output concatenated."""
    sess = _session(Path(path))
    n = len(next(iter(feeds.values())))
    parts: list[list[np.ndarray]] = [[] for _ in outputs]
    for i in range(0, n, batch):
        values = sess.run(outputs, {name: v[i : i + batch] for name, v in feeds.items()})
        for part, value in zip(parts, values, strict=True):
            part.append(value)
    return [np.concatenate(p) for p in parts]


def classifier_path(dataset: str) -> Path:
    spec = datasets.classifier_spec(dataset, CLASSIFIER_DIR)
    if spec is None:
        raise FileNotFoundError(
            f"{CLASSIFIER_DIR / dataset}.onnx/.json missing: run "
            f"`python -m training.classifier --dataset {dataset}`"
        )
    return spec.path


def class_names(dataset: str) -> list[str]:
    """The classifier's class names (index = its logit), from its JSON or the dataset's list."""
    spec = datasets.classifier_spec(dataset, CLASSIFIER_DIR)
    if spec is None:
        raise FileNotFoundError(f"no classifier for {dataset!r} in {CLASSIFIER_DIR}")
    return spec.class_names


def classify(dataset: str, images_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(logits (N,10), features (N,128))`` of uint8 images under the dataset's classifier."""
    x = from_uint8(images_u8, (-1.0, 1.0))  # the classifier's input is u8 / 127.5 - 1
    logits, features = run_batched(classifier_path(dataset), {"images": x}, ["logits", "features"])
    return logits, features


# --------------------------------------------------------------------------------------------
# Model folders (docs/model-format.md)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelDir:
    """A loaded model folder: its manifest and the paths of its two graphs."""

    path: Path
    manifest: dict[str, Any]
    parsed: Manifest

    @property
    def dataset(self) -> str:
        dataset = self.manifest.get("training", {}).get("config", {}).get("dataset")
        if not isinstance(dataset, str) or not dataset:
            raise ValueError(
                f"{self.path}: training.config.dataset is {dataset!r}; the evaluation needs to "
                "know which real data the model imitates"
            )
        return dataset

    @property
    def image_shape(self) -> tuple[int, int, int]:
        image = self.manifest["image"]
        return int(image["channels"]), int(image["height"]), int(image["width"])

    @property
    def value_range(self) -> tuple[float, float]:
        lo, hi = self.manifest["image"]["value_range"]
        return float(lo), float(hi)

    @property
    def class_names(self) -> list[str] | None:
        """The classes of a class-conditional model (index = the generator's class input), else None."""
        conditioning = self.manifest.get("conditioning")
        return [str(c) for c in conditioning["classes"]] if conditioning else None

    def graph(self, role: str) -> tuple[Path, str, str]:
        """``(file, input name, output name)`` of ``generator`` or ``discriminator``."""
        entry = self.manifest["onnx"][role]
        return self.path / entry["file"], entry["input"], entry["output"]


def load_model_dir(path: Path | str, verify_sha256: bool = True) -> ModelDir:
    """Read model.json through the contract's reader and check that the ONNX files are the ones
    it describes.

    The hash check ties the figures to the exact bytes: an evaluation of a file that was
    re-exported but not re-hashed would describe a model nobody serves.
    """
    path = Path(path)
    parsed = read_manifest(path)
    manifest = parsed.raw
    model = ModelDir(path, manifest, parsed)
    for role in ("generator", "discriminator"):
        file, _, _ = model.graph(role)
        expected = manifest["onnx"][role].get("sha256")
        if verify_sha256 and expected and sha256_file(file) != expected:
            raise ValueError(f"{file}: sha256 differs from model.json; re-export the model")
    return model


def balanced_classes(seeds: np.ndarray, num_classes: int) -> np.ndarray:
    """The evaluation's class of seed s, ``s mod K``: every class exactly n/K times for n
    consecutive seeds, so agreement is measured on equal footing per class. (The service's own
    draw for requests without a class, ``classes_for_seeds``, is balanced only on average.)"""
    return (np.asarray(seeds, dtype=np.uint64) % np.uint64(num_classes)).astype(np.int64)


def generate_uint8(
    model: ModelDir,
    n: int,
    seed: int = 0,
    truncation: float = 1.0,
    classes: np.ndarray | None = None,
    batch: int = 500,
) -> np.ndarray:
    """Images of seeds ``seed .. seed+n-1`` as the service would serve them: (n, C, H, W) uint8.

    A class-conditional model gets ``classes`` (int64, one per seed); without them it gets the
    service's default draw, so the images are exactly what a request naming no class returns.
    """
    file, input_name, output_name = model.graph("generator")
    feeds = {input_name: latents(seed, n, int(model.manifest["z_dim"]), truncation)}
    names = model.class_names
    if names is not None:
        if classes is None:
            classes = classes_for_seeds(np.arange(seed, seed + n, dtype=np.uint64), len(names))
        assert model.parsed.conditioning is not None
        feeds[model.parsed.conditioning.input] = np.asarray(classes, np.int64)
    (images,) = run_batched(file, feeds, [output_name], batch)
    return pixels.to_uint8(images, model.value_range).reshape(n, *model.image_shape)


def realness_scores(
    model: ModelDir, images_u8: np.ndarray, classes: np.ndarray | None = None
) -> np.ndarray:
    """The score every realness figure ranks by: the log of the realness the service shows,
    float64 (contract/realness.py: the D logit's factor times the out-of-distribution factor).

    A class-conditional D gives one logit per class; with ``classes`` that column is scored,
    without (an upload names no class) ``logsumexp_k - log K``, as the service does. Not the
    realness itself, whose float64 rounds to exactly 0 or 1 for confident inputs, which would
    turn a clean separation into ties in the AUCs; :func:`realness_from_score` gives the realness back.
    """
    file, input_name, output_name = model.graph("discriminator")
    x = from_uint8(images_u8, model.value_range)
    spec = model.parsed.realness
    names = [output_name] + ([spec.ood.output] if spec.ood is not None else [])
    outputs = run_batched(file, {input_name: x}, names)
    logits = outputs[0].astype(np.float64)
    logits = logits.reshape(len(x)) if logits.ndim == 1 or logits.shape[1:] == (1,) else logits
    return spec.log_realness(logits, outputs[1] if spec.ood is not None else None, classes)


def realness_from_score(score: np.ndarray) -> np.ndarray:
    """Realness in [0, 1] from :func:`realness_scores`."""
    return np.exp(np.asarray(score, dtype=np.float64))


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def classifier_unavailable(model: ModelDir) -> str | None:
    """Why the feature-space figures cannot be computed for ``model``, or None when they can."""
    dataset = model.dataset
    spec = datasets.classifier_spec(dataset, CLASSIFIER_DIR)
    if spec is None:
        return (
            f"no classifier exists for dataset {dataset!r} (training/classifiers/ has "
            f"{', '.join(datasets.available_classifiers(CLASSIFIER_DIR))}; train one with "
            "training.classifier)"
        )
    if model.image_shape != spec.shape:
        return (
            f"the {dataset} classifier judges {_shape_text(spec.shape)} images and this model "
            f"makes {_shape_text(model.image_shape)}; the figures would need a classifier "
            "trained at that size"
        )
    return None


def real_data_unavailable(model: ModelDir, data_root: str | None = None) -> str | None:
    """Why labelled real images of the model's kind cannot be read here, or None when they can."""
    dataset = model.dataset
    if dataset not in datasets.LABELLED_DATASETS:
        return (
            f"pixel memorisation and the realness AUCs are measured for "
            f"{', '.join(datasets.LABELLED_DATASETS)} only; {dataset!r} is not one (its "
            "real images serve the SWD, under swd)"
        )
    native = real_images.NATIVE_SHAPES[dataset]
    if model.image_shape != native:
        return (
            f"the {dataset} files hold {_shape_text(native)} images and this model makes "
            f"{_shape_text(model.image_shape)}"
        )
    return datasets.missing_real_data(dataset, data_root)


# --------------------------------------------------------------------------------------------
# Real-data reference (independent of the model: cached per process)
# --------------------------------------------------------------------------------------------


def _subset(n_total: int, n: int, seed: int) -> np.ndarray:
    """Sorted random indices (all of them when ``n >= n_total``): reproducible subsets."""
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))


@dataclass(frozen=True)
class Classified:
    """A set of uint8 images with what the classifier says about them and, if known, their class.

    ``classes``: the true labels of real images, the requested classes of a conditional
    generator's images, None for an unconditional generator.
    """

    u8: np.ndarray
    logits: np.ndarray
    features: np.ndarray
    classes: np.ndarray | None

    @classmethod
    def of(cls, dataset: str, u8: np.ndarray, classes: np.ndarray | None) -> Classified:
        logits, features = classify(dataset, u8)
        return cls(u8, logits, features, classes)


@dataclass(frozen=True)
class Reference:
    """The real data every candidate set is measured against, and the real candidate sets.

    The reference is a random subset of the training split with as many images as each
    generated set, so FID's finite-sample bias and the k-NN radii are the same for every
    candidate. The real candidates are test images (held out: a degraded *training* image would
    sit right next to its own original in the reference) and their degraded copies.
    """

    dataset: str
    n: int
    train: Classified  # the whole training split: the memorisation check's pool
    train_pixels: np.ndarray
    reference_index: np.ndarray
    reference_features: np.ndarray
    reference_stats: tuple[np.ndarray, np.ndarray]
    reference_histogram: np.ndarray
    manifold: Manifold
    test_all: Classified  # the realness battery's positives
    real_sets: dict[str, Classified]  # real_test, blur_sigma1, affine (same images, degraded)
    memorisation_threshold: dict[str, float]  # 1st percentile of half A's NN distances
    realness_negatives: dict[str, np.ndarray]  # what a realness score must rank below real
    ood_dataset: str  # what other_dataset is, or why there is none
    pixels: str | None  # what the real pixels are when not the original (CIFAR-10 JPEG copies)
    real_figures: dict[str, dict[str, Any]]  # the real sets' figures, once per process
    seconds: float


def _nn_distances(
    ref_pool: tuple[np.ndarray, np.ndarray], u8: np.ndarray, features: np.ndarray
) -> dict[str, np.ndarray]:
    """Distances of each image to its nearest training image: pixel ([0, 1] pixels) and feature."""
    pool_pixels, pool_features = ref_pool
    pixel = np.sqrt(nearest_sq_distances(_pixels(u8), pool_pixels, dtype=np.float32))
    feature = np.sqrt(nearest_sq_distances(features, pool_features))
    return {"pixel": pixel, "feature": feature}


@functools.lru_cache(maxsize=2)
def real_reference(
    dataset: str,
    n: int,
    n_real: int = 10_000,
    data_root: str | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> Reference:
    """Load, degrade and classify the real sets, and measure them, once per process (the exporter
    may evaluate many models; the CLI evaluates several seed sets against the same reference)."""
    start = time.perf_counter()
    train_u8, train_labels = datasets.labelled_split(dataset, "train", data_root)
    test_u8, test_labels = datasets.labelled_split(dataset, "test", data_root)
    keep = _subset(len(test_u8), n_real, seed)
    labels = test_labels[keep].astype(np.int64)
    test_all = Classified.of(dataset, test_u8[keep], labels)
    train = Classified.of(dataset, train_u8, train_labels.astype(np.int64))
    reference_index = _subset(len(train_u8), n, seed + 1)
    reference_features = train.features[reference_index]

    # The real candidate: as many test images as generated ones (all of them at n >= n_real).
    pick = _subset(len(test_all.u8), n, seed + 3)
    test_u8_n, labels_n = test_all.u8[pick], labels[pick]
    real_sets = {
        "real_test": Classified(
            test_u8_n, test_all.logits[pick], test_all.features[pick], labels_n
        ),
        "blur_sigma1": Classified.of(dataset, gaussian_blur(test_u8_n, BLUR_SIGMA), labels_n),
        "affine": Classified.of(dataset, random_affine(test_u8_n), labels_n),
    }
    train_pixels = _pixels(train.u8)

    # Memorisation rule: half A of the real test candidate sets the threshold, half B measures
    # the real figure, so the real fraction is an honest held-out ~1%, not 1% by construction.
    halves = np.random.default_rng(seed + 4).permutation(len(pick))
    half_a, half_b = np.sort(halves[: len(pick) // 2]), np.sort(halves[len(pick) // 2 :])
    pool = (train_pixels, train.features)
    nn_a = _nn_distances(pool, test_u8_n[half_a], real_sets["real_test"].features[half_a])
    threshold = {
        space: float(np.percentile(d, MEMORISATION_PERCENTILE)) for space, d in nn_a.items()
    }

    other = datasets.other_dataset(dataset, n_real, data_root, seed + 2)
    negatives = {
        **trivial_images(test_all.u8.shape[1:], len(test_all.u8)),
        "inverted_real": inverted(test_all.u8),
        "real_blurred_sigma2": gaussian_blur(test_all.u8, REALNESS_BLUR_SIGMA),
    }
    if isinstance(other, str):
        ood_dataset = other  # the reason it is left out, which the report shows in its place
    else:
        ood_dataset, negatives["other_dataset"] = other
    reference = Reference(
        dataset=dataset,
        n=n,
        train=train,
        train_pixels=train_pixels,
        reference_index=reference_index,
        reference_features=reference_features,
        reference_stats=gaussian_stats(reference_features),
        reference_histogram=class_histogram(train.logits[reference_index].argmax(axis=1)),
        manifold=Manifold.of(reference_features, K_PRECISION_RECALL, K_DENSITY_COVERAGE),
        test_all=test_all,
        real_sets=real_sets,
        memorisation_threshold=threshold,
        realness_negatives=negatives,
        ood_dataset=ood_dataset,
        pixels=datasets.pixels_label(dataset, data_root),
        real_figures={},
        seconds=0.0,
    )
    for name, images in real_sets.items():
        rows = half_b if name == "real_test" else None
        reference.real_figures[name] = set_figures(
            reference, images, kid_subsets, kid_subset_size, memorisation_rows=rows
        )
    return dataclasses.replace(reference, seconds=time.perf_counter() - start)


# --------------------------------------------------------------------------------------------
# Figures of one candidate set against the reference
# --------------------------------------------------------------------------------------------


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else float(round(float(x), digits))


def _per_class_agreement(predicted: np.ndarray, classes: np.ndarray, k: int) -> list[float | None]:
    return [
        _r(float(np.mean(predicted[classes == c] == c)), 4) if np.any(classes == c) else None
        for c in range(k)
    ]


def set_figures(
    ref: Reference,
    images: Classified,
    kid_subsets: int,
    kid_subset_size: int,
    memorisation_rows: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every quality figure of one candidate set, measured the same way for real and generated.

    ``class_agreement``: the fraction of images the classifier puts in their class (the
    requested one for a conditional generator, the label for real images: there it is the
    classifier's accuracy). ``memorisation_rows`` restricts the memorisation figure to the real
    test images that did not set its threshold.
    """
    names = class_names(ref.dataset)
    predicted = images.logits.argmax(axis=1)
    hist = class_histogram(predicted, len(names))
    kid_mean, kid_std = kid(images.features, ref.reference_features, kid_subsets, kid_subset_size)
    figures: dict[str, Any] = {
        "n": len(images.u8),
        "fid": _r(frechet_distance(*gaussian_stats(images.features), *ref.reference_stats), 4),
        "kid": _r(kid_mean),
        "kid_std": _r(kid_std),
        **{
            key: _r(value, 4)
            for key, value in precision_recall_density_coverage(
                ref.manifold, images.features, K_PRECISION_RECALL, K_DENSITY_COVERAGE
            ).items()
        },
        "class_histogram": [_r(v, 4) for v in hist],
        "kl_vs_reference_nats": _r(kl_divergence(hist, ref.reference_histogram)),
        "missing_classes": [names[c] for c in range(len(names)) if hist[c] == 0],
        "rare_classes": [
            names[c] for c in range(len(names)) if 0 < hist[c] < 0.5 * ref.reference_histogram[c]
        ],
        "mean_top1_confidence": _r(mean_top1_confidence(images.logits), 4),
        "class_agreement": None,
        "class_agreement_per_class": None,
    }
    if images.classes is not None:
        figures["class_agreement"] = _r(float(np.mean(predicted == images.classes)), 4)
        figures["class_agreement_per_class"] = _per_class_agreement(
            predicted, images.classes, len(names)
        )
    rows = np.arange(len(images.u8)) if memorisation_rows is None else memorisation_rows
    distances = _nn_distances(
        (ref.train_pixels, ref.train.features), images.u8[rows], images.features[rows]
    )
    figures["memorisation"] = {
        space: {
            "n": len(rows),
            "fraction_closer_than_threshold": _r(
                float(np.mean(d < ref.memorisation_threshold[space])), 5
            ),
            "threshold": _r(ref.memorisation_threshold[space], 4),
            "median_nn_distance": _r(float(np.median(d)), 4),
        }
        for space, d in distances.items()
    }
    return figures


def _aggregate(per_set: list[Any]) -> tuple[Any, Any]:
    """(mean, [min, max]) over seed sets, field by field; non-numeric fields kept when equal."""
    first = per_set[0]
    if isinstance(first, dict):
        pairs = {key: _aggregate([s[key] for s in per_set]) for key in first}
        means = {key: pair[0] for key, pair in pairs.items()}
        ranges = {key: pair[1] for key, pair in pairs.items() if pair[1] is not None}
        return means, ranges or None
    if isinstance(first, bool) or first is None or isinstance(first, str):
        return (first if all(s == first for s in per_set) else None), None
    if isinstance(first, int | float):
        values = [float(s) for s in per_set]
        return _r(float(np.mean(values))), [_r(min(values)), _r(max(values))]
    if isinstance(first, list) and all(isinstance(v, str) for s in per_set for v in s):
        return list(dict.fromkeys(v for s in per_set for v in s)), None  # e.g. missing in any set
    if isinstance(first, list) and all(isinstance(v, int | float) for s in per_set for v in s):
        return [_r(float(np.mean(col))) for col in zip(*per_set, strict=True)], None
    return (first if all(s == first for s in per_set) else None), None


# --------------------------------------------------------------------------------------------
# Targets (issue 13: mnist, fashion-mnist; issue 17: cifar10)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    """One issue's quality targets: factors of the real test images' figures.

    ``ratio_at_least``: (figure, label, factor) rows, generated >= factor x real. The FID rows
    compare with the degraded references instead; ``fid_affine_factor`` None drops that row.
    """

    issue: str
    ratio_at_least: tuple[tuple[str, str, float], ...]
    class_agreement_factor: float
    fid_affine_factor: float | None


ISSUE_13 = Targets(
    issue="issue 13",
    ratio_at_least=(
        ("precision", "precision", 0.85),
        ("recall", "recall", 0.90),
        ("density", "density", 0.75),
        ("coverage", "coverage", 0.75),
        ("mean_top1_confidence", "mean top-1 confidence", 0.95),
    ),
    class_agreement_factor=0.98,
    fid_affine_factor=2.0,
)
# A CIFAR-10 GAN trained for hours on a CPU is far from real photos; these targets say whether it
# is better than slightly blurred real images and keeps most of their precision and recall.
ISSUE_17 = Targets(
    issue="issue 17",
    ratio_at_least=(("precision", "precision", 0.7), ("recall", "recall", 0.6)),
    class_agreement_factor=0.6,
    fid_affine_factor=None,
)
TARGETS = {datasets.CIFAR10: ISSUE_17}


def targets_for(dataset: str) -> Targets:
    return TARGETS.get(dataset, ISSUE_13)


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return _r(value / reference, 4)


def quality_targets(
    generated: dict[str, Any],
    per_set: list[dict[str, Any]],
    real: dict[str, dict[str, Any]],
    targets: Targets = ISSUE_13,
) -> list[dict[str, Any]]:
    """One row per target: the generated figure (mean over seed sets), the real-data figure it
    is judged against, their ratio and whether the target is met."""
    rows: list[dict[str, Any]] = []

    def add(
        target: str, figure: str, reference: str, needed: str, passed: bool | None, **extra: Any
    ) -> None:
        value = _get(generated, figure)
        reference_value = _get(real[reference], figure)
        rows.append(
            {
                "target": target,
                "figure": figure,
                "value": value,
                "per_set": [_get(s, figure) for s in per_set],
                "reference": reference,
                "reference_value": reference_value,
                "ratio": _ratio(value, reference_value),
                "needed": needed,
                "pass": passed,
                **extra,
            }
        )

    def ratio_at_least(figure: str, factor: float) -> bool:
        return _get(generated, figure) >= factor * _get(real["real_test"], figure)

    fid = generated["fid"]
    add(
        "FID below the blur reference",
        "fid",
        "blur_sigma1",
        "ratio < 1",
        fid < real["blur_sigma1"]["fid"],
    )
    if targets.fid_affine_factor is not None:
        factor = targets.fid_affine_factor
        add(
            f"FID within {factor:g}x of the affine reference",
            "fid",
            "affine",
            f"ratio <= {factor:g}",
            fid <= factor * real["affine"]["fid"],
        )
    for figure, label, factor in targets.ratio_at_least:
        add(
            f"{label} >= {factor}x real",
            figure,
            "real_test",
            f"ratio >= {factor}",
            ratio_at_least(figure, factor),
        )
    factor = targets.class_agreement_factor
    label = f"class agreement >= {factor}x the classifier's accuracy on real test images"
    if generated.get("class_agreement") is None:
        add(
            label,
            "class_agreement",
            "real_test",
            f"ratio >= {factor}",
            None,
            note="no requested class: an unconditional model (or classes the classifier lacks)",
        )
    else:
        add(
            label,
            "class_agreement",
            "real_test",
            f"ratio >= {factor}",
            ratio_at_least("class_agreement", factor),
        )
    memo = "memorisation.pixel.fraction_closer_than_threshold"
    gen_frac, real_frac = _get(generated, memo), _get(real["real_test"], memo)
    n_gen = sum(s["memorisation"]["pixel"]["n"] for s in per_set)
    n_real = real["real_test"]["memorisation"]["pixel"]["n"]
    pooled = (gen_frac * n_gen + real_frac * n_real) / (n_gen + n_real)
    se = float(np.sqrt(max(pooled * (1 - pooled), 0.0) * (1 / n_gen + 1 / n_real)))
    add(
        "memorisation (pixel space) no higher than real test images show",
        memo,
        "real_test",
        "value <= reference + 2 SE",
        gen_frac <= real_frac + 2 * se,
        standard_error=_r(se, 5),
    )
    return rows


def _get(figures: dict[str, Any], dotted: str) -> Any:
    value: Any = figures
    for key in dotted.split("."):
        value = value[key]
    return value


# --------------------------------------------------------------------------------------------
# Realness battery
# --------------------------------------------------------------------------------------------


def trivial_images(shape: tuple[int, int, int], n_noise: int) -> dict[str, np.ndarray]:
    """Constant images are one image each (every copy would score the same); noise is ``n_noise``."""
    return {
        "all_black": constant_images(1, shape, 0),
        "all_white": constant_images(1, shape, 255),
        "mid_grey": constant_images(1, shape, 128),
        "uniform_noise": uniform_noise_images(n_noise, shape, seed=0),
    }


def realness_report(
    model: ModelDir,
    generated: list[tuple[int, np.ndarray, np.ndarray | None]],
    real_u8: np.ndarray | None,
    real_labels: np.ndarray | None,
    negatives: dict[str, np.ndarray],
) -> dict[str, Any]:
    """AUC (real test images positive) and mean realness of each negative set, with the targets
    AUC >= 0.99 and mean realness <= 0.05; real-vs-generated per seed set, reported only.

    Without real images (a dataset this module cannot read) only the mean realness of each set
    is computed: an AUC needs positives.
    """
    real = None if real_u8 is None else realness_scores(model, real_u8)
    sets: dict[str, Any] = {}
    for name, images in negatives.items():
        scores = realness_scores(model, images)
        mean = float(realness_from_score(scores).mean())
        entry: dict[str, Any] = {"n": len(images), "mean_realness": _r(mean, 4)}
        if real is not None:
            auc = roc_auc(real, scores)
            entry["auc"] = _r(auc, 4)
            entry["pass"] = bool(auc >= REALNESS_AUC_TARGET and mean <= REALNESS_MEAN_TARGET)
        sets[name] = entry
    # D judging (image, class) pairs: real images with their label, fakes with theirs.
    real_given_class = None
    if model.class_names is not None and real_u8 is not None and real_labels is not None:
        real_given_class = realness_scores(model, real_u8, real_labels)
    gen_rows = []
    for seed, images, classes in generated:
        scores = realness_scores(model, images)
        row: dict[str, Any] = {
            "seed": seed,
            "mean_realness": _r(float(realness_from_score(scores).mean()), 4),
        }
        if real is not None:
            row["auc"] = _r(roc_auc(real, scores), 4)
        if real_given_class is not None and classes is not None:
            fake_given_class = realness_scores(model, images, classes)
            row["auc_given_class"] = _r(roc_auc(real_given_class, fake_given_class), 4)
        gen_rows.append(row)
    report: dict[str, Any] = {
        "score": "realness_scores(): a * logit + b of the manifest's realness block",
        "positives": None if real is None else f"{len(real)} real test images",
        "targets": {
            "auc_at_least": REALNESS_AUC_TARGET,
            "mean_realness_at_most": REALNESS_MEAN_TARGET,
        },
        "sets": sets,
        "generated": gen_rows,
    }
    if real is not None:
        report["real_mean_realness"] = _r(float(realness_from_score(real).mean()), 4)
        report["all_pass"] = all(entry["pass"] for entry in sets.values())
    return report


# --------------------------------------------------------------------------------------------
# Without a classifier: what can be said from the pixels alone
# --------------------------------------------------------------------------------------------


def pixel_statistics(images_u8: np.ndarray, max_images: int = 2000) -> dict[str, Any]:
    """Per-channel mean/std, saturation, and the nearest-other-image distance within the set.

    The last is the one diversity signal that needs no real data: a collapsed generator repeats
    itself, so its images sit (near) zero distance from one another.
    """
    x = np.asarray(images_u8, dtype=np.float64)
    sample = images_u8[:max_images]
    pixels = _pixels(sample).astype(np.float64)
    norms = np.einsum("ij,ij->i", pixels, pixels)
    sq = norms[:, None] + norms[None, :] - 2.0 * pixels @ pixels.T
    np.fill_diagonal(sq, np.inf)
    nearest = np.sqrt(np.maximum(sq.min(axis=1), 0.0))
    return {
        "n": len(images_u8),
        "channel_mean": [_r(v, 3) for v in x.mean(axis=(0, 2, 3))],
        "channel_std": [_r(v, 3) for v in x.std(axis=(0, 2, 3))],
        "fraction_pixels_0": _r(float(np.mean(images_u8 == 0)), 4),
        "fraction_pixels_255": _r(float(np.mean(images_u8 == 255)), 4),
        "within_set_nn_distance": {
            "n": len(sample),
            "median": _r(float(np.median(nearest)), 4),
            "fraction_duplicates": _r(float(np.mean(nearest == 0)), 4),
        },
    }


FIGURES_NEEDING_A_CLASSIFIER = (
    "fid",
    "kid",
    "precision",
    "recall",
    "density",
    "coverage",
    "class_histogram",
    "kl_vs_reference_nats",
    "mean_top1_confidence",
    "class_agreement",
    "memorisation.feature",
)
FIGURES_NEEDING_REAL_DATA = ("memorisation.pixel", "realness AUCs", "targets")


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def ceiling_report(
    weak_path: Path | str,
    ref: Reference,
    n: int,
    truncation: float,
    kid_subsets: int,
    kid_subset_size: int,
) -> dict[str, Any]:
    """FID / KID of a deliberately weak model (e.g. an early checkpoint), as a ceiling."""
    weak = load_model_dir(weak_path)
    if weak.dataset != ref.dataset:
        raise ValueError(f"weak model {weak_path} is a {weak.dataset} model, not {ref.dataset}")
    names = weak.class_names
    classes = None if names is None else balanced_classes(np.arange(n), len(names))
    _, features = classify(ref.dataset, generate_uint8(weak, n, 0, truncation, classes))
    kid_mean, _ = kid(features, ref.reference_features, kid_subsets, kid_subset_size)
    return {
        "model": weak.manifest.get("name", Path(weak_path).name),
        "step": weak.manifest.get("training", {}).get("step"),
        "fid_c": _r(fid_from_features(features, ref.reference_features), 4),
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
    seed_sets: tuple[int, ...] = SEED_SETS,
    display_path: str | None = None,
) -> dict[str, Any]:
    """Evaluate one model folder; returns the JSON-ready report (see EVALUATION.md).

    A model whose dataset has no classifier (or whose images are not 1x28x28) still gets a
    report: ``not_computed`` names the missing figures and why, and ``sets`` holds what the
    pixels alone say. ``display_path`` is the folder named in the report's rerun command, for
    callers (the exporter) that evaluate a temporary folder before moving it to its final place.
    """
    start = time.perf_counter()
    if n < 2 * K_DENSITY_COVERAGE or not seed_sets:
        raise ValueError(f"need n >= {2 * K_DENSITY_COVERAGE} and at least one seed set")
    model = load_model_dir(path)
    dataset, shape, names = model.dataset, model.image_shape, model.class_names
    root = None if data_root is None else str(data_root)
    generated = []
    for seed in seed_sets:
        seeds = np.arange(seed, seed + n, dtype=np.uint64)
        classes = None if names is None else balanced_classes(seeds, len(names))
        generated.append((seed, generate_uint8(model, n, seed, truncation, classes), classes))

    c, h, w = shape
    report: dict[str, Any] = {
        "format": METRICS_FORMAT,
        "dataset": dataset,
        "image": f"{c}x{h}x{w}",
        "generated": {
            "n_per_set": n,
            "seed_sets": [[seed, seed + n - 1] for seed in seed_sets],
            "truncation": truncation,
            "as": "uint8",
            "classes": None
            if names is None
            else {"names": names, "rule": "class of seed s = s mod K (exactly balanced)"},
        },
        "evaluated_sha256": {
            role: model.manifest["onnx"][role].get("sha256") or sha256_file(model.graph(role)[0])
            for role in ("generator", "discriminator")
        },
    }
    no_classifier = classifier_unavailable(model)
    no_real_data = real_data_unavailable(model, root)
    if no_classifier or no_real_data:
        reason = no_classifier or no_real_data
        report["not_computed"] = [
            {"figures": list(figures), "reason": why}
            for figures, why in (
                (FIGURES_NEEDING_A_CLASSIFIER, no_classifier),
                (FIGURES_NEEDING_REAL_DATA, no_real_data),
            )
            if why
        ]
        report["note"] = f"only pixel statistics and mean realness: {reason}"
        report["classifier"] = None
        report["sets"] = {"generated": [pixel_statistics(u8) for _, u8, _ in generated]}
        report["realness"] = realness_report(
            model,
            [(s, u8, None) for s, u8, _ in generated],
            None,
            None,
            trivial_images(shape, 1000),
        )
    else:
        report.update(
            _full_evaluation(
                model, generated, n, n_real, root, truncation, weak, kid_subsets, kid_subset_size
            )
        )
    if dataset == stacked_mnist.NAME and shape == (3, 28, 28):
        # The figures that matter for this dataset: its 1,000 modes, by the papers' protocol.
        report["stacked_mnist"] = {
            **stacked_mnist.model_figures(model, stacked_mnist.N_EVAL, 0, truncation),
            "seeds": [0, stacked_mnist.N_EVAL - 1],
            "real": _stacked_real_reference(root),
            "protocol": "each channel classified by training/classifiers/mnist.onnx; modes hit "
            "at least once of 1,000 and KL(p_gen || uniform) on 26,000 images (training.stacked_mnist)",
        }
    swd_block = swd_report(model, generated, root)
    if isinstance(swd_block, str):
        report.setdefault("not_computed", []).append({"figures": ["swd"], "reason": swd_block})
    else:
        report["swd"] = swd_block
        if "note" in report:
            report["note"] += "; the SWD against real images is computed (swd)"
    report["seconds"] = _r(time.perf_counter() - start, 1)
    report["command"] = _command(
        display_path or path,
        n,
        n_real,
        data_root,
        truncation,
        weak,
        kid_subsets,
        kid_subset_size,
        seed_sets,
    )
    return report


def swd_report(
    model: ModelDir,
    generated: list[tuple[int, np.ndarray, np.ndarray | None]],
    data_root: str | None,
    n: int = SWD_IMAGES,
    seed: int = 0,
) -> dict[str, Any] | str:
    """ProGAN's sliced Wasserstein distance (training/swd.py) of each generated set and of the
    real references (held-out real, blurred, affine) to a random set of training images; or
    why it cannot be computed. Needs no classifier, so every dataset with readable images gets it.
    """
    start = time.perf_counter()
    m = min(n, min(len(u8) for _, u8, _ in generated))
    try:
        reference, held_out, what = real_images.reference_and_held_out(
            model.dataset, model.image_shape, m, data_root, seed
        )
    except ValueError as e:
        return str(e)
    if min(model.image_shape[1:]) < swd.MIN_RESOLUTION:
        return f"the SWD needs images of at least {swd.MIN_RESOLUTION} px"
    m = len(reference)
    ref = swd.Descriptors.of(reference, seed)
    candidates = {
        "real_test": held_out,
        "blur_sigma1": gaussian_blur(held_out, BLUR_SIGMA),
        "affine": random_affine(held_out),
    }

    def distance(u8: np.ndarray) -> dict[str, Any]:
        # One patch seed and one direction seed for every candidate: differences between
        # candidates are not direction noise.
        result = swd.swd(ref, swd.Descriptors.of(u8, seed + 1), seed + 2)
        return {
            "per_level": {k: _r(v, 3) for k, v in result["per_level"].items()},
            "average": _r(result["average"], 3),
        }

    per_set = [distance(u8[:m]) for _, u8, _ in generated]
    pixels_note = datasets.pixels_label(model.dataset, data_root)
    return ({} if pixels_note is None else {"real_pixels": pixels_note}) | {
        "protocol": (
            f"SWD x 1e3 per Laplacian level (Karras et al. 2018): {swd.NHOODS_PER_IMAGE} "
            f"{swd.NHOOD_SIZE}x{swd.NHOOD_SIZE} patches per image and level, {swd.DIR_REPEATS} x "
            f"{swd.DIRS_PER_REPEAT} directions; lower is closer to the reference"
        ),
        "n_per_set": m,
        "reference": what,
        "resolutions": ref.resolutions,
        "sets": {
            "generated": per_set,
            "generated_mean": _aggregate(per_set)[0],
            **{name: distance(u8) for name, u8 in candidates.items()},
        },
        "seconds": _r(time.perf_counter() - start, 1),
    }


def _stacked_real_reference(root: str | None) -> dict[str, Any]:
    try:
        return stacked_mnist.real_reference(root)
    except FileNotFoundError as e:  # DatasetNotFound: no MNIST test split under the data root
        return {"unavailable": str(e)}


def classifier_class_of(
    model_names: list[str] | None, classifier_names: list[str]
) -> np.ndarray | str | None:
    """For each of the model's classes the classifier's class of the same name (int64), None
    for an unconditional model, or why class agreement cannot be measured.

    By name, not by position: a model trained on a relabelled or reordered class list must be
    judged on what it was asked for, and an unknown name is a different task, not a zero score.
    """
    if model_names is None:
        return None
    index = {name: i for i, name in enumerate(classifier_names)}
    unknown = [name for name in model_names if name not in index]
    if unknown:
        return (
            f"the model's classes {unknown[:5]} are not among the classifier's "
            f"({', '.join(classifier_names)})"
        )
    return np.array([index[name] for name in model_names], dtype=np.int64)


def _full_evaluation(
    model: ModelDir,
    generated: list[tuple[int, np.ndarray, np.ndarray | None]],
    n: int,
    n_real: int,
    data_root: str | None,
    truncation: float,
    weak: Path | str | None,
    kid_subsets: int,
    kid_subset_size: int,
) -> dict[str, Any]:
    dataset, names = model.dataset, model.class_names
    classifier_classes = class_names(dataset)
    not_computed: list[dict[str, Any]] = []
    mapping = classifier_class_of(names, classifier_classes)
    if isinstance(mapping, str):
        not_computed.append({"figures": ["class_agreement"], "reason": mapping})
    ref = real_reference(dataset, n, n_real, data_root, kid_subsets, kid_subset_size)
    per_set = []
    for _, u8, classes in generated:
        usable = (
            None if classes is None or not isinstance(mapping, np.ndarray) else mapping[classes]
        )
        per_set.append(
            set_figures(ref, Classified.of(dataset, u8, usable), kid_subsets, kid_subset_size)
        )
    mean, ranges = _aggregate(per_set)
    issue = targets_for(dataset)
    targets = quality_targets(mean, per_set, ref.real_figures, issue)
    classifier = classifier_path(dataset)
    real_test = ref.real_figures["real_test"]
    first = per_set[0]
    features: dict[str, Any] = {
        "fid_c": first["fid"],
        "fid_c_floor_real_train_vs_test": real_test["fid"],
        "kid_c": first["kid"],
        "kid_c_std": first["kid_std"],
        "kid_c_floor_real_train_vs_test": real_test["kid"],
        "kid_subsets": kid_subsets,
        "kid_subset_size": min(kid_subset_size, n, len(ref.reference_index)),
    }
    if weak is not None:
        features["ceiling_weak_model"] = ceiling_report(
            weak, ref, n, truncation, kid_subsets, kid_subset_size
        )
    accuracy = float(np.mean(ref.test_all.logits.argmax(axis=1) == ref.test_all.classes))
    # Named in every block that compares with real images: a figure quoted alone must still say
    # it was measured against the JPEG copies (not comparable with figures on the originals).
    of_real = f" ({ref.pixels})" if ref.pixels else ""
    realness_block = realness_report(
        model, generated, ref.test_all.u8, ref.test_all.classes, ref.realness_negatives
    )
    if "other_dataset" in ref.realness_negatives:
        realness_block["other_dataset"] = ref.ood_dataset
    else:
        realness_block["other_dataset"] = None
        realness_block["other_dataset_left_out"] = ref.ood_dataset
    block: dict[str, Any] = {} if ref.pixels is None else {"real_pixels": ref.pixels}
    return block | {
        "classifier": {
            "file": f"training/classifiers/{classifier.name}",
            "sha256": sha256_file(classifier),
            "class_names": classifier_classes,
            "accuracy_on_real_test": _r(accuracy, 4),
            "accuracy_on_reference": _r(accuracy, 4),  # gan-eval/1's name for the same figure
        },
        "not_computed": not_computed,
        "sizes": {
            "generated_per_set": n,
            "reference_real_train": len(ref.reference_index),
            "real_test": int(real_test["n"]),
            "memorisation_pool_train": len(ref.train.u8),
            "realness_real_test": len(ref.test_all.u8),
        },
        "references": {
            "reference": f"random subset of the training split{of_real}, as many images as "
            "each generated set",
            "real_test": f"real test images{of_real} (as many as each generated set), the "
            "real-data figure",
            "blur_sigma1": f"the same test images, Gaussian blur sigma {BLUR_SIGMA} px",
            "affine": (
                f"the same test images, each rotated by U(-{AFFINE_MAX_DEGREES}, "
                f"{AFFINE_MAX_DEGREES}) degrees about its centre and shifted by U(-{AFFINE_MAX_SHIFT}, "
                f"{AFFINE_MAX_SHIFT}) px per axis (seed {AFFINE_SEED}, bilinear)"
            ),
            "memorisation": (
                f"nearest of all {len(ref.train.u8)} training images; threshold = "
                f"{MEMORISATION_PERCENTILE:g}st percentile of that distance over half of the real "
                "test images, the real figure measured on the other half"
            ),
        },
        "sets": {
            "generated": per_set,
            "generated_mean": mean,
            "generated_range": ranges,
            **ref.real_figures,
        },
        "summary": {
            "issue": issue.issue,
            "real_pixels": ref.pixels,
            "targets": targets,
            "all_pass": all(t["pass"] is not False for t in targets),
        },
        "realness": realness_block | ({} if ref.pixels is None else {"real_pixels": ref.pixels}),
        # gan-eval/1's blocks, for training.sweep and comparisons with older reports: seed set 0.
        "classes": {
            "class_names": classifier_classes,
            "generated_histogram": first["class_histogram"],
            "reference_histogram": [_r(v, 4) for v in ref.reference_histogram],
            "all_classes_present": not first["missing_classes"],
            "missing_classes": first["missing_classes"],
            "rare_classes": first["rare_classes"],
            "kl_generated_real_nats": first["kl_vs_reference_nats"],
            "mean_top1_confidence": first["mean_top1_confidence"],
            "real_test_mean_top1_confidence": real_test["mean_top1_confidence"],
        },
        "features": features,
        "seconds_real_reference": _r(ref.seconds, 1),
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
    seed_sets: tuple[int, ...] = SEED_SETS,
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
        "--seed-sets": (",".join(map(str, seed_sets)), ",".join(map(str, SEED_SETS))),
    }
    parts += [f"{flag} {value}" for flag, (value, default) in optional.items() if value != default]
    return " ".join(parts)


def write_evaluation(path: Path | str, report: dict[str, Any]) -> None:
    """Replace ``evaluation`` in model.json, leaving every other key (the sha256s) as it was.

    Written to a temporary file and renamed, so a reader never sees half a manifest.
    """
    from contract.manifest import write_manifest

    manifest = dict(read_manifest(Path(path)).raw)
    manifest["evaluation"] = report
    card = Path(path) / "README.md"
    # The exporter's model card shows the evaluation too (a hand-written README is kept).
    text = (
        replace_card_evaluation(card.read_text(), report, manifest["name"])
        if card.is_file()
        else None
    )
    write_manifest(Path(path), manifest)
    if text is not None:
        atomic_write_text(card, text)


def _seed_sets(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated integers expected") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: at least one seed, none negative")
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="model folder (model.json + ONNX files)")
    parser.add_argument("--n", type=int, default=10_000, help="generated images per seed set")
    parser.add_argument("--n-real", type=int, default=10_000, help="real test images used")
    parser.add_argument("--data-root", default=None, help="folder holding mnist/, fashion-mnist/")
    parser.add_argument("--truncation", type=float, default=1.0)
    parser.add_argument("--compare-weak", type=Path, default=None, help="weak model: FID ceiling")
    parser.add_argument("--kid-subsets", type=int, default=100)
    parser.add_argument("--kid-subset-size", type=int, default=1000)
    parser.add_argument(
        "--seed-sets",
        type=_seed_sets,
        default=SEED_SETS,
        help="first seed of each generated set, comma-separated (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the JSON report, not tables")
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
        seed_sets=args.seed_sets,
    )
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(render_report(report, name=str(args.model)))
    if args.write:
        write_evaluation(args.model, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
