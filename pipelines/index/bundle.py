"""A published serving version: ``store/versions/<version>/`` with tracks, vectors, indices, manifest.

Layout (row position in ``tracks.parquet`` = track row id used by every index)::

    tracks.parquet        one row per track (BUNDLE_COLUMNS)
    text.faiss            inner product over L2-normalised MiniLM text vectors (384-d)
    audio.faiss           inner product over L2-normalised audio vectors (rows that have audio only;
                          absent when no track has an audio vector)
    mood.faiss            L2 over (valence, arousal) (rows with a known mood only)
    text_vectors.npy      (n, 384) float32, for scoring/MMR (np.load mmap)
    audio_vectors.npy     (n, d) float32, L2-normalised; all-zero rows = no audio vector
    query_mood.joblib     the query-mood model (copied)
    manifest.json         version, created_at, counts, per-index dims/metric/factory/ntotal, libs

The folder is written to a temp sibling and renamed into place in one ``os.replace``.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import polars as pl
from tqdm import tqdm

from pipelines.index import build as indexing
from pipelines import schema as S

TRACKS_FILE = "tracks.parquet"
TEXT_INDEX_FILE = "text.faiss"
AUDIO_INDEX_FILE = "audio.faiss"
MOOD_INDEX_FILE = "mood.faiss"
TEXT_VECTORS_FILE = "text_vectors.npy"
AUDIO_VECTORS_FILE = "audio_vectors.npy"
QUERY_MOOD_FILE = "query_mood.joblib"
MANIFEST_FILE = "manifest.json"

BUNDLE_COLUMNS: tuple[str, ...] = (
    S.TRACK_ID, S.TITLE, S.ARTIST, S.YEAR, S.GENRE, S.TAGS, S.PERMALINK_URL, S.URL_STATUS,
    S.PLAYBACK_COUNT, S.VALENCE, S.AROUSAL, S.MOOD_SOURCE, S.MOOD_CONFIDENCE, S.AUDIO_SOURCE,
    S.TEXT_DOC,
)
BUNDLE_SCHEMA: dict[str, pl.DataType] = {
    S.TRACK_ID: pl.String, S.TITLE: pl.String, S.ARTIST: pl.String, S.YEAR: pl.Int32,
    S.GENRE: pl.String, S.TAGS: pl.List(pl.String), S.PERMALINK_URL: pl.String,
    S.URL_STATUS: pl.String, S.PLAYBACK_COUNT: pl.Int64, S.VALENCE: pl.Float32,
    S.AROUSAL: pl.Float32, S.MOOD_SOURCE: pl.String, S.MOOD_CONFIDENCE: pl.Float32,
    S.AUDIO_SOURCE: pl.String, S.TEXT_DOC: pl.String,
}


@dataclass
class Bundle:
    """A loaded serving version. Arrays are row-aligned with ``tracks`` (row position = id)."""

    folder: Path
    manifest: dict[str, Any]
    tracks: pl.DataFrame
    text_vectors: np.ndarray | None  # (n, 384) float32, or None when only the index stores them
    audio_vectors: np.ndarray | None  # (n, d) float32 (zero rows = no audio), or None (index only)
    has_audio: np.ndarray  # (n,) bool
    has_mood: np.ndarray  # (n,) bool
    text_index: faiss.Index
    audio_index: faiss.Index | None
    mood_index: faiss.Index | None
    # Row id → storage position in each index (indexing.row_positions, (n,) int32, -1 = absent).
    text_pos: np.ndarray | None = None
    audio_pos: np.ndarray | None = None
    mood_pos: np.ndarray | None = None

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def tracks_path(self) -> Path:
        """The Parquet file to query with DuckDB (``read_parquet(?)``)."""
        return self.folder / TRACKS_FILE

    @property
    def query_mood_path(self) -> Path:
        return self.folder / QUERY_MOOD_FILE

    def __len__(self) -> int:
        return self.tracks.height

    # Row access to the vectors goes through these two methods only, so the storage behind them
    # (memory-mapped float32 today) can change without touching the ranking code.
    # Large bundles publish no .npy copies: the rows are decoded from the index storage
    # (``reconstruct_batch``; exact for Flat/HNSW-Flat, fp16-rounded for SQfp16, 8-bit for SQ8).
    def text_rows(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), 384) float32 L2-normalised text vectors of row ids ``ids`` (int64); zero rows
        for tracks without text (not in the text index)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if self.text_vectors is not None:
            return np.asarray(self.text_vectors[ids], dtype=np.float32)
        present = self.text_pos[ids] >= 0
        if present.all():
            return indexing.reconstruct_rows(index=self.text_index, ids=ids, positions=self.text_pos)
        out = np.zeros((len(ids), self.text_index.d), dtype=np.float32)
        if present.any():
            out[present] = indexing.reconstruct_rows(index=self.text_index, ids=ids[present], positions=self.text_pos)
        return out

    def audio_rows(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), d) float32 L2-normalised audio vectors of ``ids``; zero rows = no audio."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if self.audio_vectors is not None:
            return np.asarray(self.audio_vectors[ids], dtype=np.float32)
        out = np.zeros((len(ids), self.audio_dim), dtype=np.float32)
        present = self.has_audio[ids]
        if present.any():
            out[present] = indexing.reconstruct_rows(index=self.audio_index, ids=ids[present], positions=self.audio_pos)
        return out

    @property
    def audio_dim(self) -> int:
        if self.audio_vectors is not None:
            return int(self.audio_vectors.shape[1])
        return int(self.audio_index.d) if self.audio_index is not None else 0

    def text_exact_search(self, *, query: np.ndarray, k: int, allow: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner-product top-k over the text vectors of ``allow`` (None = every row).

        query (384,) or (1, 384) → (scores (1, k), ids (1, k)); id -1 pads missing slots.
        """
        q = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if self.text_vectors is not None:
            ids = np.arange(len(self), dtype=np.int64) if allow is None else np.asarray(allow, np.int64)
            return indexing.exact_search(
                vectors=indexing.VectorSet(ids=ids, vectors=self.text_rows(ids)), queries=q, k=k, metric="ip"
            )
        return indexing.exhaustive_search(index=self.text_index, queries=q, k=k, allow=allow, n_rows=len(self))


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norms > 0, x / np.where(norms > 0, norms, 1.0), 0.0).astype(np.float32)


