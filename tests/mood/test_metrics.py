"""Pearson r and Lin's CCC against hand-computed cases, and the per-axis summary."""

import math

import numpy as np
import pytest

from pipelines.mood.metrics import axis_metrics, lin_ccc, paired, pearson_r


def test_pearson_hand_cases():
    assert pearson_r([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson_r([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # dx = dy-permuted = [-1.5, -.5, .5, 1.5] / [-1.5, .5, -.5, 1.5]: Σdxdy = 4, Σdx² = Σdy² = 5 → 0.8
    assert pearson_r([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert math.isnan(pearson_r([1, 1, 1], [1, 2, 3]))  # constant input
    assert math.isnan(pearson_r([1.0], [2.0]))  # n < 2
    assert math.isnan(pearson_r([1, np.nan, 3], [1, 2, 3]))
    with pytest.raises(ValueError):
        pearson_r([1, 2], [1, 2, 3])


def test_lin_ccc_hand_cases():
    assert lin_ccc([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    # var = 2/3 each, cov = 2/3, (mean diff)² = 1 → 2·(2/3) / (2/3 + 2/3 + 1) = 4/7
    assert lin_ccc([1, 2, 3], [2, 3, 4]) == pytest.approx(4 / 7)
    # var 2/3 and 8/3, cov 4/3, (2 − 4)² = 4 → (8/3) / (2/3 + 8/3 + 4) = 4/11
    assert lin_ccc([1, 2, 3], [2, 4, 6]) == pytest.approx(4 / 11)
    assert math.isnan(lin_ccc([0.2, 0.2, 0.2], [1, 2, 3]))


def test_paired_rejects_unequal_lengths_and_flattens() -> None:
    x, y = paired([[1, 2], [3, 4]], [1, 2, 3, 4])
    assert x.dtype == np.float64 and x.tolist() == [1.0, 2.0, 3.0, 4.0] and y.shape == (4,)
    with pytest.raises(ValueError, match="3 vs 2"):
        paired([1, 2, 3], [1, 2])


def test_axis_metrics_per_column() -> None:
    true = np.array([[0.1, 0.5], [0.2, 0.4], [0.3, 0.3]])
    m = axis_metrics(pred=true * 2, true=true)
    assert m["valence_r"] == pytest.approx(1.0) and m["arousal_r"] == pytest.approx(1.0)
    assert m["valence_ccc"] < 1.0  # scaled predictions correlate perfectly but do not agree
    assert math.isnan(axis_metrics(pred=np.ones((3, 2)), true=true)["valence_r"])
