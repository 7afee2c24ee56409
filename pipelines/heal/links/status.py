"""Per-track link status over time: which links to check next, and the derived current status.

The history is a table of every check ever made (append-only, in the store: this module only
reads it). The current status of a (track_id, url) is *derived* from it:

- the latest check's status, except that
- a DEAD latest check is only **DEAD** when it is *confirmed*: the DEAD checks since the last
  conclusive live check (VALID / MOVED / REQUIRES_AUTH / BLOCKED) span at least
  ``confirm_hours`` (default 24 h, env ``MOODSCAPE_DEAD_CONFIRM_HOURS``) from the first to the
  last. Otherwise it is **SUSPECT** — one 404 (or two 404s an hour apart) is still served to
  users. UNKNOWN checks between DEAD ones (a timeout) neither confirm nor refute the death; a live
  check resets the count.

A link is due again when its derived status has gone stale (VALID/MOVED/DEAD after 30 days,
REQUIRES_AUTH after 7, SUSPECT after 1 day, UNKNOWN after 1 day doubling per consecutive UNKNOWN
up to 30). Each run checks at most ``budget`` due links, never-checked first, then the stalest, so a
large crawl converges over scheduled runs instead of one endless run.

Checking is split into ``LINK_SHARDS`` hash shards of track ids (``shard_of``): each shard plans,
checks and appends to its own history, and the current status is derived from their union
(``union_histories``), so a shard's re-run never touches another shard's rows.
"""

import hashlib
import math
import os
from collections.abc import Sequence
from datetime import datetime, timezone

import polars as pl

from pipelines import schema as S

HISTORY_SCHEMA = {
    S.TRACK_ID: pl.Utf8, S.LINK_URL: pl.Utf8, S.URL_STATUS: pl.Utf8, S.HTTP_CODE: pl.Int64,
    S.FINAL_URL: pl.Utf8, S.REASON: pl.Utf8, S.CHECKED_AT: pl.Utf8,
}


_KEY = [S.TRACK_ID, S.LINK_URL]  # one link: a track and the URL it was checked at


def empty_history() -> pl.DataFrame:
    return pl.DataFrame(schema=HISTORY_SCHEMA)


# Link checking runs per hash shard of track_id: a fixed, small number of partitions (never one per track).
LINK_SHARDS = 8


def shard_keys(*, shards: int = LINK_SHARDS) -> list[str]:
    """The partition keys of ``shards`` shards: ``["00", "01", …]`` (zero-padded, sortable)."""
    width = max(2, len(str(shards - 1)))
    return [f"{i:0{width}d}" for i in range(shards)]


def shard_of(*, track_id: str | None, shards: int = LINK_SHARDS) -> str:
    """The shard key of one track id: the first 8 bytes of its SHA-1 (big-endian) mod ``shards``.

    Stable across processes, machines and library versions (unlike Python's or polars' hash);
    a null id falls in the shard of the empty string.
    """
    return shards_of(track_ids=[track_id], shards=shards)[0]


def shards_of(*, track_ids: Sequence[str | None], shards: int = LINK_SHARDS) -> list[str]:
    """``shard_of`` of every id (the keys built once). Time O(n)."""
    keys = shard_keys(shards=shards)
    sha1 = hashlib.sha1
    return [keys[int.from_bytes(sha1((t or "").encode("utf-8")).digest()[:8], "big") % shards] for t in track_ids]


def in_shard(*, frame: pl.DataFrame, shard: str, shards: int = LINK_SHARDS) -> pl.DataFrame:
    """The rows of ``frame`` (any columns incl. ``track_id``) whose track id falls in ``shard``."""
    if frame.height == 0:
        return frame
    keys = shard_keys(shards=shards)
    if shard not in keys:
        raise ValueError(f"unknown shard {shard!r}: expected one of {keys[0]}..{keys[-1]}")
    mask = [k == shard for k in shards_of(track_ids=frame.get_column(S.TRACK_ID).to_list(), shards=shards)]
    return frame.filter(pl.Series(mask, dtype=pl.Boolean))


def shard_budget(*, budget: int, shards: int = LINK_SHARDS) -> int:
    """One shard's share of a per-run budget of ``budget`` checks (rounded up, ≥ 0)."""
    return max(0, math.ceil(budget / shards))


def union_histories(*, histories: list[pl.DataFrame]) -> pl.DataFrame:
    """Shard (and legacy) histories as one (n, HISTORY_SCHEMA) frame; identical rows kept once."""
    parts = [h.select(list(HISTORY_SCHEMA)).cast(HISTORY_SCHEMA) for h in histories if h.height]
    if not parts:
        return empty_history()
    return pl.concat(parts, how="vertical").unique(maintain_order=True)


def latest_status(history: pl.DataFrame) -> pl.DataFrame:
    """The newest check per (track_id, url)."""
    if history.height == 0:
        return history
    return history.sort(S.CHECKED_AT).unique(subset=_KEY, keep="last")


