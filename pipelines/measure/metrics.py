"""Evaluation metrics: mood agreement (sign, quadrant, per-source correlations) and ranking
quality per query (precision, recall, nDCG, mood alignment, artist diversity, ILD).

Correlations come from :mod:`pipelines.mood.metrics`. The definitions, as printed in every
``report.md``, are ``pipelines.measure.report.DEFINITIONS``. Undefined numbers are NaN.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.mood.metrics import lin_ccc, paired, pearson_r

TOP_K = 50
PRECISION_K = 10
RECALL_K = 50
NDCG_K = 20
ALIGNMENT_K = 10
DIVERSITY_K = 50
ILD_K = 50

RANKING_KEYS: tuple[str, ...] = (
    "precision@10", "recall@50", "ndcg@20", "mood_alignment@10", "artist_diversity@50", "ild@50",
)

_SQRT2 = math.sqrt(2.0)


# --------------------------------------------------------------------------------------------
# correlation and sign metrics
# --------------------------------------------------------------------------------------------

def _positive(x: np.ndarray) -> np.ndarray:
    return x >= 0.0  # 0 counts as positive


def sign_accuracy(pred: Any, label: Any) -> float:
    """Fraction of the n pairs whose signs agree (0 counts as positive); NaN when n == 0."""
    p, y = paired(pred, label)
    if p.size == 0:
        return float("nan")
    return float(np.mean(_positive(p) == _positive(y)))


def quadrant_accuracy(pred_v: Any, pred_a: Any, lab_v: Any, lab_a: Any) -> float:
    """Fraction of the n items with both valence and arousal signs right; NaN when n == 0."""
    pv, lv = paired(pred_v, lab_v)
    pa, la = paired(pred_a, lab_a)
    if pv.shape != pa.shape:
        raise ValueError("valence and arousal arrays differ in length")
    if pv.size == 0:
        return float("nan")
    ok = (_positive(pv) == _positive(lv)) & (_positive(pa) == _positive(la))
    return float(np.mean(ok))


def _as_n2(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2), got {arr.shape}")
    return arr


def query_mood_metrics(pred: Any, labels: Any) -> dict[str, Any]:
    """Predicted vs labelled query moods, both (n, 2) = (valence, arousal).

    Returns ``{valence_r, arousal_r, valence_ccc, arousal_ccc, n}``.
    """
    p, y = _as_n2(pred, "pred"), _as_n2(labels, "labels")
    if p.shape != y.shape:
        raise ValueError(f"pred {p.shape} and labels {y.shape} differ")
    return {
        "valence_r": pearson_r(p[:, 0], y[:, 0]),
        "arousal_r": pearson_r(p[:, 1], y[:, 1]),
        "valence_ccc": lin_ccc(p[:, 0], y[:, 0]),
        "arousal_ccc": lin_ccc(p[:, 1], y[:, 1]),
        "n": int(p.shape[0]),
    }


def track_mood_metrics(pred: Any, labels: Any, sources: Sequence[str]) -> dict[str, Any]:
    """Stored vs labelled track moods, both (n, 2); ``sources`` = the n tracks' ``mood_source``.

    Returns ``{valence_r, arousal_r, valence_accuracy, arousal_accuracy, quadrant_accuracy, n,
    by_source: {source: {n, valence_r, arousal_r}}}``.
    """
    p, y = _as_n2(pred, "pred"), _as_n2(labels, "labels")
    if p.shape != y.shape or len(sources) != p.shape[0]:
        raise ValueError("pred, labels and sources must have the same length")
    src = np.asarray([str(s) if s is not None else "null" for s in sources], dtype=object)
    by_source: dict[str, dict[str, Any]] = {}
    for name in sorted(set(src.tolist())):
        m = src == name
        by_source[name] = {
            "n": int(m.sum()),
            "valence_r": pearson_r(p[m, 0], y[m, 0]),
            "arousal_r": pearson_r(p[m, 1], y[m, 1]),
        }
    return {
        "valence_r": pearson_r(p[:, 0], y[:, 0]),
        "arousal_r": pearson_r(p[:, 1], y[:, 1]),
        "valence_accuracy": sign_accuracy(p[:, 0], y[:, 0]),
        "arousal_accuracy": sign_accuracy(p[:, 1], y[:, 1]),
        "quadrant_accuracy": quadrant_accuracy(p[:, 0], p[:, 1], y[:, 0], y[:, 1]),
        "n": int(p.shape[0]),
        "by_source": by_source,
    }


# --------------------------------------------------------------------------------------------
# ranking metrics
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelSet:
    """Labelled moods of a corpus: ``ids`` (n,) with ``values`` (n, 2) and an id → row map."""

    ids: tuple[str, ...]
    values: np.ndarray
    index: Mapping[str, int]

    @classmethod
    def from_mapping(cls, labels: Mapping[str, Sequence[float]]) -> "LabelSet":
        ids = tuple(str(k) for k in labels)
        values = np.asarray([tuple(labels[k])[:2] for k in labels], dtype=np.float64).reshape(-1, 2)
        return cls(ids=ids, values=values, index={k: i for i, k in enumerate(ids)})

    def lookup(self, track_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """→ (values (m, 2) with NaN rows for unlabelled ids, mask (m,) of labelled ids)."""
        rows = np.asarray([self.index.get(t, -1) for t in track_ids], dtype=np.int64)
        mask = rows >= 0
        out = np.full((len(rows), 2), np.nan)
        out[mask] = self.values[rows[mask]]
        return out, mask


def _label_set(labels: "Mapping[str, Sequence[float]] | LabelSet") -> LabelSet:
    return labels if isinstance(labels, LabelSet) else LabelSet.from_mapping(labels)


def _target(target: Sequence[float]) -> np.ndarray:
    t = np.asarray(target, dtype=np.float64).ravel()
    if t.shape != (2,):
        raise ValueError(f"target must be (valence, arousal), got shape {t.shape}")
    return t


def relevant_mask(*, values: np.ndarray, target: Sequence[float]) -> np.ndarray:
    """values (m, 2) → bool (m,): same signs as target on both axes (0 positive; NaN rows False)."""
    t = _target(target)
    v = np.asarray(values, dtype=np.float64).reshape(-1, 2)
    finite = np.isfinite(v).all(axis=1)
    same = (_positive(np.nan_to_num(v)) == _positive(t)[None, :]).all(axis=1)
    return same & finite


def graded_gain(*, values: np.ndarray, target: Sequence[float]) -> np.ndarray:
    """values (m, 2) → gains (m,) = max(0, 1 − ‖label − target‖₂/√2); NaN rows (unlabelled) → 0."""
    t = _target(target)
    v = np.asarray(values, dtype=np.float64).reshape(-1, 2)
    g = np.maximum(0.0, 1.0 - np.linalg.norm(v - t[None, :], axis=1) / _SQRT2)
    return np.where(np.isfinite(g), g, 0.0)


def precision_at_k(
    *, ranked_track_ids: Sequence[str], labels: "Mapping[str, Sequence[float]] | LabelSet",
    target: Sequence[float], k: int = PRECISION_K,
) -> float:
    """Relevant tracks among the first k results / k."""
    ls = _label_set(labels)
    values, _ = ls.lookup(list(ranked_track_ids)[:k])
    return float(relevant_mask(values=values, target=target).sum() / k)


def recall_at_k(
    *, ranked_track_ids: Sequence[str], labels: "Mapping[str, Sequence[float]] | LabelSet",
    target: Sequence[float], k: int = RECALL_K,
) -> float:
    """Relevant tracks among the first k / min(k, relevant labelled tracks); NaN if none exist."""
    ls = _label_set(labels)
    total = int(relevant_mask(values=ls.values, target=target).sum())
    if total == 0:
        return float("nan")
    values, _ = ls.lookup(list(ranked_track_ids)[:k])
    return float(relevant_mask(values=values, target=target).sum() / min(k, total))


def _dcg(gains: np.ndarray) -> float:
    discounts = 1.0 / np.log2(np.arange(2, gains.size + 2))
    return float(gains @ discounts)


def ndcg_at_k(
    *, ranked_track_ids: Sequence[str], labels: "Mapping[str, Sequence[float]] | LabelSet",
    target: Sequence[float], k: int = NDCG_K,
) -> float:
    """DCG of the first k graded gains / DCG of the k best gains in the whole labelled corpus.

    NaN when every labelled track has gain 0 (the ideal DCG is 0).
    """
    ls = _label_set(labels)
    ideal_gains = np.sort(graded_gain(values=ls.values, target=target))[::-1][:k]
    ideal = _dcg(ideal_gains)
    if ideal <= 0.0:
        return float("nan")
    values, _ = ls.lookup(list(ranked_track_ids)[:k])
    return float(_dcg(graded_gain(values=values, target=target)) / ideal)


def mood_alignment_at_k(
    *, ranked_track_ids: Sequence[str], labels: "Mapping[str, Sequence[float]] | LabelSet",
    target: Sequence[float], k: int = ALIGNMENT_K,
) -> float:
    """1 − mean ‖label − target‖₂ / (2√2) over the first k results (unlabelled → distance 2√2).

    NaN for an empty ranking.
    """
    ls = _label_set(labels)
    values, mask = ls.lookup(list(ranked_track_ids)[:k])
    if mask.size == 0:
        return float("nan")
    dist = np.linalg.norm(values - _target(target)[None, :], axis=1)
    dist = np.where(mask, dist, 2.0 * _SQRT2)
    return float(1.0 - dist.mean() / (2.0 * _SQRT2))


def _norm_artist(a: Any) -> str | None:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return None
    s = str(a).strip().casefold()
    return s or None


def artist_diversity(*, artists: Sequence[str | None], k: int = DIVERSITY_K) -> float:
    """Distinct non-null artists / results with a non-null artist, over the first k results
    (artists compared case-folded and stripped; empty strings are null).

    NaN when no result has an artist.
    """
    names = [n for n in (_norm_artist(a) for a in list(artists)[:k]) if n is not None]
    if not names:
        return float("nan")
    return float(len(set(names)) / len(names))


def ild(*, vectors: Any, k: int = ILD_K) -> float:
    """Intra-list diversity: mean over pairs i < j of (1 − cosine) of the first k rows of (m, d).

    Rows are re-normalised here (zero rows have cosine 0 with everything). NaN when m < 2.
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"vectors must be (m, d), got {x.shape}")
    x = x[:k]
    m = x.shape[0]
    if m < 2:
        return float("nan")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    sims = x @ x.T
    iu = np.triu_indices(m, k=1)
    return float(np.mean(1.0 - sims[iu]))


