"""Which audio each track is analysed from: its local file, else the download the fetch table
records for it; one fetch run over a set of tracks; then the features of every file, through the
content-keyed extraction cache.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpcore
import polars as pl

from pipelines import schema as S
from pipelines.audio.cache import extract_with_cache
from pipelines.audio.extract import EXTRACT_SCHEMA, extract_many
from pipelines.audio.fetch import REUSED, FetchConfig
from pipelines.audio.plan import (
    NOT_TRIED,
    OFFLINE,
    PAGE_URL,
    PATH,
    PENDING,
    Backoff,
    FetchPlan,
    fetch_rows,
    plan_fetches,
)
from pipelines.audio.resolve import Resolution, resolve_many
from pipelines.net.policy import NetworkPolicy

AUDIO_ORIGIN = "audio_origin"  # local / fetched
LOCAL, FETCHED = "local", "fetched"
FETCHABLE_STATUSES: tuple[str, ...] = (S.VALID, S.MOVED)  # link statuses whose link may lead to audio


def fetch_candidates(*, raw: pl.DataFrame, status: pl.DataFrame | None) -> pl.DataFrame:
    """One row per track without local audio: ``track_id``, ``page_url`` (the MOVED target, else the
    crawled link) and ``pending`` — null when the link is live (VALID/MOVED), else why it is not asked:
    ``no_url`` or ``link_<status>[:<link reason>]`` (``link_suspect:http_404``, ``link_unknown:offline``)."""
    if status is None:
        status = pl.DataFrame(schema={S.TRACK_ID: pl.Utf8, S.URL_STATUS: pl.Utf8, S.FINAL_URL: pl.Utf8,
                                      S.REASON: pl.Utf8})
    link = status.select(S.TRACK_ID, S.URL_STATUS, S.FINAL_URL, S.REASON).unique(S.TRACK_ID, keep="last")
    joined = raw.filter(pl.col(S.AUDIO_PATH).is_null()).select(S.TRACK_ID, S.PERMALINK_URL).join(
        link, on=S.TRACK_ID, how="left"
    )
    live = pl.col(S.URL_STATUS).is_in(list(FETCHABLE_STATUSES)).fill_null(False)
    not_live = pl.concat_str(
        pl.lit("link_"), pl.col(S.URL_STATUS).fill_null(S.UNKNOWN).str.to_lowercase(),
        pl.when(pl.col(S.REASON).is_not_null()).then(pl.lit(":") + pl.col(S.REASON)).otherwise(pl.lit("")),
    )
    return joined.select(
        S.TRACK_ID,
        pl.when((pl.col(S.URL_STATUS) == S.MOVED) & pl.col(S.FINAL_URL).is_not_null())
        .then(pl.col(S.FINAL_URL)).otherwise(pl.col(S.PERMALINK_URL)).alias(PAGE_URL),
        pl.when(pl.col(S.PERMALINK_URL).is_null()).then(pl.lit("no_url"))
        .when(live).then(pl.lit(None, dtype=pl.Utf8)).otherwise(not_live).alias(PENDING),
    )


@dataclass(frozen=True, kw_only=True)
class FetchRun:
    """One fetch run: its plan, what each asked link resolved to, and the fetch table after it."""

    plan: FetchPlan
    resolutions: dict[str, Resolution]
    table: pl.DataFrame  # plan.FETCH_SCHEMA, one row per track without local audio

    @property
    def downloaded(self) -> list[Resolution]:
        """The links whose audio this run downloaded (not reused)."""
        return [r for r in self.resolutions.values() if r.ok and r.reason != REUSED]

    @property
    def reused(self) -> int:
        """Tracks and links served by an earlier download without asking for the audio again."""
        return len(self.plan.reuse) + sum(r.reason == REUSED for r in self.resolutions.values())


def run_fetches(
    *, raw: pl.DataFrame, status: pl.DataFrame | None, table: pl.DataFrame | None, dest: Path,
    policy: NetworkPolicy, config: FetchConfig, budget: int, deadline_s: float | None,
    backoff: Backoff | None = None, now: datetime | None = None, progress: bool = False,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
) -> FetchRun:
    """Plan (`plan.plan_fetches`) and fetch the tracks of ``raw`` without local audio: at most ``budget``
    distinct links within ``deadline_s``, none when ``config.offline``; earlier downloads in ``dest``
    are reused. ``table`` is the previous fetch table of these tracks (or None)."""
    now = now or datetime.now(timezone.utc)
    plan = plan_fetches(
        candidates=fetch_candidates(raw=raw, status=status), table=table, dest_dir=dest,
        budget=0 if config.offline else budget, now=now, overflow=OFFLINE if config.offline else NOT_TRIED,
    )
    resolutions = resolve_many(
        urls=[u for _, u in plan.todo], dest_dir=dest, policy=policy, config=config, deadline_s=deadline_s,
        progress=progress, network_backend=network_backend,
    )
    table = fetch_rows(plan=plan, resolutions=resolutions, now=now, backoff=backoff or Backoff()).sort(S.TRACK_ID)
    return FetchRun(plan=plan, resolutions=resolutions, table=table)


@dataclass(frozen=True)
class Acquisition:
    """The audio files of one feature run and how each was obtained."""

    items: list[tuple[str, str]]  # (track_id, audio file) to analyse
    origin: dict[str, str]  # track_id → local / fetched
    local: int  # tracks with a crawled audio_path
    fetched: int  # tracks analysed from a download
    without_audio: pl.DataFrame  # fetch-table rows of the tracks with neither (their reason says why)


def acquire_audio(*, raw: pl.DataFrame, fetch_table: pl.DataFrame) -> Acquisition:
    """Local ``audio_path`` files plus the downloads ``fetch_table`` records (files still on disk) of
    the other tracks of ``raw``; no network."""
    local = raw.filter(pl.col(S.AUDIO_PATH).is_not_null())
    items = list(zip(local.get_column(S.TRACK_ID).to_list(), local.get_column(S.AUDIO_PATH).to_list()))
    origin = dict.fromkeys(local.get_column(S.TRACK_ID).to_list(), LOCAL)
    others = raw.filter(pl.col(S.AUDIO_PATH).is_null()).select(S.TRACK_ID)
    rows = fetch_table.join(others, on=S.TRACK_ID, how="semi").unique(S.TRACK_ID, keep="last", maintain_order=True)
    on_disk = [p is not None and Path(p).is_file() for p in rows.get_column(PATH).to_list()]
    got = rows.filter(pl.Series(on_disk, dtype=pl.Boolean))
    for tid, path in got.select(S.TRACK_ID, PATH).iter_rows():
        items.append((tid, path))
        origin[tid] = FETCHED
    return Acquisition(items=items, origin=origin, local=local.height, fetched=got.height,
                       without_audio=rows.filter(~pl.Series(on_disk, dtype=pl.Boolean)))


def extractor(
    *, workers: int, progress: bool, offset: float = 0.0
) -> Callable[[Sequence[tuple[str, str]]], pl.DataFrame]:
    """The extraction function the feature cache calls for the files it has not seen."""

    def run(items: Sequence[tuple[str, str]]) -> pl.DataFrame:
        return extract_many(items=items, workers=workers, progress=progress, offset=offset)

    return run


def feature_cache_name(offset: float) -> str:
    """The cache table of one analysis window (the cache is keyed by file, so one cache per offset)."""
    return "audio_feature_cache" if offset == 0 else f"audio_feature_cache_offset_{offset:g}s"


def extract_audio_features(
    *, acquisition: Acquisition, cache_path: Path, workers: int, progress: bool, offset: float = 0.0
) -> tuple[pl.DataFrame, dict]:
    """(features per acquired file with ``audio_origin``, cache statistics); failures are ``audio_error`` rows."""
    feats, stats = extract_with_cache(
        items=acquisition.items,
        cache_path=cache_path,
        extract=extractor(workers=workers, progress=progress, offset=offset),
    )
    if feats.height == 0:
        feats = pl.DataFrame(schema=EXTRACT_SCHEMA)
    feats = feats.with_columns(
        pl.col(S.TRACK_ID).replace_strict(acquisition.origin, default=None, return_dtype=pl.Utf8).alias(AUDIO_ORIGIN)
    )
    return feats, stats