# How long a status stays fresh before it is due again (days). UNKNOWN backs off: 1 day after the
# first inconclusive check, doubling with each consecutive UNKNOWN, capped at 30 days. SUSPECT is
# re-checked after a day so that a real death is confirmed (or refuted) quickly.
FRESH_DAYS: dict[str, float] = {
    S.VALID: 30.0, S.MOVED: 30.0, S.REQUIRES_AUTH: 7.0, S.DEAD: 30.0, S.BLOCKED: 30.0, S.LINK_SUSPECT: 1.0,
}
# Two DEAD checks at least this far apart make a link DEAD for users (env MOODSCAPE_DEAD_CONFIRM_HOURS).
DEAD_CONFIRM_HOURS = 24.0
# Statuses that say the link answered as a live resource: they reset a DEAD streak.
LIVE_STATUSES = (S.VALID, S.MOVED, S.REQUIRES_AUTH, S.BLOCKED)
UNKNOWN_BASE_DAYS = 1.0
UNKNOWN_CAP_DAYS = 30.0
# Rows that never reached the network are due at once when the checker can run.
NOT_CHECKED_REASONS = ("offline", "not_checked_yet", "deadline")


def dead_confirm_hours() -> float:
    """The configured DEAD confirmation interval in hours (read at call time)."""
    return float(os.environ.get("MOODSCAPE_DEAD_CONFIRM_HOURS", DEAD_CONFIRM_HOURS))


def _unknown_streak(history: pl.DataFrame) -> pl.DataFrame:
    """Consecutive UNKNOWN checks at the end of each (track_id, url) history."""
    if history.height == 0:
        return pl.DataFrame(schema={S.TRACK_ID: pl.Utf8, S.LINK_URL: pl.Utf8, "unknown_streak": pl.UInt32})
    h = history.sort(S.CHECKED_AT).with_columns(
        (pl.col(S.URL_STATUS) != S.UNKNOWN).cast(pl.UInt32).cum_sum().over(_KEY).alias("_block")
    )
    last_block = h.group_by(_KEY).agg(pl.col("_block").max())
    return (
        h.join(last_block, on=[S.TRACK_ID, S.LINK_URL, "_block"], how="inner", nulls_equal=True)
        .filter(pl.col(S.URL_STATUS) == S.UNKNOWN)
        .group_by(_KEY).agg(pl.len().cast(pl.UInt32).alias("unknown_streak"))
    )


def _dead_streak(history: pl.DataFrame) -> pl.DataFrame:
    """Per (track_id, url): DEAD checks since the last live check — count, first and last checked_at."""
    schema = {S.TRACK_ID: pl.Utf8, S.LINK_URL: pl.Utf8, S.DEAD_CHECKS: pl.UInt32, S.FIRST_DEAD_AT: pl.Utf8,
              "_last_dead_at": pl.Utf8}
    if history.height == 0:
        return pl.DataFrame(schema=schema)
    h = history.sort(S.CHECKED_AT).with_columns(
        pl.col(S.URL_STATUS).is_in(LIVE_STATUSES).cast(pl.UInt32).cum_sum().over(_KEY).alias("_block")
    )
    last_block = h.group_by(_KEY).agg(pl.col("_block").max())
    return (
        h.join(last_block, on=[S.TRACK_ID, S.LINK_URL, "_block"], how="inner", nulls_equal=True)
        .filter(pl.col(S.URL_STATUS) == S.DEAD)
        .group_by(_KEY).agg(
            pl.len().cast(pl.UInt32).alias(S.DEAD_CHECKS),
            pl.col(S.CHECKED_AT).min().alias(S.FIRST_DEAD_AT),
            pl.col(S.CHECKED_AT).max().alias("_last_dead_at"),
        )
        .select(list(schema))
    )


def derived_status(*, history: pl.DataFrame, confirm_hours: float | None = None) -> pl.DataFrame:
    """The newest check per (track_id, url) with its status derived: DEAD only when confirmed.

    history (n, HISTORY_SCHEMA) → (m, HISTORY_SCHEMA + ``dead_checks`` UInt32, ``first_dead_at``
    Utf8), one row per (track_id, url). A DEAD latest check becomes SUSPECT unless the DEAD checks
    since the last live check span ≥ ``confirm_hours``; SUSPECT rows keep the check's reason.
    """
    confirm_hours = dead_confirm_hours() if confirm_hours is None else confirm_hours
    latest = latest_status(history)
    if latest.height == 0:
        return latest.with_columns(pl.lit(None, dtype=pl.UInt32).alias(S.DEAD_CHECKS),
                                   pl.lit(None, dtype=pl.Utf8).alias(S.FIRST_DEAD_AT))
    out = latest.join(_dead_streak(history), on=_KEY, how="left", nulls_equal=True)
    first = pl.col(S.FIRST_DEAD_AT).str.to_datetime(time_zone="UTC", strict=False)
    last = pl.col("_last_dead_at").str.to_datetime(time_zone="UTC", strict=False)
    span_h = (last - first).dt.total_seconds() / 3600.0
    confirmed = (span_h >= confirm_hours).fill_null(False)
    return out.with_columns(
        pl.when((pl.col(S.URL_STATUS) == S.DEAD) & ~confirmed).then(pl.lit(S.LINK_SUSPECT))
        .otherwise(pl.col(S.URL_STATUS)).alias(S.URL_STATUS),
        pl.when(pl.col(S.URL_STATUS) == S.DEAD).then(pl.col(S.DEAD_CHECKS))
        .otherwise(pl.lit(0, dtype=pl.UInt32)).alias(S.DEAD_CHECKS),
        pl.when(pl.col(S.URL_STATUS) == S.DEAD).then(pl.col(S.FIRST_DEAD_AT)).otherwise(None).alias(S.FIRST_DEAD_AT),
    ).select(*HISTORY_SCHEMA, S.DEAD_CHECKS, S.FIRST_DEAD_AT)