def _normalise_tracks(tracks: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in BUNDLE_COLUMNS if c not in tracks.columns]
    if missing:
        raise ValueError(f"tracks lack bundle columns {missing}")
    out = tracks.select([pl.col(c).cast(BUNDLE_SCHEMA[c]) for c in BUNDLE_COLUMNS])
    if out[S.TRACK_ID].null_count() or out[S.TRACK_ID].n_unique() != out.height:
        raise ValueError("track_id must be non-null and unique")
    return out


def _index_manifest(index: faiss.Index | None) -> dict[str, Any] | None:
    if index is None:
        return None
    return {
        "dims": int(index.d),
        "metric": indexing.metric_name(index),
        "factory": indexing.index_factory_string(index),
        "ntotal": int(index.ntotal),
    }


def write_bundle(
    *,
    folder: Path,
    tracks: pl.DataFrame,
    text_vectors: np.ndarray,
    audio_vectors: np.ndarray,
    query_mood_model_path: Path,
    extra_manifest: dict[str, Any] | None = None,
    factory: str | None = None,
) -> Path:
    """Write a complete serving version into ``folder`` atomically and return ``folder``.

    ``tracks``: n rows with BUNDLE_COLUMNS; ``text_vectors``: (n, 384) float32 (normalised here);
    ``audio_vectors``: (n, d) float32, an all-zero (or NaN) row means "no audio vector" (d may be 0).
    ``factory`` overrides the size-adaptive FAISS factory for text/audio indices.
    """
    folder = Path(folder)
    tracks = _normalise_tracks(tracks)
    n = tracks.height
    text = np.asarray(text_vectors, dtype=np.float32)
    audio = np.asarray(audio_vectors, dtype=np.float32)
    if audio.ndim == 1 and audio.size == 0:
        audio = audio.reshape(n, 0)
    if text.shape[0] != n or audio.shape[0] != n:
        raise ValueError(f"vectors must have {n} rows: text {text.shape}, audio {audio.shape}")
    text = _l2_normalise(np.nan_to_num(text))
    audio = _l2_normalise(np.nan_to_num(audio)) if audio.shape[1] else audio
    has_audio = np.linalg.norm(audio, axis=1) > 0 if audio.shape[1] else np.zeros(n, dtype=bool)
    va = tracks.select(S.VALENCE, S.AROUSAL).to_numpy().astype(np.float32)
    has_mood = ~np.isnan(va).any(axis=1)
    all_ids = np.arange(n, dtype=np.int64)

    text_index = indexing.build_index(
        vectors=indexing.VectorSet(ids=all_ids, vectors=text), metric="ip", factory=factory
    )
    audio_index = (
        indexing.build_index(
            vectors=indexing.VectorSet(ids=all_ids[has_audio], vectors=audio[has_audio]),
            metric="ip", factory=factory,
        )
        if has_audio.any()
        else None
    )
    # Mood space is 2-d: exact below 50k rows, IVF cells above (HNSW in 2-d is a poor fit).
    mood_index = (
        indexing.build_index(
            vectors=indexing.VectorSet(ids=all_ids[has_mood], vectors=va[has_mood]),
            metric="l2", factory=indexing.mood_factory(n=int(has_mood.sum())),
        )
        if has_mood.any()
        else None
    )

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        np.save(tmp / TEXT_VECTORS_FILE, text)
        np.save(tmp / AUDIO_VECTORS_FILE, audio)
        _finish_version(
            tmp=tmp, folder=folder, tracks=tracks, text_index=text_index, audio_index=audio_index,
            mood_index=mood_index, query_mood_model_path=query_mood_model_path,
            counts={"tracks": n, "with_audio": int(has_audio.sum()), "with_mood": int(has_mood.sum())},
            extra_manifest=extra_manifest or {},
        )
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _install(tmp: Path, folder: Path) -> None:
    if folder.exists():
        # os.replace cannot replace a non-empty directory: move the old one aside first.
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)


