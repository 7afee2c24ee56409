"""Writing a serving version: one folder built in a temp sibling, renamed into place, then made
current with ``StoreLayout.publish``.

:class:`VersionWriter` is the one writer (file names and tracks schema from
:mod:`pipelines.index.bundle`, which reads versions). :func:`assemble_version` copies the index
files the index assets built and checked; :func:`write_version` builds the indices from vectors in
memory; :func:`write_version_chunked` streams vectors too large to hold twice.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import faiss
import numpy as np
import polars as pl
from tqdm import tqdm

from pipelines import schema as S
from pipelines import store
from pipelines.index import build as indexing
from pipelines.index import bundle as B

INDEX_FILES: dict[str, str] = {"text": B.TEXT_INDEX_FILE, "audio": B.AUDIO_INDEX_FILE, "mood": B.MOOD_INDEX_FILE}


def new_version_id() -> str:
    return datetime.now(UTC).strftime("v%Y%m%dT%H%M%S%fZ")


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length (float32); zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norms > 0, x / np.where(norms > 0, norms, 1.0), 0.0).astype(np.float32)


def normalise_tracks(tracks: pl.DataFrame) -> pl.DataFrame:
    """``tracks`` reduced to ``BUNDLE_COLUMNS`` cast to ``BUNDLE_SCHEMA`` (unique, non-null ids)."""
    missing = [c for c in B.BUNDLE_COLUMNS if c not in tracks.columns and c not in B.OPTIONAL_COLUMNS]
    if missing:
        raise ValueError(f"tracks lack bundle columns {missing}")
    out = tracks.select([
        (pl.col(c) if c in tracks.columns else pl.lit(None)).cast(B.BUNDLE_SCHEMA[c]).alias(c) for c in B.BUNDLE_COLUMNS
    ])
    if out[S.TRACK_ID].null_count() or out[S.TRACK_ID].n_unique() != out.height:
        raise ValueError("track_id must be non-null and unique")
    return out


def index_manifest(index: faiss.Index | None) -> dict[str, Any] | None:
    """The manifest entry of one index: dims, metric, factory, ntotal (None for an absent index)."""
    if index is None:
        return None
    return {
        "dims": int(index.d),
        "metric": indexing.metric_name(index),
        "factory": indexing.index_factory_string(index),
        "ntotal": int(index.ntotal),
    }


def _install(tmp: Path, folder: Path) -> None:
    """Rename the complete ``tmp`` to ``folder`` (an existing ``folder`` is moved aside first)."""
    if folder.exists():
        # os.replace cannot replace a non-empty directory: move the old one aside first.
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)


class VersionWriter:
    """Writes one version folder into a temp sibling; :meth:`install` writes the manifest last and
    renames the folder into place. Used as a context manager: leaving the block without
    ``install`` (an exception) removes the temp folder, so no partial version is ever visible.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._tmp: Path | None = None
        self.tracks: pl.DataFrame | None = None
        self.indices: dict[str, dict[str, Any] | None] = {}

    @classmethod
    def in_store(cls, layout: store.StoreLayout, version: str) -> "VersionWriter":
        return cls(layout.version_dir(version))

    def __enter__(self) -> Self:
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.", dir=self.folder.parent))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None and self._tmp.exists():
            shutil.rmtree(self._tmp, ignore_errors=True)

    def path(self, name: str) -> Path:
        """Where file ``name`` is written before the install."""
        if self._tmp is None:
            raise RuntimeError("VersionWriter is used outside its with block")
        return self._tmp / name

    def write_tracks(self, tracks: pl.DataFrame) -> None:
        """``tracks`` as returned by :func:`normalise_tracks` (row position = row id)."""
        self.tracks = tracks
        tracks.write_parquet(self.path(B.TRACKS_FILE))

    def save_vectors(self, name: str, vectors: np.ndarray) -> None:
        np.save(self.path(name), vectors)

    def open_vectors(self, name: str, shape: tuple[int, int]) -> np.memmap:
        """A float32 ``.npy`` of ``shape`` to fill in place (flush before :meth:`install`)."""
        return np.lib.format.open_memmap(self.path(name), mode="w+", dtype=np.float32, shape=shape)

    def write_index(self, key: str, index: faiss.Index | None) -> None:
        """Save ``index`` as the ``key`` index ("text"/"audio"/"mood"); None records it absent."""
        if index is not None:
            indexing.save_index(index=index, path=self.path(INDEX_FILES[key]))
        self.indices[key] = index_manifest(index)

    def copy_index(self, key: str, source: Path, *, n_rows: int) -> None:
        """Copy an already-built index file; its ids must be row positions in 0..n_rows-1."""
        target = self.path(INDEX_FILES[key])
        shutil.copyfile(source, target)
        index = faiss.read_index(str(target))
        ids = indexing.id_map(index)
        if len(ids) and (ids.min() < 0 or ids.max() >= n_rows):
            raise ValueError(f"{key} index has ids outside 0..{n_rows - 1}")
        self.indices[key] = index_manifest(index)

    def copy_file(self, name: str, source: Path) -> None:
        shutil.copyfile(source, self.path(name))

    def install(self, *, counts: dict[str, int], extra_manifest: dict[str, Any]) -> Path:
        """Write ``manifest.json`` and rename the folder into place; returns the folder."""
        if self.tracks is None:
            raise RuntimeError("a version needs its tracks before it is installed")
        manifest = {
            "version": self.folder.name,
            "created_at": datetime.now(UTC).isoformat(),
            "counts": {**counts, "dead_links": int((self.tracks.get_column(S.URL_STATUS) == S.DEAD).sum())},
            "indices": self.indices,
            "libraries": {"faiss": faiss.__version__, "numpy": np.__version__, "polars": pl.__version__},
            **extra_manifest,
        }
        self.path(B.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        _install(self.path(B.MANIFEST_FILE).parent, self.folder)
        return self.folder


def assemble_version(
    *, version: str, tracks: pl.DataFrame, text_vectors: np.ndarray, audio_vectors: np.ndarray,
    index_files: dict[str, Path], query_mood_model_path: Path, extra_files: dict[str, Path] | None = None,
    extra_manifest: dict[str, Any] | None = None, layout: store.StoreLayout | None = None,
) -> Path:
    """Write ``versions/<version>/`` of ``layout`` (default: ``MOODSCAPE_HOME``'s) and return it;
    CURRENT is not touched here.

    tracks: n rows with ``bundle.BUNDLE_COLUMNS`` in row-id order; text_vectors (n, 384);
    audio_vectors (n, d) with zero rows where a track has no audio vector; index_files maps
    "text"/"audio"/"mood" to FAISS files whose ids are row positions (copied, never rebuilt).
    """
    tracks = normalise_tracks(tracks)
    n = tracks.height
    if text_vectors.shape[0] != n or audio_vectors.shape[0] != n:
        raise ValueError(f"vectors must have {n} rows: text {text_vectors.shape}, audio {audio_vectors.shape}")
    with VersionWriter.in_store(layout or store.layout(), version) as w:
        w.write_tracks(tracks)
        w.save_vectors(B.TEXT_VECTORS_FILE, np.ascontiguousarray(text_vectors, dtype=np.float32))
        w.save_vectors(B.AUDIO_VECTORS_FILE, np.ascontiguousarray(audio_vectors, dtype=np.float32))
        for key, path in index_files.items():
            w.copy_index(key, path, n_rows=n)
        w.copy_file(B.QUERY_MOOD_FILE, query_mood_model_path)
        for name, path in (extra_files or {}).items():
            w.copy_file(name, path)
        return w.install(
            counts={
                "tracks": n,
                "with_audio": int((np.abs(audio_vectors).sum(axis=1) > 0).sum()) if audio_vectors.shape[1] else 0,
                "with_text": int((np.abs(text_vectors).sum(axis=1) > 0).sum()),
            },
            extra_manifest=extra_manifest or {},
        )


def _mood_index(va: np.ndarray, has_mood: np.ndarray) -> faiss.Index | None:
    """L2 index over the known (valence, arousal) rows: exact below 50k rows, IVF cells above
    (HNSW in 2-d is a poor fit)."""
    if not has_mood.any():
        return None
    return indexing.build_index(
        vectors=indexing.VectorSet(ids=np.flatnonzero(has_mood), vectors=va[has_mood]),
        metric="l2", factory=indexing.mood_factory(n=int(has_mood.sum())),
    )


def _moods(tracks: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) float32 (valence, arousal) of ``tracks`` and the (n,) mask of rows with both known."""
    va = tracks.select(S.VALENCE, S.AROUSAL).to_numpy().astype(np.float32)
    return va, ~np.isnan(va).any(axis=1)


def write_version(
    *,
    folder: Path,
    tracks: pl.DataFrame,
    text_vectors: np.ndarray,
    audio_vectors: np.ndarray,
    query_mood_model_path: Path,
    extra_manifest: dict[str, Any] | None = None,
    factory: str | None = None,
) -> Path:
    """Build the indices of in-memory vectors and write the version ``folder`` atomically.

    ``tracks``: n rows with BUNDLE_COLUMNS; ``text_vectors``: (n, 384) float32 (normalised here);
    ``audio_vectors``: (n, d) float32, an all-zero (or NaN) row means "no audio vector" (d may be 0).
    ``factory`` overrides the size-adaptive FAISS factory for text/audio indices.
    """
    tracks = normalise_tracks(tracks)
    n = tracks.height
    text = np.asarray(text_vectors, dtype=np.float32)
    audio = np.asarray(audio_vectors, dtype=np.float32)
    if audio.ndim == 1 and audio.size == 0:
        audio = audio.reshape(n, 0)
    if text.shape[0] != n or audio.shape[0] != n:
        raise ValueError(f"vectors must have {n} rows: text {text.shape}, audio {audio.shape}")
    text = l2_normalise(np.nan_to_num(text))
    audio = l2_normalise(np.nan_to_num(audio)) if audio.shape[1] else audio
    has_audio = np.linalg.norm(audio, axis=1) > 0 if audio.shape[1] else np.zeros(n, dtype=bool)
    va, has_mood = _moods(tracks)
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
    with VersionWriter(folder) as w:
        w.save_vectors(B.TEXT_VECTORS_FILE, text)
        w.save_vectors(B.AUDIO_VECTORS_FILE, audio)
        return _finish(w, tracks=tracks, text_index=text_index, audio_index=audio_index,
                       mood_index=_mood_index(va, has_mood), query_mood_model_path=query_mood_model_path,
                       counts={"tracks": n, "with_audio": int(has_audio.sum()), "with_mood": int(has_mood.sum())},
                       extra_manifest=extra_manifest or {})


def _finish(
    w: VersionWriter, *, tracks: pl.DataFrame, text_index: faiss.Index, audio_index: faiss.Index | None,
    mood_index: faiss.Index | None, query_mood_model_path: Path, counts: dict[str, int],
    extra_manifest: dict[str, Any],
) -> Path:
    """Tracks, the three indices, the query-mood model and the manifest of a built version."""
    w.write_tracks(tracks)
    w.write_index("text", text_index)
    w.write_index("audio", audio_index)
    w.write_index("mood", mood_index)
    w.copy_file(B.QUERY_MOOD_FILE, query_mood_model_path)
    return w.install(counts=counts, extra_manifest=extra_manifest)


def write_version_chunked(
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
    """Like :func:`write_version` for stores too big to hold twice in memory (same layout).

    ``text_chunk(start, stop)`` → (stop-start, 384) and ``audio_chunk(start, stop)`` → (stop-start,
    audio_dim) float32 rows (all-zero audio row = no audio); each may be called more than once for
    the same range and must return the same rows. Trainable indices are trained on the first
    ``train_size`` rows. ``publish_vectors`` (default: only below ``indexing.FLAT_MAX_ROWS`` rows)
    also writes ``text_vectors.npy``/``audio_vectors.npy``; without them ``text_rows``/``audio_rows``
    decode from the index storage.
    """
    tracks = normalise_tracks(tracks)
    n = tracks.height
    if publish_vectors is None:
        publish_vectors = n < indexing.FLAT_MAX_ROWS
    starts = list(range(0, n, chunk))
    m = min(n, train_size)
    text_index = indexing.new_index(dim=text_chunk(0, 1).shape[1], metric="ip",
                                    factory=factory or indexing.choose_factory(n=n),
                                    train_vectors=l2_normalise(text_chunk(0, m)))
    # Pass 1 over audio: which rows have a vector (for the size-adaptive factory and training).
    has_audio = np.zeros(n, dtype=bool)
    audio_train: list[np.ndarray] = []
    if audio_dim:
        for s in tqdm(starts, desc="audio pass", disable=not progress):
            a = np.nan_to_num(audio_chunk(s, min(n, s + chunk)))
            has_audio[s : s + len(a)] = np.linalg.norm(a, axis=1) > 0
            if sum(len(x) for x in audio_train) < train_size:
                audio_train.append(l2_normalise(a[has_audio[s : s + len(a)]]))
    n_audio = int(has_audio.sum())
    audio_index = (
        indexing.new_index(dim=audio_dim, metric="ip", factory=factory or indexing.choose_factory(n=n_audio),
                           train_vectors=np.concatenate(audio_train)[:train_size])
        if n_audio else None
    )
    with VersionWriter(folder) as w:
        text_mm = audio_mm = None
        if publish_vectors:
            text_mm = w.open_vectors(B.TEXT_VECTORS_FILE, (n, text_index.d))
            audio_mm = w.open_vectors(B.AUDIO_VECTORS_FILE, (n, audio_dim))
        for s in tqdm(starts, desc="indexing", disable=not progress):
            e = min(n, s + chunk)
            ids = np.arange(s, e, dtype=np.int64)
            t = l2_normalise(np.nan_to_num(text_chunk(s, e)))
            text_index.add_with_ids(t, ids)
            if text_mm is not None:
                text_mm[s:e] = t
            if audio_dim:
                a = l2_normalise(np.nan_to_num(audio_chunk(s, e)))
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
        va, has_mood = _moods(tracks)
        return _finish(
            w, tracks=tracks, text_index=text_index, audio_index=audio_index, mood_index=_mood_index(va, has_mood),
            query_mood_model_path=query_mood_model_path,
            counts={"tracks": n, "with_audio": n_audio, "with_mood": int(has_mood.sum())},
            extra_manifest={"vectors_published": bool(publish_vectors), "audio_dim": int(audio_dim),
                            **(extra_manifest or {})},
        )


def publish(version: str, *, keep: int = 3, layout: store.StoreLayout | None = None) -> None:
    """Switch CURRENT of ``layout`` (default: ``MOODSCAPE_HOME``'s) to ``version`` and prune all
    but the newest ``keep`` versions."""
    layout = layout or store.layout()
    layout.publish(version)
    folders = sorted((p for p in layout.versions.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.name)
    for old in folders[:-keep]:
        if old.name != version:
            shutil.rmtree(old, ignore_errors=True)
