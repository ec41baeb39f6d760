"""The realness arithmetic shared by the service and the metrics (contract/realness.py)."""

from __future__ import annotations

import numpy as np
import pytest

from contract.realness import class_logits, log_realness, log_sigmoid


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


def test_realness_is_the_product_of_its_two_factors() -> None:
    logit, ood = np.array([0.3]), np.array([25.0])
    expected = 1 / (1 + np.exp(-(2 * 0.3 - 1))) * 1 / (1 + np.exp((25.0 - 20.0) / 2.0))
    got = np.exp(log_realness(logit, 2.0, -1.0, ood, threshold=20.0, scale=2.0))
    np.testing.assert_allclose(got, [expected], rtol=1e-12)
    # The OOD factor only lowers the realness: an off-manifold image cannot buy it back with D.
    assert log_realness(np.array([50.0]), 1.0, 0.0, np.array([100.0]), 20.0, 2.0)[0] < np.log(1e-15)
