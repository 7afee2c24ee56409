"""A content-keyed cache of extracted audio features, so re-runs only decode what changed.

Key: (resolved path, size, mtime_ns). The cache is a Parquet table in the store, rewritten atomically.
"""

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from pipelines import schema as S
from pipelines.store import read_table, write_table

_KEY = ["_path", "_size", "_mtime_ns"]


def _file_key(path: str) -> tuple[str, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (str(Path(path).resolve()), int(st.st_size), int(st.st_mtime_ns))


def extract_with_cache(
    *, items: Sequence[tuple[str, str]], cache_path: Path,
    extract: Callable[[Sequence[tuple[str, str]]], pl.DataFrame],
) -> tuple[pl.DataFrame, dict]:
    """Features for ``items`` ((track_id, path) pairs) → (DataFrame keyed by track_id, stats).

    ``extract`` is called only for files not in the cache (new or changed); rows with an
    ``audio_error`` are not cached, so a transient failure is retried on the next run.
    """
    keys = {tid: _file_key(p) for tid, p in items}
    cache = read_table(cache_path) if cache_path.exists() else None
    cached_rows = []
    todo: list[tuple[str, str]] = []
    lookup: dict[tuple, dict] = {}
    if cache is not None and cache.height:
        for row in cache.iter_rows(named=True):
            lookup[(row["_path"], row["_size"], row["_mtime_ns"])] = row
    for tid, path in items:
        key = keys[tid]
        hit = lookup.get(key) if key else None
        if hit is not None:
            row = dict(hit)
            row[S.TRACK_ID] = tid
            cached_rows.append(row)
        else:
            todo.append((tid, path))
    fresh = extract(todo) if todo else None
    frames = []
    if cached_rows:
        frames.append(pl.DataFrame(cached_rows, schema=cache.schema).drop(_KEY))
    if fresh is not None and fresh.height:
        frames.append(fresh)
        ok = fresh.filter(pl.col(S.AUDIO_ERROR).is_null())
        if ok.height:
            key_rows = [keys[t] or ("", 0, 0) for t in ok.get_column(S.TRACK_ID).to_list()]
            ok = ok.with_columns(
                pl.Series("_path", [k[0] for k in key_rows]),
                pl.Series("_size", [k[1] for k in key_rows], dtype=pl.Int64),
                pl.Series("_mtime_ns", [k[2] for k in key_rows], dtype=pl.Int64),
            )
            merged = ok if cache is None else pl.concat([cache, ok.select(cache.columns)], how="vertical_relaxed")
            merged = merged.unique(subset=_KEY, keep="last")
            write_table(merged, cache_path)
    result = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    stats = {"requested": len(items), "cache_hits": len(cached_rows), "extracted": len(todo)}
    return result, stats