def _finish_version(
    *,
    tmp: Path,
    folder: Path,
    tracks: pl.DataFrame,
    text_index: faiss.Index,
    audio_index: faiss.Index | None,
    mood_index: faiss.Index | None,
    query_mood_model_path: Path,
    counts: dict[str, int],
    extra_manifest: dict[str, Any],
) -> None:
    """Write the tracks, indices, model and manifest into ``tmp`` and rename it to ``folder``."""
    tracks.write_parquet(tmp / TRACKS_FILE)
    indexing.save_index(index=text_index, path=tmp / TEXT_INDEX_FILE)
    if audio_index is not None:
        indexing.save_index(index=audio_index, path=tmp / AUDIO_INDEX_FILE)
    if mood_index is not None:
        indexing.save_index(index=mood_index, path=tmp / MOOD_INDEX_FILE)
    shutil.copyfile(query_mood_model_path, tmp / QUERY_MOOD_FILE)
    manifest = {
        "version": folder.name,
        "created_at": datetime.now(UTC).isoformat(),
        "counts": {**counts, "dead_links": int((tracks[S.URL_STATUS] == "DEAD").sum())},
        "indices": {
            "text": _index_manifest(text_index),
            "audio": _index_manifest(audio_index),
            "mood": _index_manifest(mood_index),
        },
        "libraries": {"faiss": faiss.__version__, "numpy": np.__version__, "polars": pl.__version__},
        **extra_manifest,
    }
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    _install(tmp, folder)


