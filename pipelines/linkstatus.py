"""Per-track link status over time: which links to check next, and the latest known status.

The history is a table of every check ever made (append-only, in the store); the current status
of a track is its latest check. Each run checks at most ``budget`` links, never-checked first, then
the stalest, so a large crawl converges over scheduled runs instead of one endless run.
"""

from datetime import datetime, timezone

import polars as pl

from pipelines import schema as S

HISTORY_SCHEMA = {
    S.TRACK_ID: pl.Utf8, "url": pl.Utf8, S.URL_STATUS: pl.Utf8, S.HTTP_CODE: pl.Int64,
    S.FINAL_URL: pl.Utf8, S.REASON: pl.Utf8, S.CHECKED_AT: pl.Utf8,
}


def empty_history() -> pl.DataFrame:
    return pl.DataFrame(schema=HISTORY_SCHEMA)


def latest_status(history: pl.DataFrame) -> pl.DataFrame:
    """The newest check per (track_id, url)."""
    if history.height == 0:
        return history
    return history.sort(S.CHECKED_AT).unique(subset=[S.TRACK_ID, "url"], keep="last")


def plan_checks(*, tracks: pl.DataFrame, history: pl.DataFrame, budget: int) -> list[tuple[str, str | None]]:
    """(track_id, url) pairs to check this run: never-checked first, then oldest check first."""
    current = tracks.select(S.TRACK_ID, pl.col(S.PERMALINK_URL).alias("url"))
    latest = latest_status(history).select(S.TRACK_ID, "url", S.CHECKED_AT)
    joined = current.join(latest, on=[S.TRACK_ID, "url"], how="left", nulls_equal=True)
    ordered = joined.sort([pl.col(S.CHECKED_AT).is_not_null(), S.CHECKED_AT, S.TRACK_ID], nulls_last=False)
    picked = ordered.head(max(0, budget))
    return list(zip(picked.get_column(S.TRACK_ID).to_list(), picked.get_column("url").to_list()))


def current_status(*, tracks: pl.DataFrame, history: pl.DataFrame) -> pl.DataFrame:
    """One row per track: its latest check of its current URL, or UNKNOWN/not_checked_yet."""
    current = tracks.select(S.TRACK_ID, pl.col(S.PERMALINK_URL).alias("url"))
    latest = latest_status(history)
    out = current.join(latest, on=[S.TRACK_ID, "url"], how="left", nulls_equal=True)
    return out.with_columns(
        pl.col(S.URL_STATUS).fill_null("UNKNOWN"),
        pl.when(pl.col(S.URL_STATUS).is_null()).then(pl.lit("not_checked_yet")).otherwise(pl.col(S.REASON)).alias(S.REASON),
    ).select(list(HISTORY_SCHEMA))


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
