"""Stacked MNIST: the image benchmark of mode collapse (Unrolled GAN, VEEGAN, PacGAN).

Three MNIST digits, drawn independently, are stacked as the R, G and B channels of one 28x28
image, so the data has 10^3 = 1,000 modes (one per digit triple) of equal mass. A generator is
scored by classifying each channel of its samples with the repo's frozen MNIST classifier
(``training/classifiers/mnist.onnx``) and reading the triple as a mode number ``100 r + 10 g + b``:

- **modes**: how many of the 1,000 triples at least one of 26,000 samples falls on;
- **KL**: KL(p_gen || uniform) of the histogram of those 26,000 modes.

This is the protocol of the three papers (26,000 samples, a pretrained classifier, KL to the
uniform). A perfect generator does not score 0: 26,000 draws of a uniform 1,000-way
multinomial give KL ~ (K - 1) / (2 N) = 0.019 on average, so the same figures of *real* stacked
test images are reported beside every model (``real_reference``): that is the floor.

28x28 (not 32x32): the classifier and the dcgan28 networks are made for MNIST's own size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.idx import load_split

NAME = "stacked-mnist"
NUM_MODES = 1000
N_EVAL = 26_000
# The training set: this many triples drawn once from the 60,000 training digits. Fixed (not
# fresh triples every batch) so that epochs, resume and the export's realness fit see the same
# images; 128k is ~2x the digits, enough that no triple is rare by chance (128 per mode).
N_TRAIN = 128_000
TRIPLE_SEED = {"train": 0x5EED_0001, "test": 0x5EED_0002}


def stack(
    digits: np.ndarray, labels: np.ndarray, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``(n, 3, 28, 28)`` uint8 of independent digit triples and their mode numbers.

    Channel c of image i is digit ``idx[i, c]``; mode = 100 r + 10 g + b of the true labels.
    """
    idx = np.random.default_rng(seed).integers(0, len(digits), size=(n, 3))
    images = digits[idx]  # (n, 3, 28, 28): the channel axis is the triple axis
    modes = mode_numbers(labels[idx].astype(np.int64))
    return np.ascontiguousarray(images), modes


def mode_numbers(channel_digits: np.ndarray) -> np.ndarray:
    """``(N, 3)`` digits -> ``(N,)`` modes in [0, 1000)."""
    d = np.asarray(channel_digits, np.int64)
    return d[:, 0] * 100 + d[:, 1] * 10 + d[:, 2]


