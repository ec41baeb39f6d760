"""Discriminator outputs -> the realness users see: ``log_realness`` for ranking, ``realness`` in [0, 1].

Why not just ``sigmoid(D(x))``: for a fixed G the optimal discriminator is
``D* = p_data / (p_data + p_g)``, a statement about the two distributions it was trained on and
nothing else. On an input far from both (an all-black frame, noise, another dataset) its output
is unconstrained, and a trained D happily rates such inputs above real images. So the realness is
a product of two factors, both fitted at export (training/realness_fit.py):

    realness = sigmoid(a * logit + b) * min(1, p(ood) / full_credit)

- ``sigmoid(a * logit + b)``: D's verdict real vs generated, a log-odds for the logistic losses
  (``a = 1, b = 0``) and Platt-scaled on held-out real and generated images for critics whose
  output is not a log-odds (WGAN, hinge, LSGAN);
- ``ood``: an out-of-distribution distance computed inside the discriminator graph (the
  Mahalanobis distance of features of D's activations from a Gaussian of real training images'),
  and ``p(ood)`` its p-value: the fraction of held-out real training images at least as far out
  (the model carries quantiles of their distances). An image as typical as the median real one
  or more (``p >= full_credit = 0.5``) pays nothing; beyond every held-out image the p-value keeps
  falling exponentially, so far-off inputs still rank below near-off ones.

Why a p-value: it makes the two halves of "trivial and foreign images rank below real ones" one
statement. If real images rank above a foreign set with ROC AUC ``A`` on distance alone, the
foreign set's mean p-value is ``1 - A``, so its mean realness is at most ``2 (1 - A)``: the
score cannot call a set foreign in ranking and still hand it a high number.

A class-conditional (projection) D gives one logit per class. Scored against a class, its logit
is that column; scored without one it is ``logsumexp_k(logit_k) - log K``: the log of the mean
density ratio over classes, the ratio of the marginals when G draws classes uniformly, as the
service does. Models of format 1 (no ``ood``) keep the first factor alone.
"""

from __future__ import annotations

import numpy as np


def log_sigmoid(t: np.ndarray) -> np.ndarray:
    """``log(1 / (1 + exp(-t)))`` in float64 without overflow or log(0)."""
    t = np.asarray(t, dtype=np.float64)
    return np.minimum(t, 0.0) - np.log1p(np.exp(-np.abs(t)))


def class_logits(logits: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """``(B,)`` logits as is; ``(B, K)`` per-class logits reduced to ``(B,)`` (see above)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 1:
        return logits
    if logits.ndim != 2:
        raise ValueError(f"logits must be (B,) or (B, K), got shape {logits.shape}")
    if classes is not None:
        classes = np.asarray(classes, dtype=np.int64)
        return logits[np.arange(len(logits)), classes]
    top = logits.max(axis=1)
    return top + np.log(np.exp(logits - top[:, None]).mean(axis=1))


def log_p_value(ood: np.ndarray, quantiles: np.ndarray, held_out: int) -> np.ndarray:
    """log P(a real image's distance >= ood), from ``quantiles`` of ``held_out`` real distances
    (evenly spaced probabilities 0..1). Inside their range: linear interpolation of the
    empirical survival function, never below half a held-out image's share; past the largest:
    an exponential tail whose width is the spread of the top 10% (finite, still decreasing)."""
    d = np.asarray(ood, dtype=np.float64)
    q = np.asarray(quantiles, dtype=np.float64)
    probs = np.linspace(0.0, 1.0, len(q))
    floor = 0.5 / held_out
    inside = np.maximum(1.0 - np.interp(d, q, probs), floor)
    width = max(float(q[-1] - np.interp(0.9, probs, q)), 1e-6)
    beyond = np.log(floor) - (d - q[-1]) / width
    return np.where(d <= q[-1], np.log(inside), beyond)


def log_realness(
    logits: np.ndarray,
    a: float,
    b: float,
    ood: np.ndarray | None = None,
    quantiles: np.ndarray | None = None,
    held_out: int = 1,
    full_credit: float = 0.5,
) -> np.ndarray:
    """log of the realness above, float64, finite for finite inputs: the score ROC AUCs rank by
    (the realness itself rounds to exactly 0 or 1 for confident inputs, which would make ties)."""
    score = log_sigmoid(a * np.asarray(logits, dtype=np.float64) + b)
    if ood is not None and quantiles is not None:
        score = score + np.minimum(0.0, log_p_value(ood, quantiles, held_out) - np.log(full_credit))
    return score
