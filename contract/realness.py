"""Discriminator outputs -> the realness users see: ``log_realness`` for ranking, ``realness`` in [0, 1].

Why not just ``sigmoid(D(x))``: for a fixed G the optimal discriminator is
``D* = p_data / (p_data + p_g)``, a statement about the two distributions it was trained on and
nothing else. On an input far from both (an all-black frame, noise, another dataset) its output
is unconstrained, and a trained D happily rates such inputs above real images. So the realness is
a product of two probabilities, both fitted at export (training/realness_fit.py):

    realness = sigmoid(a * logit + b) * sigmoid(-(ood - t) / s)

- ``sigmoid(a * logit + b)``: D's verdict real vs generated, a log-odds for the logistic losses
  (``a = 1, b = 0``) and Platt-scaled on held-out real and generated images for critics whose
  output is not a log-odds (WGAN, hinge, LSGAN);
- ``ood``: an out-of-distribution distance computed inside the discriminator graph (the
  Mahalanobis distance of D's pooled features from those of real training images), ``t`` and
  ``s`` placed from the distances of held-out real images, so in-distribution images pay
  nothing and off-manifold ones are driven to 0 whatever D's logit says.

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


def log_realness(
    logits: np.ndarray,
    a: float,
    b: float,
    ood: np.ndarray | None = None,
    threshold: float = 0.0,
    scale: float = 1.0,
) -> np.ndarray:
    """log of the realness above, float64, finite for finite inputs: the score ROC AUCs rank by
    (the realness itself rounds to exactly 0 or 1 for confident inputs, which would make ties)."""
    score = log_sigmoid(a * np.asarray(logits, dtype=np.float64) + b)
    if ood is not None:
        score = score + log_sigmoid(-(np.asarray(ood, dtype=np.float64) - threshold) / scale)
    return score