def load_stacked(
    split: str = "train", root: str | Path | None = None, n: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The stacked images of a split (the train triples draw only training digits)."""
    digits, labels = load_split("mnist", split, root)
    # A small digit pool (a test's fake files) gets fewer triples: 64 per digit is plenty.
    count = n if n is not None else min(N_TRAIN if split == "train" else N_EVAL, 64 * len(digits))
    return stack(digits, labels, count, TRIPLE_SEED[split])


def classify_channels(images_u8: np.ndarray, batch: int = 2000) -> np.ndarray:
    """``(N, 3, 28, 28)`` uint8 -> ``(N, 3)`` digits predicted by the frozen MNIST classifier."""
    return classify_channels_with_confidence(images_u8, batch)[0]


def classify_channels_with_confidence(
    images_u8: np.ndarray, batch: int = 2000
) -> tuple[np.ndarray, np.ndarray]:
    """``(digits (N, 3), top-1 softmax probability (N, 3))`` of every channel."""
    from training.metrics import classify

    images_u8 = np.asarray(images_u8)
    if images_u8.ndim != 4 or images_u8.shape[1:] != (3, 28, 28):
        raise ValueError(f"expected (N, 3, 28, 28) uint8 images, got {images_u8.shape}")
    n = len(images_u8)
    # Every channel is one grey digit: classify the 3N channels as 3N MNIST images.
    flat = images_u8.reshape(n * 3, 1, 28, 28)
    preds = np.empty(n * 3, np.int64)
    confidence = np.empty(n * 3, np.float64)
    for start in range(0, n * 3, batch):
        logits, _ = classify("mnist", flat[start : start + batch])
        preds[start : start + batch] = logits.argmax(1)
        z = np.exp(logits - logits.max(1, keepdims=True))
        confidence[start : start + batch] = (z / z.sum(1, keepdims=True)).max(1)
    return preds.reshape(n, 3), confidence.reshape(n, 3)


def channel_figures(digits: np.ndarray, confidence: np.ndarray) -> dict[str, Any]:
    """Where a KL above the floor comes from: each channel's digit histogram (skewed marginals),
    the KL the product of those marginals alone would give (the rest is dependence between
    channels), and how sure the classifier is of the digits (low: malformed digits, whose
    labels lean towards whatever the classifier reads into a blob)."""
    marginals = [np.bincount(digits[:, c], minlength=10) / len(digits) for c in range(3)]
    product = np.einsum("i,j,k->ijk", *marginals).ravel()
    nz = product > 0
    return {
        "digit_histograms": [[round(float(v), 4) for v in m] for m in marginals],
        "kl_of_marginals": round(float(np.sum(product[nz] * np.log(product[nz] * NUM_MODES))), 5),
        "mean_confidence": round(float(confidence.mean()), 4),
        "fraction_confidence_below_0.9": round(float(np.mean(confidence < 0.9)), 4),
    }


@dataclass(frozen=True)
class ModeFigures:
    modes: int  # modes with at least one sample, of 1,000
    kl: float  # KL(p_gen || uniform), natural log
    n: int
    largest_mode_fraction: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "modes": self.modes,
            "kl": round(self.kl, 5),
            "n": self.n,
            "largest_mode_fraction": round(self.largest_mode_fraction, 5),
        }


def mode_figures(modes: np.ndarray) -> ModeFigures:
    counts = np.bincount(np.asarray(modes, np.int64), minlength=NUM_MODES)
    if len(counts) != NUM_MODES:
        raise ValueError(f"mode numbers must lie in [0, {NUM_MODES})")
    p = counts / counts.sum()
    nz = p > 0
    kl = float(np.sum(p[nz] * np.log(p[nz] * NUM_MODES)))
    return ModeFigures(int(nz.sum()), kl, int(counts.sum()), float(p.max()))


def uniform_floor(n: int = N_EVAL, draws: int = 200, seed: int = 0) -> dict[str, float]:
    """KL and modes of ``n`` samples of the exact uniform distribution: what chance alone gives."""
    rng = np.random.default_rng(seed)
    figs = [mode_figures(rng.integers(0, NUM_MODES, n)) for _ in range(draws)]
    kls = np.array([f.kl for f in figs])
    return {
        "kl_mean": round(float(kls.mean()), 5),
        "kl_p95": round(float(np.quantile(kls, 0.95)), 5),
        "modes_min": int(min(f.modes for f in figs)),
        "draws": draws,
        "n": n,
    }


def real_reference(root: str | Path | None = None, n: int = N_EVAL) -> dict[str, Any]:
    """Real stacked test images measured exactly like a generator: classifier labels, not truth.

    Also says how often the classifier's triple differs from the true one (its error rate on
    triples, ~3x its per-digit error), which bounds how exact any generator's histogram can look.
    """
    images, true_modes = load_stacked("test", root, n)
    digits, confidence = classify_channels_with_confidence(images)
    predicted = mode_numbers(digits)
    figs = mode_figures(predicted)
    return {
        **figs.to_dict(),
        **channel_figures(digits, confidence),
        "true_labels": mode_figures(true_modes).to_dict(),
        "triple_error_rate": round(float(np.mean(predicted != true_modes)), 5),
        "source": f"{n} triples of MNIST test digits (seed {TRIPLE_SEED['test']:#x})",
    }


def evaluate_model(model_dir: str | Path, n: int = N_EVAL, seed: int = 0) -> dict[str, Any]:
    """Modes and KL of an exported model's images of seeds ``seed .. seed+n-1`` (the served ones)."""
    from training.metrics import load_model_dir

    model = load_model_dir(model_dir)
    if model.image_shape != (3, 28, 28):
        raise ValueError(
            f"{model_dir}: image shape {model.image_shape}, Stacked MNIST needs (3, 28, 28)"
        )
    return model_figures(model, n, seed)


def model_figures(
    model: Any, n: int = N_EVAL, seed: int = 0, truncation: float = 1.0
) -> dict[str, Any]:
    """:func:`evaluate_model` of an already loaded ``training.metrics.ModelDir``."""
    from training.metrics import generate_uint8

    digits, confidence = classify_channels_with_confidence(
        generate_uint8(model, n, seed, truncation)
    )
    return {
        **mode_figures(mode_numbers(digits)).to_dict(),
        **channel_figures(digits, confidence),
        "seed_start": seed,
    }
