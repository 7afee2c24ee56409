"""One evaluation run: build a store from CORPUS alone (the builder is injected), then measure its
moods against LABELS and QUERIES, its rankings (full vs the SBERT baseline, and with ``ablate``
every ablation mode too) and, where CORPUS has genres, its audio-only "sounds like"; writes
``report.json`` (NaN → null) and ``report.md``.
"""

import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from pipelines import schema as S
from pipelines.measure.inputs import QUERY, load_corpus, load_labels, load_queries
from pipelines.measure.metrics import (
    TOP_K,
    LabelSet,
    latency_summary,
    mean_metrics,
    query_mood_metrics,
    ranking_metrics,
    track_mood_metrics,
)
from pipelines.store import write_json

# report.json ranking section name → the ``mode`` passed to ``StoreHandle.recommend``
RANKING_MODES: dict[str, str] = {"full": "full", "baseline_sbert": "baseline"}
# …and with ``ablate``: the hand weights without a learned ranker, and without each signal.
ABLATION_MODES: dict[str, str] = {"hand": "hand", "no_text": "no_text", "no_audio": "no_audio", "no_mood": "no_mood"}
QUERY_SAMPLE_SEED = 0  # the sample of QUERIES kept by ``max_queries``


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
        """Track ids ranked best-first, no filters; ``mode`` is a value of RANKING_MODES or ABLATION_MODES."""
        ...

    def text_vectors(self, *, track_ids: Sequence[str]) -> np.ndarray:
        """Text embeddings of ``track_ids`` → float array (n, d), in the same order."""
        ...

    def artists(self, *, track_ids: Sequence[str]) -> list[str | None]:
        """Artist of each of ``track_ids`` (None where unknown), in the same order."""
        ...


@runtime_checkable
class AudioStoreHandle(Protocol):
    """What the "sounds like" section needs from the store (optional: skipped without it)."""

    def extracted_audio(self) -> pl.DataFrame:
        """One row per track whose audio was extracted (not imputed): ``track_id``, the librosa
        feature columns and any backbone embedding list columns."""
        ...

    def audio_neighbours(self, *, track_ids: Sequence[str], k: int) -> dict[str, list[str]]:
        """Each track's k nearest others among ``track_ids`` by the service's audio retrieval."""
        ...

    def audio_dims(self) -> int | None:
        """Size of the served audio vectors (None without an audio index)."""
        ...


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


def _warn_missing_audio(corpus: pl.DataFrame) -> None:
    if S.AUDIO_PATH in corpus.columns:
        paths = [p for p in corpus[S.AUDIO_PATH].to_list() if p is not None]
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            _warn(f"{len(missing)} of {len(paths)} audio_path files do not exist (first: {missing[0]})")


def _labels_in_corpus(labels: pl.DataFrame, corpus: pl.DataFrame) -> pl.DataFrame:
    """LABELS rows whose track is in CORPUS (the others are ignored, with a warning)."""
    in_corpus = labels.filter(pl.col(S.TRACK_ID).is_in(corpus[S.TRACK_ID].implode()))
    if in_corpus.height < labels.height:
        _warn(f"{labels.height - in_corpus.height} LABELS rows name tracks absent from CORPUS; ignored")
    return in_corpus


def _scored_track_moods(
    labels: pl.DataFrame, moods: pl.DataFrame,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(stored moods (m, 2), labels (m, 2), mood_source per track) of the m labelled tracks that
    have a stored mood (the others are excluded, with a warning)."""
    joined = labels.join(
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
    pred = scored.select("pred_valence", "pred_arousal").to_numpy().reshape(-1, 2)
    lab = scored.select(S.VALENCE, S.AROUSAL).to_numpy().reshape(-1, 2)
    src = [s if s is not None else "null" for s in scored[S.MOOD_SOURCE].to_list()]
    return pred, lab, src


def _sounds_like(handle: StoreHandle, corpus: pl.DataFrame) -> dict[str, Any] | None:
    """The "sounds like" section; None when CORPUS names no genre (the section is then absent)."""
    from pipelines.measure.similarity import primary_genres, sounds_like  # librosa only when needed

    genres = primary_genres(corpus)
    if not genres:
        return None
    if not isinstance(handle, AudioStoreHandle):
        return {"skipped": "the evaluated store gives no access to its audio features"}
    features = handle.extracted_audio()
    features = features.filter(pl.col(S.TRACK_ID).is_in(corpus[S.TRACK_ID].implode()))
    return sounds_like(
        genres=genres, features=features, served_dims=handle.audio_dims(),
        served=lambda ids, k: handle.audio_neighbours(track_ids=ids, k=k),
    )


def run_evaluation(
    *,
    corpus_path: Path,
    labels_path: Path | None = None,
    queries_path: Path | None = None,
    out_dir: Path,
    build_store: Callable[[pl.DataFrame, Path], StoreHandle],
    progress: bool = True,
    workdir: Path | None = None,
    ablate: bool = False,
    max_queries: int | None = None,
) -> dict[str, Any]:
    """Evaluate a store built from CORPUS alone against LABELS and QUERIES.

    ``build_store(corpus_df, workdir)`` gets the corpus only (never the labels) and a scratch
    folder (a fresh temp folder, removed afterwards, unless ``workdir`` is given). Sections of the
    report are present when their inputs are: ``query_mood`` needs QUERIES, ``track_mood`` needs
    LABELS, ``ranking``/``latency_ms`` need both, ``sounds_like`` needs genres in CORPUS (it holds
    ``skipped`` when they or the store's audio do not allow it). Writes ``out_dir/report.json`` (NaN → null) and
    ``out_dir/report.md`` (with plots) and returns the JSON-ready report dict. ``ablate``: the
    ranking also runs every mode of ABLATION_MODES (``ranking.<mode>``); ``max_queries``: a seeded
    sample of that many QUERIES is used (all when None or when there are fewer).
    """
    from pipelines.measure.report import write_report_md  # matplotlib only when a report is written

    corpus_path = Path(corpus_path)
    out_dir = Path(out_dir)
    _say(f"reading CORPUS {corpus_path}", progress)
    corpus = load_corpus(corpus_path)
    labels_df = load_labels(Path(labels_path)) if labels_path is not None else None
    queries = load_queries(Path(queries_path)) if queries_path is not None else None
    if queries is not None and max_queries is not None and queries.height > max_queries:
        queries = queries.sample(n=max_queries, seed=QUERY_SAMPLE_SEED)

    _warn_missing_audio(corpus)
    label_set: LabelSet | None = None
    if labels_df is not None:
        labels_df = _labels_in_corpus(labels_df, corpus)
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
            scatter = _scored_track_moods(labels_df, handle.track_moods())
            report["track_mood"] = track_mood_metrics(*scatter)

        if queries is not None and label_set is not None:
            ranking: dict[str, dict[str, float]] = {}
            latency: dict[str, dict[str, float]] = {}
            per_query_precision = {}
            modes = {**RANKING_MODES, **(ABLATION_MODES if ablate else {})}
            for section, mode in modes.items():
                run = _run_ranking(
                    handle=handle, mode=mode, queries=queries, labels=label_set,
                    progress=progress, label=section,
                )
                ranking[section] = mean_metrics(run.per_query)
                latency[section] = latency_summary(run.latencies_ms)
                per_query_precision[section] = [r["precision@10"] for r in run.per_query]
            report["ranking"] = ranking
            report["latency_ms"] = latency

        similar = _sounds_like(handle, corpus)
        if similar is not None:
            _say(f"sounds like: {similar.get('n_tracks', 0)} tracks with extracted audio", progress)
            report["sounds_like"] = similar
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
