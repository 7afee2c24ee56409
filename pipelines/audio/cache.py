"""A content-keyed cache of extracted audio features, so re-runs only decode what changed.

Key: (resolved path, size, mtime_ns) plus the extractor's version (``EXTRACT_VERSION``: the feature
set and the backbone's weights and preprocessing); rows of another version are extracted again and
dropped from the cache. The cache is a Parquet table in the store, rewritten atomically.
"""

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from pipelines import schema as S
from pipelines.audio.extract import EXTRACT_VERSION
from pipelines.store import read_table, write_table

_KEY = ["_path", "_size", "_mtime_ns"]
_VERSION = "_version"
_KEY_SCHEMA = {"_path": pl.String, "_size": pl.Int64, "_mtime_ns": pl.Int64}


def _file_key(path: str) -> tuple[str, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (str(Path(path).resolve()), int(st.st_size), int(st.st_mtime_ns))


def _current_rows(cache_path: Path, version: str) -> pl.DataFrame | None:
    """The cached rows of ``version`` (None when there are none)."""
    if not cache_path.exists():
        return None
    cache = read_table(cache_path)
    if _VERSION not in cache.columns:  # written before versions existed
        return None
    cache = cache.filter(pl.col(_VERSION) == version)
    return cache if cache.height else None


def extract_with_cache(
    *, items: Sequence[tuple[str, str]], cache_path: Path,
    extract: Callable[[Sequence[tuple[str, str]]], pl.DataFrame], version: str = EXTRACT_VERSION,
) -> tuple[pl.DataFrame, dict]:
    """Features for ``items`` ((track_id, path) pairs) → (DataFrame keyed by track_id, stats).

    ``extract`` is called only for files not in the cache (new, changed, or cached by another
    ``version``); rows with an ``audio_error`` are not cached, so a transient failure is retried on
    the next run.
    """
    keys = {tid: _file_key(p) for tid, p in items}
    cache = _current_rows(cache_path, version)
    wanted = pl.DataFrame(
        [(tid, *k) for tid, k in keys.items() if k is not None],
        schema={S.TRACK_ID: pl.String, **_KEY_SCHEMA}, orient="row",
    )
    hits = None
    if cache is not None and wanted.height:
        hits = wanted.join(cache.drop(S.TRACK_ID), on=_KEY, how="inner")
    hit_ids = set() if hits is None else set(hits.get_column(S.TRACK_ID).to_list())
    todo = [(tid, path) for tid, path in items if tid not in hit_ids]
    fresh = extract(todo) if todo else None
    frames = []
    if hits is not None and hits.height:
        frames.append(hits.drop(*_KEY, _VERSION))
    if fresh is not None and fresh.height:
        frames.append(fresh)
        ok = fresh.filter(pl.col(S.AUDIO_ERROR).is_null())
        if ok.height:
            key_rows = [keys[t] or ("", 0, 0) for t in ok.get_column(S.TRACK_ID).to_list()]
            ok = ok.with_columns(
                *(pl.Series(name, [k[i] for k in key_rows], dtype=dtype) for i, (name, dtype) in
                  enumerate(_KEY_SCHEMA.items())),
                pl.lit(version, dtype=pl.String).alias(_VERSION),
            )
            merged = ok if cache is None else pl.concat([cache, ok], how="diagonal_relaxed")
            write_table(merged.unique(subset=_KEY, keep="last", maintain_order=True), cache_path)
    result = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    stats = {"requested": len(items), "cache_hits": len(items) - len(todo), "extracted": len(todo)}
    return result, stats
