"""The availability overlay: link statuses that changed a track's availability since a version was built.

A small table (track_id, url_status, checked_at) of the tracks whose derived link status is DEAD
where the published version serves them, or live where it has them DEAD — checked at the URL the
version serves. It is rebuilt whole after each re-check and replaces the previous one atomically;
the service applies it over the version's own statuses (the overlay wins for the tracks it lists).
"""

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from pipelines import schema as S
from pipelines.store import atomic_path

OVERLAY_SCHEMA: dict[str, pl.DataType] = {S.TRACK_ID: pl.Utf8(), S.URL_STATUS: pl.Utf8(), S.CHECKED_AT: pl.Utf8()}
_WRITTEN_AT = "moodscape.written_at"  # Parquet key-value metadata of the overlay file
_BASE_VERSION = "moodscape.base_version"


@dataclass(frozen=True, kw_only=True)
class Overlay:
    """One overlay file: its rows, when it was written (its version) and the version it was built against."""

    table: pl.DataFrame  # (m, OVERLAY_SCHEMA)
    written_at: str  # UTC ISO-8601 (microseconds): also the overlay's version
    base_version: str | None

    @property
    def statuses(self) -> dict[str, str]:
        """track id → link status."""
        return dict(zip(self.table.get_column(S.TRACK_ID).to_list(), self.table.get_column(S.URL_STATUS).to_list()))

    @property
    def dead(self) -> int:
        return int((self.table.get_column(S.URL_STATUS) == S.DEAD).sum())

    def age_s(self, *, now: datetime | None = None) -> float:
        """Seconds since the overlay was written."""
        now = now or datetime.now(timezone.utc)
        return max(0.0, (now - datetime.fromisoformat(self.written_at)).total_seconds())


def build_overlay(*, status: pl.DataFrame, served: pl.DataFrame) -> pl.DataFrame:
    """The overlay rows: (m, OVERLAY_SCHEMA), sorted by track id.

    ``status``: the derived current status per track (track_id, url, url_status, final_url,
    checked_at: ``status.current_status``); ``served``: the published version's tracks
    (track_id, permalink_url, url_status). A track is listed when its availability (DEAD or not)
    differs from the version's and the checked URL (or where it ended) is the one the version
    serves — a link the catalogue replaced by another track's URL is judged by that track's check.
    """
    dead_now = pl.col(S.URL_STATUS) == S.DEAD
    dead_served = (pl.col("_served_status") == S.DEAD).fill_null(False)
    same_url = (pl.col(S.PERMALINK_URL) == pl.col(S.LINK_URL)) | (pl.col(S.PERMALINK_URL) == pl.col(S.FINAL_URL))
    joined = status.select(S.TRACK_ID, S.LINK_URL, S.FINAL_URL, S.URL_STATUS, S.CHECKED_AT).join(
        served.select(S.TRACK_ID, S.PERMALINK_URL, pl.col(S.URL_STATUS).alias("_served_status")),
        on=S.TRACK_ID, how="inner",
    )
    return (
        joined.filter(same_url.fill_null(False) & (dead_now != dead_served))
        .select(list(OVERLAY_SCHEMA)).cast(OVERLAY_SCHEMA).sort(S.TRACK_ID)
    )


def write_overlay(table: pl.DataFrame, path: Path, *, base_version: str | None) -> Overlay:
    """Write ``table`` (OVERLAY_SCHEMA) to ``path`` in one rename; the overlay as written."""
    written_at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    table = table.select(list(OVERLAY_SCHEMA)).cast(OVERLAY_SCHEMA)
    with atomic_path(path, ".parquet") as tmp:
        table.write_parquet(tmp, metadata={_WRITTEN_AT: written_at, _BASE_VERSION: base_version or ""})
    return Overlay(table=table, written_at=written_at, base_version=base_version)


def read_overlay(path: Path) -> Overlay:
    """The overlay at ``path``; FileNotFoundError when absent, ValueError when it is not an overlay."""
    meta = pl.read_parquet_metadata(path)
    if _WRITTEN_AT not in meta:
        raise ValueError(f"{path} is not an availability overlay (no {_WRITTEN_AT})")
    table = pl.read_parquet(path)
    missing = set(OVERLAY_SCHEMA) - set(table.columns)
    if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)}")
    datetime.fromisoformat(meta[_WRITTEN_AT])  # a bad stamp is a bad file
    return Overlay(
        table=table.select(list(OVERLAY_SCHEMA)).cast(OVERLAY_SCHEMA),
        written_at=meta[_WRITTEN_AT], base_version=meta.get(_BASE_VERSION) or None,
    )