def write_bundle_chunked(
    *,
    folder: Path,
    tracks: pl.DataFrame,
    text_chunk: Callable[[int, int], np.ndarray],
    audio_chunk: Callable[[int, int], np.ndarray],
    audio_dim: int,
    query_mood_model_path: Path,
    factory: str | None = None,
    chunk: int = 50_000,
    train_size: int = 100_000,
    publish_vectors: bool | None = None,
    extra_manifest: dict[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """Like :func:`write_bundle` for stores too big to hold twice in memory (same layout).

    ``text_chunk(start, stop)`` → (stop-start, 384) and ``audio_chunk(start, stop)`` → (stop-start,
    audio_dim) float32 rows (all-zero audio row = no audio); each may be called more than once for
    the same range and must return the same rows. Trainable indices are trained on the first
    ``train_size`` rows. ``publish_vectors`` (default: only below ``indexing.FLAT_MAX_ROWS`` rows)
    also writes ``text_vectors.npy``/``audio_vectors.npy``; without them ``text_rows``/``audio_rows``
    decode from the index storage.
    """
    folder = Path(folder)
    tracks = _normalise_tracks(tracks)
    n = tracks.height
    if publish_vectors is None:
        publish_vectors = n < indexing.FLAT_MAX_ROWS
    starts = list(range(0, n, chunk))
    text_factory = factory or indexing.choose_factory(n=n)
    m = min(n, train_size)
    text_index = indexing.new_index(dim=text_chunk(0, 1).shape[1], metric="ip", factory=text_factory,
                                    train_vectors=_l2_normalise(text_chunk(0, m)))
    # Pass 1 over audio: which rows have a vector (for the size-adaptive factory and training).
    has_audio = np.zeros(n, dtype=bool)
    audio_train: list[np.ndarray] = []
    if audio_dim:
        for s in tqdm(starts, desc="audio pass", disable=not progress):
            a = np.nan_to_num(audio_chunk(s, min(n, s + chunk)))
            has_audio[s : s + len(a)] = np.linalg.norm(a, axis=1) > 0
            if sum(len(x) for x in audio_train) < train_size:
                audio_train.append(_l2_normalise(a[has_audio[s : s + len(a)]]))
    n_audio = int(has_audio.sum())
    audio_index = (
        indexing.new_index(dim=audio_dim, metric="ip", factory=factory or indexing.choose_factory(n=n_audio),
                           train_vectors=np.concatenate(audio_train)[:train_size])
        if n_audio else None
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        text_mm = audio_mm = None
        if publish_vectors:
            text_mm = np.lib.format.open_memmap(tmp / TEXT_VECTORS_FILE, mode="w+", dtype=np.float32,
                                                shape=(n, text_index.d))
            audio_mm = np.lib.format.open_memmap(tmp / AUDIO_VECTORS_FILE, mode="w+", dtype=np.float32,
                                                 shape=(n, audio_dim))
        for s in tqdm(starts, desc="indexing", disable=not progress):
            e = min(n, s + chunk)
            ids = np.arange(s, e, dtype=np.int64)
            t = _l2_normalise(np.nan_to_num(text_chunk(s, e)))
            text_index.add_with_ids(t, ids)
            if text_mm is not None:
                text_mm[s:e] = t
            if audio_dim:
                a = _l2_normalise(np.nan_to_num(audio_chunk(s, e)))
                mask = has_audio[s:e]
                if audio_index is not None and mask.any():
                    audio_index.add_with_ids(np.ascontiguousarray(a[mask]), ids[mask])
                if audio_mm is not None:
                    audio_mm[s:e] = a
        for mm in (text_mm, audio_mm):
            if mm is not None:
                mm.flush()
        del text_mm, audio_mm
        indexing.finalize_index(text_index)
        if audio_index is not None:
            indexing.finalize_index(audio_index)
        va = tracks.select(S.VALENCE, S.AROUSAL).to_numpy().astype(np.float32)
        has_mood = ~np.isnan(va).any(axis=1)
        mood_index = (
            indexing.build_index(vectors=indexing.VectorSet(ids=np.flatnonzero(has_mood), vectors=va[has_mood]),
                                 metric="l2", factory=indexing.mood_factory(n=int(has_mood.sum())))
            if has_mood.any() else None
        )
        _finish_version(
            tmp=tmp, folder=folder, tracks=tracks, text_index=text_index, audio_index=audio_index,
            mood_index=mood_index, query_mood_model_path=query_mood_model_path,
            counts={"tracks": n, "with_audio": n_audio, "with_mood": int(has_mood.sum())},
            extra_manifest={"vectors_published": bool(publish_vectors), "audio_dim": int(audio_dim),
                            **(extra_manifest or {})},
        )
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_bundle(folder: Path, *, mmap: bool = True) -> Bundle:
    """Load a version folder written by :func:`write_bundle` (vectors and indices memory-mapped)."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    n = int(manifest.get("counts", {}).get("tracks", -1))
    # Serving never needs the embedded document; at scale it is the biggest string column.
    columns = None if n < indexing.FLAT_MAX_ROWS else [c for c in BUNDLE_COLUMNS if c != S.TEXT_DOC]
    tracks = pl.read_parquet(folder / TRACKS_FILE, columns=columns)
    n = tracks.height
    mode = "r" if mmap else None

    def _maybe(name: str) -> faiss.Index | None:
        path = folder / name
        return indexing.load_index(path=path, mmap=mmap) if path.exists() else None

    text_index = indexing.load_index(path=folder / TEXT_INDEX_FILE, mmap=mmap)
    audio_index = _maybe(AUDIO_INDEX_FILE)
    text = np.load(folder / TEXT_VECTORS_FILE, mmap_mode=mode) if (folder / TEXT_VECTORS_FILE).exists() else None
    audio = np.load(folder / AUDIO_VECTORS_FILE, mmap_mode=mode) if (folder / AUDIO_VECTORS_FILE).exists() else None
    if (text is not None and text.shape[0] != n) or (audio is not None and audio.shape[0] != n):
        raise ValueError(f"bundle {folder} is inconsistent: {n} tracks, text {text.shape}, audio {audio.shape}")
    if text is None and text_index.ntotal != n:
        raise ValueError(f"bundle {folder} has no text vectors and its text index holds {text_index.ntotal} of {n} rows")
    audio_pos = None if audio_index is None else indexing.row_positions(index=audio_index, n_rows=n)
    if audio is not None:
        has_audio = (np.abs(np.asarray(audio)).sum(axis=1) > 0) if audio.shape[1] else np.zeros(n, dtype=bool)
    else:
        has_audio = np.zeros(n, dtype=bool) if audio_pos is None else audio_pos >= 0
    mood_index = _maybe(MOOD_INDEX_FILE)
    va = tracks.select(S.VALENCE, S.AROUSAL).to_numpy()
    has_mood = ~np.isnan(va.astype(np.float64)).any(axis=1)
    return Bundle(
        folder=folder, manifest=manifest, tracks=tracks, text_vectors=text, audio_vectors=audio,
        has_audio=has_audio, has_mood=has_mood, text_index=text_index,
        audio_index=audio_index, mood_index=mood_index,
        text_pos=indexing.row_positions(index=text_index, n_rows=n), audio_pos=audio_pos,
        mood_pos=None if mood_index is None else indexing.row_positions(index=mood_index, n_rows=n),
    )
