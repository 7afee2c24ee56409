"""Per-track link status over time: which links to check next, and the latest known status.

The history is a table of every check ever made (append-only, in the store); the current status
of a track is its latest check. A link is due again when its status has gone stale (VALID/MOVED/
DEAD after 30 days, REQUIRES_AUTH after 7, UNKNOWN after 1 day doubling per consecutive UNKNOWN up
to 30). Each run checks at most ``budget`` due links, never-checked first, then the stalest, so a
large crawl converges over scheduled runs instead of one endless run.
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


# How long a status stays fresh before it is due again (days). UNKNOWN backs off: 1 day after the
# first inconclusive check, doubling with each consecutive UNKNOWN, capped at 30 days.
FRESH_DAYS: dict[str, float] = {"VALID": 30.0, "MOVED": 30.0, "REQUIRES_AUTH": 7.0, "DEAD": 30.0, "BLOCKED": 30.0}
UNKNOWN_BASE_DAYS = 1.0
UNKNOWN_CAP_DAYS = 30.0
# Rows that never reached the network are due at once when the checker can run.
NOT_CHECKED_REASONS = ("offline", "not_checked_yet", "deadline")


def _unknown_streak(history: pl.DataFrame) -> pl.DataFrame:
    """Consecutive UNKNOWN checks at the end of each (track_id, url) history."""
    if history.height == 0:
        return pl.DataFrame(schema={S.TRACK_ID: pl.Utf8, "url": pl.Utf8, "unknown_streak": pl.UInt32})
    h = history.sort(S.CHECKED_AT).with_columns(
        (pl.col(S.URL_STATUS) != "UNKNOWN").cast(pl.UInt32).cum_sum().over([S.TRACK_ID, "url"]).alias("_block")
    )
    last_block = h.group_by([S.TRACK_ID, "url"]).agg(pl.col("_block").max())
    return (
        h.join(last_block, on=[S.TRACK_ID, "url", "_block"], how="inner", nulls_equal=True)
        .filter(pl.col(S.URL_STATUS) == "UNKNOWN")
        .group_by([S.TRACK_ID, "url"]).agg(pl.len().cast(pl.UInt32).alias("unknown_streak"))
    )


def due_checks(*, tracks: pl.DataFrame, history: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """Every current (track_id, url) with ``due`` (bool) and ``last_checked`` per the freshness policy."""
    current = tracks.select(S.TRACK_ID, pl.col(S.PERMALINK_URL).alias("url"))
    latest = latest_status(history).select(S.TRACK_ID, "url", S.URL_STATUS, S.REASON, S.CHECKED_AT)
    joined = current.join(latest, on=[S.TRACK_ID, "url"], how="left", nulls_equal=True).join(
        _unknown_streak(history), on=[S.TRACK_ID, "url"], how="left", nulls_equal=True
    )
    checked = pl.col(S.CHECKED_AT).str.to_datetime(time_zone="UTC", strict=False)
    age_days = (pl.lit(now) - checked).dt.total_seconds() / 86400.0
    fresh_for = (
        pl.when(pl.col(S.URL_STATUS) == "UNKNOWN")
        .then((UNKNOWN_BASE_DAYS * (2.0 ** (pl.col("unknown_streak").fill_null(1) - 1))).clip(upper_bound=UNKNOWN_CAP_DAYS))
        .otherwise(pl.col(S.URL_STATUS).replace_strict(FRESH_DAYS, default=0.0, return_dtype=pl.Float64))
    )
    due = (
        pl.col(S.CHECKED_AT).is_null()
        | pl.col(S.REASON).is_in(NOT_CHECKED_REASONS).fill_null(False)
        | (age_days >= fresh_for).fill_null(True)
    )
    return joined.with_columns(due.alias("due"), pl.col(S.CHECKED_AT).alias("last_checked"))


def plan_checks(*, tracks: pl.DataFrame, history: pl.DataFrame, budget: int,
                now: datetime | None = None) -> list[tuple[str, str | None]]:
    """(track_id, url) pairs to check this run: the due ones, never-checked first, then the stalest."""
    now = now or datetime.now(timezone.utc)
    plan = due_checks(tracks=tracks, history=history, now=now).filter(pl.col("due"))
    ordered = plan.sort([pl.col("last_checked").is_not_null(), "last_checked", S.TRACK_ID], nulls_last=False)
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