def ranking_metrics(
    *, ranked_track_ids: Sequence[str], labels: "Mapping[str, Sequence[float]] | LabelSet",
    target: Sequence[float], artists: Sequence[str | None], text_vectors: Any,
) -> dict[str, float]:
    """All ranking metrics for one query.

    ``artists`` and ``text_vectors`` (m, d) are aligned with ``ranked_track_ids`` (m ≤ 50 used).
    Returns a dict with exactly the keys of ``RANKING_KEYS``.
    """
    ids = list(ranked_track_ids)[:TOP_K]
    ls = _label_set(labels)
    vecs = np.asarray(text_vectors, dtype=np.float64)
    if vecs.size == 0:
        vecs = vecs.reshape(0, 1)
    if len(artists) < len(ids) or vecs.shape[0] < len(ids):
        raise ValueError("artists and text_vectors must align with ranked_track_ids")
    return {
        "precision@10": precision_at_k(ranked_track_ids=ids, labels=ls, target=target),
        "recall@50": recall_at_k(ranked_track_ids=ids, labels=ls, target=target),
        "ndcg@20": ndcg_at_k(ranked_track_ids=ids, labels=ls, target=target),
        "mood_alignment@10": mood_alignment_at_k(ranked_track_ids=ids, labels=ls, target=target),
        "artist_diversity@50": artist_diversity(artists=list(artists)[: len(ids)]),
        "ild@50": ild(vectors=vecs[: len(ids)]),
    }


def mean_metrics(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per-key mean over queries, skipping NaN; NaN where every query is NaN (or no queries)."""
    keys = list(rows[0].keys()) if rows else list(RANKING_KEYS)
    out: dict[str, float] = {}
    for key in keys:
        vals = np.asarray([r[key] for r in rows], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        out[key] = float(vals.mean()) if vals.size else float("nan")
    return out


def latency_summary(ms: Sequence[float]) -> dict[str, float]:
    """Latencies in milliseconds → ``{p50, p95, p99}`` (linear interpolation); NaN when empty."""
    x = np.asarray(ms, dtype=np.float64)
    if x.size == 0:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    p50, p95, p99 = np.percentile(x, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}
