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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import polars as pl

from pipelines import indexing
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
    text_vectors: np.ndarray  # (n, 384) float32
    audio_vectors: np.ndarray  # (n, d) float32; zero rows where has_audio is False
    has_audio: np.ndarray  # (n,) bool
    has_mood: np.ndarray  # (n,) bool
    text_index: faiss.Index
    audio_index: faiss.Index | None
    mood_index: faiss.Index | None

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
    def text_rows(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), 384) float32 L2-normalised text vectors of row ids ``ids`` (int64)."""
        return np.asarray(self.text_vectors[np.asarray(ids, dtype=np.int64)], dtype=np.float32)

    def audio_rows(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), d) float32 L2-normalised audio vectors of ``ids``; zero rows = no audio."""
        return np.asarray(self.audio_vectors[np.asarray(ids, dtype=np.int64)], dtype=np.float32)


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
    # Mood space is 2-d: exact search is always cheap and HNSW in 2-d is a poor fit.
    mood_index = (
        indexing.build_index(
            vectors=indexing.VectorSet(ids=all_ids[has_mood], vectors=va[has_mood]),
            metric="l2", factory="Flat",
        )
        if has_mood.any()
        else None
    )

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        tracks.write_parquet(tmp / TRACKS_FILE)
        np.save(tmp / TEXT_VECTORS_FILE, text)
        np.save(tmp / AUDIO_VECTORS_FILE, audio)
        indexing.save_index(index=text_index, path=tmp / TEXT_INDEX_FILE)
        if audio_index is not None:
            indexing.save_index(index=audio_index, path=tmp / AUDIO_INDEX_FILE)
        if mood_index is not None:
            indexing.save_index(index=mood_index, path=tmp / MOOD_INDEX_FILE)
        shutil.copyfile(query_mood_model_path, tmp / QUERY_MOOD_FILE)
        manifest = {
            "version": folder.name,
            "created_at": datetime.now(UTC).isoformat(),
            "counts": {
                "tracks": n,
                "with_audio": int(has_audio.sum()),
                "with_mood": int(has_mood.sum()),
                "dead_links": int((tracks[S.URL_STATUS] == "DEAD").sum()),
            },
            "indices": {
                "text": _index_manifest(text_index),
                "audio": _index_manifest(audio_index),
                "mood": _index_manifest(mood_index),
            },
            "libraries": {
                "faiss": faiss.__version__, "numpy": np.__version__, "polars": pl.__version__,
            },
            **(extra_manifest or {}),
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        if folder.exists():
            # os.replace cannot replace a non-empty directory: move the old one aside first.
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_bundle(folder: Path, *, mmap: bool = True) -> Bundle:
    """Load a version folder written by :func:`write_bundle` (vectors and indices memory-mapped)."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    tracks = pl.read_parquet(folder / TRACKS_FILE)
    mode = "r" if mmap else None
    text = np.load(folder / TEXT_VECTORS_FILE, mmap_mode=mode)
    audio = np.load(folder / AUDIO_VECTORS_FILE, mmap_mode=mode)
    n = tracks.height
    if text.shape[0] != n or audio.shape[0] != n:
        raise ValueError(f"bundle {folder} is inconsistent: {n} tracks, text {text.shape}, audio {audio.shape}")
    has_audio = (np.abs(np.asarray(audio)).sum(axis=1) > 0) if audio.shape[1] else np.zeros(n, dtype=bool)
    va = tracks.select(S.VALENCE, S.AROUSAL).to_numpy()
    has_mood = ~np.isnan(va.astype(np.float64)).any(axis=1)

    def _maybe(name: str) -> faiss.Index | None:
        path = folder / name
        return indexing.load_index(path=path, mmap=mmap) if path.exists() else None

    text_index = indexing.load_index(path=folder / TEXT_INDEX_FILE, mmap=mmap)
    return Bundle(
        folder=folder, manifest=manifest, tracks=tracks, text_vectors=text, audio_vectors=audio,
        has_audio=has_audio, has_mood=has_mood, text_index=text_index,
        audio_index=_maybe(AUDIO_INDEX_FILE), mood_index=_maybe(MOOD_INDEX_FILE),
    )
