"""Assemble a serving version from already-built, already-checked index files.

The index assets build and recall-check ``text``/``audio``/``mood`` indices; publication copies
exactly those files (never rebuilds them) next to the row-aligned tracks table and vectors, writes
the manifest last, renames the folder into place, and only then switches ``CURRENT``.
"""

import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import polars as pl

from pipelines.index import bundle as B
from pipelines.index import build as indexing
from pipelines import schema as S
from pipelines.store import publish_version, versions_dir


def new_version_id() -> str:
    return datetime.now(UTC).strftime("v%Y%m%dT%H%M%S%fZ")


def assemble_version(
    *, version: str, tracks: pl.DataFrame, text_vectors: np.ndarray, audio_vectors: np.ndarray,
    index_files: dict[str, Path], query_mood_model_path: Path, extra_files: dict[str, Path] | None = None,
    extra_manifest: dict[str, Any] | None = None,
) -> Path:
    """Write ``versions/<version>/`` atomically and return it (CURRENT is not touched here).

    tracks: n rows with ``bundle.BUNDLE_COLUMNS`` in row-id order; text_vectors (n, 384);
    audio_vectors (n, d) with zero rows where a track has no audio vector; index_files maps
    "text"/"audio"/"mood" to FAISS files whose ids are row positions.
    """
    tracks = B._normalise_tracks(tracks)
    n = tracks.height
    if text_vectors.shape[0] != n or audio_vectors.shape[0] != n:
        raise ValueError(f"vectors must have {n} rows: text {text_vectors.shape}, audio {audio_vectors.shape}")
    names = {"text": B.TEXT_INDEX_FILE, "audio": B.AUDIO_INDEX_FILE, "mood": B.MOOD_INDEX_FILE}
    folder = versions_dir() / version
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=folder.parent))
    try:
        tracks.write_parquet(tmp / B.TRACKS_FILE)
        np.save(tmp / B.TEXT_VECTORS_FILE, np.ascontiguousarray(text_vectors, dtype=np.float32))
        np.save(tmp / B.AUDIO_VECTORS_FILE, np.ascontiguousarray(audio_vectors, dtype=np.float32))
        indices: dict[str, Any] = {}
        for key, path in index_files.items():
            shutil.copyfile(path, tmp / names[key])
            index = faiss.read_index(str(tmp / names[key]))
            ids = indexing.id_map(index)
            if len(ids) and (ids.min() < 0 or ids.max() >= n):
                raise ValueError(f"{key} index has ids outside 0..{n - 1}")
            indices[key] = B._index_manifest(index)
        shutil.copyfile(query_mood_model_path, tmp / B.QUERY_MOOD_FILE)
        for name, path in (extra_files or {}).items():
            shutil.copyfile(path, tmp / name)
        manifest = {
            "version": version,
            "created_at": datetime.now(UTC).isoformat(),
            "counts": {
                "tracks": n,
                "with_audio": int((np.abs(audio_vectors).sum(axis=1) > 0).sum()) if audio_vectors.shape[1] else 0,
                "with_text": int((np.abs(text_vectors).sum(axis=1) > 0).sum()),
                "dead_links": int((tracks.get_column(S.URL_STATUS) == "DEAD").sum()),
            },
            "indices": indices,
            "libraries": {"faiss": faiss.__version__, "numpy": np.__version__, "polars": pl.__version__},
            **(extra_manifest or {}),
        }
        (tmp / B.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def publish(version: str, *, keep: int = 3) -> None:
    """Switch CURRENT to ``version`` and prune all but the newest ``keep`` versions."""
    publish_version(version)
    folders = sorted((p for p in versions_dir().iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    for old in folders[:-keep]:
        if old.name != version:
            shutil.rmtree(old, ignore_errors=True)
