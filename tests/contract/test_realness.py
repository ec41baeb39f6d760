"""The realness arithmetic shared by the service and the metrics (contract/realness.py)."""

from __future__ import annotations

import numpy as np
import pytest

from contract.realness import class_logits, log_p_value, log_realness, log_sigmoid


def test_log_sigmoid_is_stable_at_both_ends() -> None:
    t = np.array([-1e4, -30.0, 0.0, 30.0, 1e4])
    got = log_sigmoid(t)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[1:4], -np.log1p(np.exp(-t[1:4])), rtol=1e-12)
    assert got[1] == pytest.approx(-30.0, abs=1e-12) and got[2] == pytest.approx(np.log(0.5))
    assert got[0] == pytest.approx(-1e4) and got[-1] == 0.0


def test_class_logits_picks_the_column_or_the_log_mean_ratio() -> None:
    logits = np.array([[0.0, np.log(3.0)], [2.0, 2.0]])
    np.testing.assert_allclose(class_logits(logits, np.array([1, 0])), [np.log(3.0), 2.0])
    # Without a class: log of the mean density ratio over classes.
    np.testing.assert_allclose(class_logits(logits), [np.log(2.0), 2.0])
    big = np.array([[1000.0, 1000.0]])
    np.testing.assert_allclose(class_logits(big), [1000.0])  # no overflow
    np.testing.assert_array_equal(class_logits(np.array([0.5, -1.0])), [0.5, -1.0])
    with pytest.raises(ValueError):
        class_logits(np.zeros((1, 2, 3)))


QUANTILES = np.linspace(10.0, 20.0, 101)  # held-out distances uniform on [10, 20]


def test_p_value_is_the_survival_of_held_out_distances() -> None:
    p = np.exp(log_p_value(np.array([5.0, 12.5, 15.0, 19.0, 20.0]), QUANTILES, 1000))
    np.testing.assert_allclose(p, [1.0, 0.75, 0.5, 0.1, 0.5 / 1000], rtol=1e-9)
    # Past the largest held-out distance: an exponential tail, finite and still decreasing.
    tail = log_p_value(np.array([20.0, 21.0, 30.0, 1e6]), QUANTILES, 1000)
    assert np.isfinite(tail).all() and (np.diff(tail) < 0).all()


def test_realness_is_the_product_of_its_two_factors() -> None:
    logit, ood = np.array([0.3, 0.3]), np.array([12.0, 18.0])  # p-values 0.8 and 0.2
    d_factor = 1 / (1 + np.exp(-(2 * 0.3 - 1)))
    got = np.exp(log_realness(logit, 2.0, -1.0, ood, QUANTILES, 1000, full_credit=0.5))
    np.testing.assert_allclose(got, [d_factor * 1.0, d_factor * 0.4], rtol=1e-9)
    # The OOD factor only lowers the realness: an off-manifold image cannot buy it back with D.
    far = log_realness(np.array([50.0]), 1.0, 0.0, np.array([100.0]), QUANTILES, 1000)
    assert far[0] < np.log(1e-15)


def test_a_foreign_set_ranked_below_real_gets_little_realness() -> None:
    """If real images outrank a set with AUC A on distance, the set's mean p-value is 1 - A, so
    its mean realness is at most 2 (1 - A): ranking and level cannot disagree."""
    rng = np.random.default_rng(0)
    real = rng.uniform(10, 20, 5000)
    foreign = rng.uniform(19, 30, 5000)
    quantiles = np.quantile(rng.uniform(10, 20, 4000), np.linspace(0, 1, 201))
    auc = (real[:, None] < foreign[None, :]).mean()
    mean = np.exp(log_realness(np.full(5000, 50.0), 1.0, 0.0, foreign, quantiles, 4000)).mean()
    assert auc > 0.99 and mean <= 2 * (1 - auc) + 0.005
