"""Agreement between predicted and labelled moods: Pearson r, Lin's CCC, per-axis summaries.

One NaN rule for every caller: a correlation is NaN when n < 2, when either input is constant, or
when any value is not finite.
"""

import math
from typing import Any

import numpy as np


def paired(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two inputs as equal-length float64 1-D arrays (ValueError naming both lengths otherwise)."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"length mismatch: {x.shape[0]} vs {y.shape[0]}")
    return x, y


def _undefined(x: np.ndarray, y: np.ndarray) -> bool:
    if x.size < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return True
    return bool(np.ptp(x) == 0.0 or np.ptp(y) == 0.0)  # exact test: mean-centring leaves rounding noise


def pearson_r(a: Any, b: Any) -> float:
    """Pearson correlation of two 1-D arrays of length n (NaN by the module's rule)."""
    x, y = paired(a, b)
    if _undefined(x, y):
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if denom == 0.0:
        return float("nan")
    return float(np.clip((dx @ dy) / denom, -1.0, 1.0))


def lin_ccc(a: Any, b: Any) -> float:
    """Lin's concordance correlation coefficient (population moments; NaN by the module's rule).

    ccc = 2·cov(a, b) / (var(a) + var(b) + (mean(a) − mean(b))²).
    """
    x, y = paired(a, b)
    if _undefined(x, y):
        return float("nan")
    vx, vy = float(x.var()), float(y.var())
    cov = float(((x - x.mean()) * (y - y.mean())).mean())
    return float(2.0 * cov / (vx + vy + (float(x.mean()) - float(y.mean())) ** 2))


def axis_metrics(*, pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """r and CCC for valence and arousal; ``pred``/``true`` are (n, 2)."""
    return {
        "valence_r": pearson_r(pred[:, 0], true[:, 0]),
        "valence_ccc": lin_ccc(pred[:, 0], true[:, 0]),
        "arousal_r": pearson_r(pred[:, 1], true[:, 1]),
        "arousal_ccc": lin_ccc(pred[:, 1], true[:, 1]),
    }
