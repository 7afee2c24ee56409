"""Evaluation of Moodscape on a labelled corpus: metric functions and the evaluation run.

Everything here is pure numpy/polars. The store under test is *injected* (``build_store``), so
this module never knows how the pipeline builds it; the command-line / Dagster glue passes a
builder that runs the real asset code on the corpus.

Definitions (also in the README's evaluation section and in every ``report.md``):

- **query_mood**: Pearson r and Lin's CCC between the model's (valence, arousal) for each query
  text and the query's labels.
- **track_mood**: the same between each track's stored mood and LABELS; ``*_accuracy`` = fraction
  with the same sign per axis (0 counts as positive); ``quadrant_accuracy`` = both signs right.
  Tracks the store left without a mood are excluded (and counted in a printed warning).
- **ranking**, per query, top 50 requested with no filters. A track is *relevant* iff its labelled
  valence and arousal have the same signs as the query target (0 counts as positive).
  Tracks in a ranking that have no label count as not relevant, with gain 0 and alignment 0.

  - precision@10 = relevant in top 10 / 10 (fixed denominator: a short list is penalised);
  - recall@50 = relevant in top 50 / min(50, relevant labelled tracks in the corpus)
    (undefined → NaN when the corpus holds none);
  - ndcg@20 with graded gain g = max(0, 1 − ‖label − target‖₂ / √2), DCG = Σ g_i / log2(i + 1),
    ideal DCG from the 20 best gains over the whole labelled corpus;
  - mood_alignment@10 = 1 − mean ‖label − target‖₂ / (2√2) over the results in the top 10
    (an unlabelled result counts as the worst distance 2√2);
  - artist_diversity@50 = distinct non-null artists / results with a non-null artist
    (artists compared case-folded and stripped; empty strings are null);
  - ild@50 = mean pairwise (1 − cosine) of the results' text embeddings.

  Reported as means over queries, skipping queries where a metric is undefined (NaN).
- **latency_ms**: p50/p95/p99 of the wall time of each ``recommend`` call (perf_counter).

Undefined numbers (constant inputs to a correlation, empty sets) are NaN here and ``null`` in JSON.
"""

import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from pipelines.errors import EvaluationInputError
from pipelines import schema as S
from pipelines.mood.metrics import lin_ccc, paired, pearson_r
from pipelines.store import write_json

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
# report.json ranking section name → the ``mode`` passed to ``StoreHandle.recommend``
RANKING_MODES: dict[str, str] = {"full": "full", "baseline_sbert": "baseline"}

QUERY = "query"  # QUERIES column holding the query text

_SQRT2 = math.sqrt(2.0)


