"""The allow-list: row ids a request may return (its filters, and no DEAD links unless asked for).

Filters run in DuckDB over the bundle's ``tracks.parquet`` with bound parameters, then keep the
live rows; an unfiltered request gets a precomputed array (every live row, or every row). Which
rows are live is set by the Recommender (the bundle's statuses, with the availability overlay).
"""

import threading
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from pipelines import schema as S
from pipelines.rank.types import Filters


class AllowList:
    """Allowed row ids of one bundle (thread-safe: one DuckDB cursor per call)."""

    def __init__(self, *, tracks_path: Path, live: np.ndarray) -> None:
        self.tracks_path = Path(tracks_path)
        self.all_ids = np.arange(len(live), dtype=np.int64)
        self.set_live(live)
        self._duck = duckdb.connect()
        self._lock = threading.Lock()

    def set_live(self, live: np.ndarray) -> None:
        """Serve ``live`` (n,) bool (rows whose link is not DEAD) from now on."""
        self.live = np.asarray(live, dtype=bool)
        self.live_ids = np.flatnonzero(self.live).astype(np.int64)

    def close(self) -> None:
        self._duck.close()

    def allowed_ids(self, filters: Filters | None, *, include_unavailable: bool = False) -> np.ndarray:
        """(m,) int64 sorted row ids satisfying ``filters`` whose link is not DEAD.

        ``min_year``/``max_year`` inclusive (unknown year never passes a year filter), ``genres``
        case-insensitive match against any of a track's genres (``a|b``, ``a, b``),
        ``exclude_genres`` drops a track if any of its genres is listed (no genre: kept),
        ``exclude_artists`` case-insensitive exact artist names, ``exclude_track_ids`` exact ids.
        ``include_unavailable``: DEAD links are allowed too (UNKNOWN/SUSPECT are always allowed).
        """
        if filters is None or filters.empty:
            return self.all_ids if include_unavailable else self.live_ids
        live = self.live  # one mask for the whole call
        clauses = ["TRUE"]
        params: list[Any] = [str(self.tracks_path)]
        genre_list = (
            f"list_transform(regexp_split_to_array(lower(coalesce({S.GENRE}, '')), ?), lambda x: trim(x))"
        )
        if filters.min_year is not None:
            clauses.append(f"{S.YEAR} >= ?")
            params.append(int(filters.min_year))
        if filters.max_year is not None:
            clauses.append(f"{S.YEAR} <= ?")
            params.append(int(filters.max_year))
        if filters.genres:
            clauses.append(f"list_has_any({genre_list}, ?::VARCHAR[])")
            params += [S.GENRE_SPLIT_PATTERN, [g.strip().lower() for g in filters.genres]]
        if filters.exclude_genres:
            clauses.append(f"NOT list_has_any({genre_list}, ?::VARCHAR[])")
            params += [S.GENRE_SPLIT_PATTERN, [g.strip().lower() for g in filters.exclude_genres if g.strip()]]
        if filters.exclude_artists:
            clauses.append(f"({S.ARTIST} IS NULL OR NOT list_contains(?::VARCHAR[], lower(trim({S.ARTIST}))))")
            params.append([a.strip().lower() for a in filters.exclude_artists])
        if filters.exclude_track_ids:
            clauses.append(f"NOT list_contains(?::VARCHAR[], {S.TRACK_ID})")
            params.append(list(filters.exclude_track_ids))
        sql = (
            "SELECT file_row_number AS rid FROM read_parquet(?, file_row_number = true) "
            f"WHERE {' AND '.join(clauses)} ORDER BY rid"
        )
        with self._lock:
            cur = self._duck.cursor()
        try:
            rows = cur.execute(sql, params).fetchnumpy()["rid"]
        finally:
            cur.close()
        rows = np.asarray(rows, dtype=np.int64)
        return rows if include_unavailable else rows[live[rows]]
