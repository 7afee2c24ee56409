"""A published serving version folder: its layout and :func:`load_bundle` (writing it is
:mod:`pipelines.index.version`).

Layout (row position in ``tracks.parquet`` = track row id used by every index)::

    tracks.parquet        one row per track (BUNDLE_COLUMNS)
    text.faiss            inner product over L2-normalised MiniLM text vectors (384-d)
    audio.faiss           inner product over L2-normalised audio vectors (rows that have audio only;
                          absent when no track has an audio vector)
    mood.faiss            L2 over (valence, arousal) (rows with a known mood only)
    text_vectors.npy      (n, 384) float32 copy of the text vectors (small bundles; np.load mmap)
    audio_vectors.npy     (n, d) float32, L2-normalised; all-zero rows = no audio vector
    query_mood.joblib     the query-mood model (copied)
    ranker.joblib         the learned ranker (copied; absent: the hand weights rank)
    manifest.json         version, created_at, counts, per-index dims/metric/factory/ntotal, libs
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import polars as pl

from pipelines import schema as S
from pipelines.index import build as indexing
from pipelines.index.vector_index import VectorIndex

TRACKS_FILE = "tracks.parquet"
TEXT_INDEX_FILE = "text.faiss"
AUDIO_INDEX_FILE = "audio.faiss"
MOOD_INDEX_FILE = "mood.faiss"
TEXT_VECTORS_FILE = "text_vectors.npy"
AUDIO_VECTORS_FILE = "audio_vectors.npy"
QUERY_MOOD_FILE = "query_mood.joblib"
RANKER_FILE = "ranker.joblib"
MANIFEST_FILE = "manifest.json"

BUNDLE_COLUMNS: tuple[str, ...] = (
    S.TRACK_ID, S.TITLE, S.ARTIST, S.YEAR, S.GENRE, S.TAGS, S.PERMALINK_URL, S.URL_STATUS,
    S.PLAYBACK_COUNT, S.VALENCE, S.AROUSAL, S.MOOD_SOURCE, S.MOOD_CONFIDENCE, S.AUDIO_SOURCE,
    S.TEXT_DOC, S.AUDIO_CONFIDENCE, S.AUDIO_PATH, S.SOURCE, S.DESCRIPTION, S.VIBE_TEXT,
)
BUNDLE_SCHEMA: dict[str, pl.DataType] = {
    S.TRACK_ID: pl.String, S.TITLE: pl.String, S.ARTIST: pl.String, S.YEAR: pl.Int32,
    S.GENRE: pl.String, S.TAGS: pl.List(pl.String), S.PERMALINK_URL: pl.String,
    S.URL_STATUS: pl.String, S.PLAYBACK_COUNT: pl.Int64, S.VALENCE: pl.Float32,
    S.AROUSAL: pl.Float32, S.MOOD_SOURCE: pl.String, S.MOOD_CONFIDENCE: pl.Float32,
    S.AUDIO_SOURCE: pl.String, S.TEXT_DOC: pl.String, S.AUDIO_CONFIDENCE: pl.Float32,
    S.AUDIO_PATH: pl.String, S.SOURCE: pl.String, S.DESCRIPTION: pl.String, S.VIBE_TEXT: pl.String,
}
# Columns a version may lack (written before they existed, or a crawl without them): null.
OPTIONAL_COLUMNS: tuple[str, ...] = (S.AUDIO_CONFIDENCE, S.AUDIO_PATH, S.SOURCE, S.DESCRIPTION, S.VIBE_TEXT)
# Display-only text not loaded at scale (like TEXT_DOC): the service reads it per result when present.
_LARGE_SKIPPED: tuple[str, ...] = (S.TEXT_DOC, S.DESCRIPTION, S.VIBE_TEXT)


@dataclass
class Bundle:
    """A loaded serving version. Arrays are row-aligned with ``tracks`` (row position = id).

    ``text`` / ``audio`` / ``mood``: each modality's :class:`VectorIndex` (``audio`` is None when
    no track has an audio vector, ``mood`` when no track has a mood).
    """

    folder: Path
    manifest: dict[str, Any]
    tracks: pl.DataFrame
    text: VectorIndex
    audio: VectorIndex | None
    mood: VectorIndex | None
    has_audio: np.ndarray  # (n,) bool
    has_mood: np.ndarray  # (n,) bool

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

    @property
    def ranker_path(self) -> Path:
        """The learned ranker of this version (may be absent)."""
        return self.folder / RANKER_FILE

    def __len__(self) -> int:
        return self.tracks.height


def load_bundle(folder: Path, *, mmap: bool = True) -> Bundle:
    """Load a version folder written by ``pipelines.index.version`` (vectors and indices memory-mapped)."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    n = int(manifest.get("counts", {}).get("tracks", -1))
    # Serving never needs the embedded document; at scale it is the biggest string column.
    columns = None if n < indexing.FLAT_MAX_ROWS else [c for c in BUNDLE_COLUMNS if c not in _LARGE_SKIPPED]
    present = set(pl.read_parquet_schema(folder / TRACKS_FILE))
    wanted = None if columns is None else [c for c in columns if c in present]
    tracks = pl.read_parquet(folder / TRACKS_FILE, columns=wanted)
    tracks = tracks.with_columns(
        pl.lit(None, dtype=BUNDLE_SCHEMA[c]).alias(c) for c in OPTIONAL_COLUMNS if c not in tracks.columns
        and (columns is None or c in columns)
    )
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
        raise ValueError(
            f"bundle {folder} has no text vectors and its text index holds {text_index.ntotal} of {n} rows"
        )
    audio_vi = None if audio_index is None else VectorIndex.over(audio_index, n_rows=n, vectors=audio)
    if audio is not None:
        has_audio = (np.abs(np.asarray(audio)).sum(axis=1) > 0) if audio.shape[1] else np.zeros(n, dtype=bool)
    else:
        has_audio = np.zeros(n, dtype=bool) if audio_vi is None else audio_vi.present
    mood_index = _maybe(MOOD_INDEX_FILE)
    va = tracks.select(S.VALENCE, S.AROUSAL).to_numpy()
    has_mood = ~np.isnan(va.astype(np.float64)).any(axis=1)
    return Bundle(
        folder=folder, manifest=manifest, tracks=tracks,
        text=VectorIndex.over(text_index, n_rows=n, vectors=text), audio=audio_vi,
        mood=None if mood_index is None else VectorIndex.over(mood_index, n_rows=n),
        has_audio=has_audio, has_mood=has_mood,
    )