@runtime_checkable
class StoreHandle(Protocol):
    """What the evaluation needs from a store built from CORPUS alone."""

    def track_moods(self) -> pl.DataFrame:
        """Columns ``track_id, valence, arousal, mood_source`` (one row per track)."""
        ...

    def query_moods(self, *, texts: Sequence[str]) -> np.ndarray:
        """Query texts → float array (n, 2) of (valence, arousal) in [-1, 1]."""
        ...

    def recommend(self, *, query: str, mode: str, top_k: int) -> list[str]:
        """Track ids ranked best-first, no filters; ``mode`` is ``"full"`` or ``"baseline"``."""
        ...

    def text_vectors(self, *, track_ids: Sequence[str]) -> np.ndarray:
        """Text embeddings of ``track_ids`` → float array (n, d), in the same order."""
        ...

    def artists(self, *, track_ids: Sequence[str]) -> list[str | None]:
        """Artist of each of ``track_ids`` (None where unknown), in the same order."""
        ...


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
    """Distinct non-null artists / results with a non-null artist, over the first k results.

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


# --------------------------------------------------------------------------------------------
# input files
# --------------------------------------------------------------------------------------------

def _read_table(path: Path, *, what: str, string_columns: Sequence[str]) -> pl.DataFrame:
    path = Path(path)
    if not path.exists():
        raise EvaluationInputError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pl.read_parquet(path)
        elif suffix in (".csv", ".tsv", ".txt"):
            # string columns are read as strings first so ids like 007 keep their zeros
            header = pl.read_csv(path, n_rows=0, separator="\t" if suffix == ".tsv" else ",")
            overrides = {c: pl.Utf8 for c in string_columns if c in header.columns}
            df = pl.read_csv(
                path, separator="\t" if suffix == ".tsv" else ",", schema_overrides=overrides,
                infer_schema_length=10000,
            )
        else:
            raise EvaluationInputError(f"{what} must be .csv or .parquet: {path}")
    except pl.exceptions.PolarsError as exc:
        raise EvaluationInputError(f"{what} {path} could not be read: {exc}") from exc
    return df


def _require(df: pl.DataFrame, columns: Sequence[str], *, what: str, path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise EvaluationInputError(
            f"{what} {path} lacks column(s) {missing}; it has {df.columns}"
        )


def _row_ref(i: int, path: Path) -> str:
    line = f", line {i + 2}" if path.suffix.lower() in (".csv", ".tsv", ".txt") else ""
    return f"row {i + 1}{line}"


def _check_ids(ids: pl.Series, *, what: str, path: Path, key: str) -> None:
    for i, value in enumerate(ids.to_list()):
        if value is None or not str(value).strip():
            raise EvaluationInputError(f"{what} {path} {_row_ref(i, path)}: column '{key}' is empty")
    dup = ids.is_duplicated()
    if dup.any():
        i = int(dup.arg_true()[0])
        raise EvaluationInputError(
            f"{what} {path} {_row_ref(i, path)}: duplicate {key} {ids[i]!r}"
        )


def load_corpus(path: Path) -> pl.DataFrame:
    """Read CORPUS (CSV/Parquet): ``track_id`` required (as string, unique, non-empty);
    ``audio_path`` (if present) made absolute, relative paths taken from the CORPUS file's folder.
    """
    path = Path(path).resolve()
    df = _read_table(path, what="CORPUS", string_columns=S.CRAWL_TEXT_COLUMNS)
    _require(df, [S.TRACK_ID], what="CORPUS", path=path)
    df = df.with_columns(pl.col(S.TRACK_ID).cast(pl.Utf8).str.strip_chars())
    _check_ids(df[S.TRACK_ID], what="CORPUS", path=path, key=S.TRACK_ID)
    if S.AUDIO_PATH in df.columns:
        base = path.parent

        def resolve(p: str | None) -> str | None:
            if p is None or not str(p).strip():
                return None
            q = Path(str(p).strip()).expanduser()
            return str(q if q.is_absolute() else (base / q).resolve())

        resolved = [resolve(p) for p in df[S.AUDIO_PATH].cast(pl.Utf8).to_list()]
        df = df.with_columns(pl.Series(S.AUDIO_PATH, resolved, dtype=pl.Utf8))
    return df


def _check_unit_floats(df: pl.DataFrame, columns: Sequence[str], *, what: str, path: Path) -> pl.DataFrame:
    for col in columns:
        raw = df[col]
        if raw.dtype == pl.Utf8:
            parsed = raw.str.strip_chars().cast(pl.Float64, strict=False)
        else:
            try:
                parsed = raw.cast(pl.Float64, strict=False)
            except pl.exceptions.PolarsError as exc:
                raise EvaluationInputError(f"{what} {path}: column '{col}' is not numeric") from exc
        values = parsed.to_list()
        for i, v in enumerate(values):
            if v is None or not math.isfinite(v):
                raise EvaluationInputError(
                    f"{what} {path} {_row_ref(i, path)}: column '{col}' value {raw[i]!r} is not a number"
                )
            if not -1.0 <= v <= 1.0:
                raise EvaluationInputError(
                    f"{what} {path} {_row_ref(i, path)}: column '{col}' value {v} is outside [-1, 1]"
                )
        df = df.with_columns(parsed.alias(col))
    return df


def load_labels(path: Path) -> pl.DataFrame:
    """Read LABELS: ``track_id`` (string, unique), ``valence``, ``arousal`` floats in [-1, 1]."""
    path = Path(path).resolve()
    df = _read_table(path, what="LABELS", string_columns=[S.TRACK_ID])
    _require(df, [S.TRACK_ID, S.VALENCE, S.AROUSAL], what="LABELS", path=path)
    df = df.select(S.TRACK_ID, S.VALENCE, S.AROUSAL).with_columns(
        pl.col(S.TRACK_ID).cast(pl.Utf8).str.strip_chars()
    )
    _check_ids(df[S.TRACK_ID], what="LABELS", path=path, key=S.TRACK_ID)
    return _check_unit_floats(df, [S.VALENCE, S.AROUSAL], what="LABELS", path=path)


def load_queries(path: Path) -> pl.DataFrame:
    """Read QUERIES: ``query`` (non-empty text), ``valence``, ``arousal`` floats in [-1, 1]."""
    path = Path(path).resolve()
    df = _read_table(path, what="QUERIES", string_columns=[QUERY])
    _require(df, [QUERY, S.VALENCE, S.AROUSAL], what="QUERIES", path=path)
    df = df.select(QUERY, S.VALENCE, S.AROUSAL).with_columns(pl.col(QUERY).cast(pl.Utf8))
    for i, q in enumerate(df[QUERY].to_list()):
        if q is None or not q.strip():
            raise EvaluationInputError(f"QUERIES {path} {_row_ref(i, path)}: column 'query' is empty")
    return _check_unit_floats(df, [S.VALENCE, S.AROUSAL], what="QUERIES", path=path)


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------

def _json_ready(obj: Any) -> Any:
    """NaN/inf → None, numpy scalars → Python, recursively."""
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def _say(msg: str, progress: bool) -> None:
    if progress:
        tqdm.write(f"[evaluate] {msg}", file=sys.stderr)


def _warn(msg: str) -> None:
    tqdm.write(f"[evaluate] warning: {msg}", file=sys.stderr)


@dataclass
class RankingRun:
    """Per-query outcome of one ranking mode (kept for the markdown report)."""

    per_query: list[dict[str, float]]
    latencies_ms: list[float]


def _run_ranking(
    *, handle: StoreHandle, mode: str, queries: pl.DataFrame, labels: LabelSet, progress: bool,
    label: str,
) -> RankingRun:
    per_query: list[dict[str, float]] = []
    latencies: list[float] = []
    texts = queries[QUERY].to_list()
    targets = queries.select(S.VALENCE, S.AROUSAL).to_numpy().astype(np.float64)
    for text, target in tqdm(
        list(zip(texts, targets)), desc=f"ranking {label}", unit="query", disable=not progress,
        file=sys.stderr,
    ):
        t0 = time.perf_counter()
        ranked = handle.recommend(query=text, mode=mode, top_k=TOP_K)
        latencies.append((time.perf_counter() - t0) * 1000.0)
        ids = [str(t) for t in ranked]
        if len(set(ids)) < len(ids):
            _warn(f"mode {mode!r} returned duplicate track ids for {text[:40]!r}; duplicates dropped")
            ids = list(dict.fromkeys(ids))
        ids = ids[:TOP_K]
        if ids:
            vectors = np.asarray(handle.text_vectors(track_ids=ids), dtype=np.float64)
            artists = list(handle.artists(track_ids=ids))
        else:
            vectors, artists = np.zeros((0, 1)), []
        per_query.append(
            ranking_metrics(
                ranked_track_ids=ids, labels=labels, target=target, artists=artists,
                text_vectors=vectors,
            )
        )
    return RankingRun(per_query=per_query, latencies_ms=latencies)


def run_evaluation(
    *,
    corpus_path: Path,
    labels_path: Path | None = None,
    queries_path: Path | None = None,
    out_dir: Path,
    build_store: Callable[[pl.DataFrame, Path], StoreHandle],
    progress: bool = True,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Evaluate a store built from CORPUS alone against LABELS and QUERIES.

    ``build_store(corpus_df, workdir)`` gets the corpus only (never the labels) and a scratch
    folder (a fresh temp folder, removed afterwards, unless ``workdir`` is given). Sections of the
    report are present when their inputs are: ``query_mood`` needs QUERIES, ``track_mood`` needs
    LABELS, ``ranking``/``latency_ms`` need both. Writes ``out_dir/report.json`` (NaN → null) and
    ``out_dir/report.md`` (with plots) and returns the JSON-ready report dict.
    """
    from pipelines.measure.report import write_report_md  # matplotlib only when a report is written

    corpus_path = Path(corpus_path)
    out_dir = Path(out_dir)
    _say(f"reading CORPUS {corpus_path}", progress)
    corpus = load_corpus(corpus_path)
    labels_df = load_labels(Path(labels_path)) if labels_path is not None else None
    queries = load_queries(Path(queries_path)) if queries_path is not None else None

    if S.AUDIO_PATH in corpus.columns:
        paths = [p for p in corpus[S.AUDIO_PATH].to_list() if p is not None]
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            _warn(f"{len(missing)} of {len(paths)} audio_path files do not exist (first: {missing[0]})")

    label_set: LabelSet | None = None
    if labels_df is not None:
        in_corpus = labels_df.filter(pl.col(S.TRACK_ID).is_in(corpus[S.TRACK_ID].implode()))
        if in_corpus.height < labels_df.height:
            _warn(f"{labels_df.height - in_corpus.height} LABELS rows name tracks absent from CORPUS; ignored")
        labels_df = in_corpus
        label_set = LabelSet(
            ids=tuple(labels_df[S.TRACK_ID].to_list()),
            values=labels_df.select(S.VALENCE, S.AROUSAL).to_numpy().astype(np.float64).reshape(-1, 2),
            index={t: i for i, t in enumerate(labels_df[S.TRACK_ID].to_list())},
        )

    report: dict[str, Any] = {
        "n_tracks": int(corpus.height),
        "n_queries": int(queries.height) if queries is not None else 0,
    }
    scatter = None
    per_query_precision: dict[str, list[float]] | None = None

    tmp_ctx = tempfile.mkdtemp(prefix="moodscape-eval-") if workdir is None else None
    work = Path(tmp_ctx) if tmp_ctx is not None else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        _say(f"building the evaluation store from {corpus.height} tracks in {work}", progress)
        t0 = time.perf_counter()
        handle = build_store(corpus.clone(), work)
        _say(f"store built in {time.perf_counter() - t0:.1f} s", progress)

        if queries is not None:
            _say(f"query moods for {queries.height} queries", progress)
            pred = np.asarray(handle.query_moods(texts=queries[QUERY].to_list()), dtype=np.float64)
            report["query_mood"] = query_mood_metrics(
                pred, queries.select(S.VALENCE, S.AROUSAL).to_numpy()
            )

        if labels_df is not None:
            moods = handle.track_moods()
            joined = labels_df.join(
                moods.select(
                    pl.col(S.TRACK_ID).cast(pl.Utf8),
                    pl.col(S.VALENCE).cast(pl.Float64).alias("pred_valence"),
                    pl.col(S.AROUSAL).cast(pl.Float64).alias("pred_arousal"),
                    pl.col(S.MOOD_SOURCE).cast(pl.Utf8),
                ),
                on=S.TRACK_ID, how="left",
            )
            scored = joined.filter(
                pl.col("pred_valence").is_not_null() & pl.col("pred_arousal").is_not_null()
                & pl.col("pred_valence").is_not_nan() & pl.col("pred_arousal").is_not_nan()
            )
            if scored.height < joined.height:
                _warn(f"{joined.height - scored.height} labelled tracks have no stored mood; excluded from track_mood")
            pred_t = scored.select("pred_valence", "pred_arousal").to_numpy().reshape(-1, 2)
            lab_t = scored.select(S.VALENCE, S.AROUSAL).to_numpy().reshape(-1, 2)
            src = [s if s is not None else "null" for s in scored[S.MOOD_SOURCE].to_list()]
            report["track_mood"] = track_mood_metrics(pred_t, lab_t, src)
            scatter = (pred_t, lab_t, src)

        if queries is not None and label_set is not None:
            ranking: dict[str, dict[str, float]] = {}
            latency: dict[str, dict[str, float]] = {}
            per_query_precision = {}
            for section, mode in RANKING_MODES.items():
                run = _run_ranking(
                    handle=handle, mode=mode, queries=queries, labels=label_set,
                    progress=progress, label=section,
                )
                ranking[section] = mean_metrics(run.per_query)
                latency[section] = latency_summary(run.latencies_ms)
                per_query_precision[section] = [r["precision@10"] for r in run.per_query]
            report["ranking"] = ranking
            report["latency_ms"] = latency
    finally:
        if tmp_ctx is not None:
            shutil.rmtree(tmp_ctx, ignore_errors=True)

    report = _json_ready(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(report, out_dir / "report.json")
    write_report_md(
        report=report, out_dir=out_dir, scatter=scatter, per_query_precision=per_query_precision
    )
    _say(f"wrote {out_dir / 'report.json'} and {out_dir / 'report.md'}", progress)
    return report