def due_checks(*, tracks: pl.DataFrame, history: pl.DataFrame, now: datetime,
               confirm_hours: float | None = None) -> pl.DataFrame:
    """Every current (track_id, url) with ``due`` (bool) and ``last_checked`` per the freshness
    policy applied to the *derived* status (a SUSPECT link is due again after a day)."""
    current = tracks.select(S.TRACK_ID, pl.col(S.PERMALINK_URL).alias(S.LINK_URL))
    latest = derived_status(history=history, confirm_hours=confirm_hours).select(
        *_KEY, S.URL_STATUS, S.REASON, S.CHECKED_AT)
    joined = current.join(latest, on=_KEY, how="left", nulls_equal=True).join(
        _unknown_streak(history), on=_KEY, how="left", nulls_equal=True
    )
    checked = pl.col(S.CHECKED_AT).str.to_datetime(time_zone="UTC", strict=False)
    age_days = (pl.lit(now) - checked).dt.total_seconds() / 86400.0
    fresh_for = (
        pl.when(pl.col(S.URL_STATUS) == S.UNKNOWN)
        .then((UNKNOWN_BASE_DAYS * (2.0 ** (pl.col("unknown_streak").fill_null(1) - 1)))
              .clip(upper_bound=UNKNOWN_CAP_DAYS))
        .otherwise(pl.col(S.URL_STATUS).replace_strict(FRESH_DAYS, default=0.0, return_dtype=pl.Float64))
    )
    due = (
        pl.col(S.CHECKED_AT).is_null()
        | pl.col(S.REASON).is_in(NOT_CHECKED_REASONS).fill_null(False)
        | (age_days >= fresh_for).fill_null(True)
    )
    return joined.with_columns(due.alias("due"), pl.col(S.CHECKED_AT).alias("last_checked"))


def plan_checks(*, tracks: pl.DataFrame, history: pl.DataFrame, budget: int,
                now: datetime | None = None, confirm_hours: float | None = None) -> list[tuple[str, str | None]]:
    """(track_id, url) pairs to check this run: the due ones, never-checked first, then the stalest."""
    now = now or datetime.now(timezone.utc)
    plan = due_checks(tracks=tracks, history=history, now=now, confirm_hours=confirm_hours).filter(pl.col("due"))
    ordered = plan.sort([pl.col("last_checked").is_not_null(), "last_checked", S.TRACK_ID], nulls_last=False)
    picked = ordered.head(max(0, budget))
    return list(zip(picked.get_column(S.TRACK_ID).to_list(), picked.get_column(S.LINK_URL).to_list()))


def current_status(*, tracks: pl.DataFrame, history: pl.DataFrame,
                   confirm_hours: float | None = None) -> pl.DataFrame:
    """One row per track: the derived status of its current URL (see ``derived_status``), or
    UNKNOWN/not_checked_yet. Shape (n_tracks, HISTORY_SCHEMA + dead_checks + first_dead_at)."""
    current = tracks.select(S.TRACK_ID, pl.col(S.PERMALINK_URL).alias(S.LINK_URL))
    latest = derived_status(history=history, confirm_hours=confirm_hours)
    out = current.join(latest, on=_KEY, how="left", nulls_equal=True)
    return out.with_columns(
        pl.col(S.URL_STATUS).fill_null(S.UNKNOWN),
        pl.when(pl.col(S.URL_STATUS).is_null()).then(pl.lit("not_checked_yet")).otherwise(pl.col(S.REASON)).alias(S.REASON),
        pl.col(S.DEAD_CHECKS).fill_null(0),
    ).select(*HISTORY_SCHEMA, S.DEAD_CHECKS, S.FIRST_DEAD_AT)


def reason_table(*, status: pl.DataFrame) -> pl.DataFrame:
    """status × reason counts of a current-status frame: (k, 3) url_status, reason, count, sorted
    by status then descending count (null reasons read ``-``)."""
    if status.height == 0:
        return pl.DataFrame(schema={S.URL_STATUS: pl.Utf8, S.REASON: pl.Utf8, "count": pl.UInt32})
    return (
        status.with_columns(pl.col(S.REASON).fill_null("-"))
        .group_by(S.URL_STATUS, S.REASON).agg(pl.len().cast(pl.UInt32).alias("count"))
        .sort([S.URL_STATUS, "count", S.REASON], descending=[False, True, False])
    )


def utc_now() -> str:
    """Now, as the UTC ISO-8601 string (seconds) every check and fetch is stamped with."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
