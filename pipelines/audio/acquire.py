"""Which audio each track is analysed from: its local file, else a bounded download of its live link;
then the features of every file, through the content-keyed extraction cache.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipelines import schema as S
from pipelines.audio.cache import extract_with_cache
from pipelines.audio.extract import EXTRACT_S, extract_many
from pipelines.audio.features import FEATURE_COLUMNS
from pipelines.audio.fetch import FetchConfig, FetchResult, fetch_many
from pipelines.audio.plan import FETCH_LOG_SCHEMA, FETCHABLE_STATUSES, FetchPlan, fetch_log_frame, plan_fetches
from pipelines.heal.links.status import utc_now
from pipelines.net.policy import NetworkPolicy

AUDIO_ORIGIN = "audio_origin"  # local / fetched
FETCH_URL = "fetch_url"


@dataclass(frozen=True)
class Acquisition:
    """The audio files of one run and how each was obtained."""

    items: list[tuple[str, str]]  # (track_id, audio file) to analyse
    origin: dict[str, str]  # track_id → local / fetched
    local: int  # tracks with a crawled audio_path
    candidates: list[tuple[str, str]]  # (track_id, url) of live links without local audio
    plan: FetchPlan
    results: list[FetchResult]  # one per plan.todo
    fetch_log: pl.DataFrame | None  # the updated per-URL log, None when nothing was requested
    fetch_table: pl.DataFrame  # per track: track_id, url, reason


def empty_fetch_log() -> pl.DataFrame:
    return pl.DataFrame(schema={k: getattr(pl, v) for k, v in FETCH_LOG_SCHEMA.items()})


def fetch_candidates(*, raw: pl.DataFrame, status: pl.DataFrame | None) -> list[tuple[str, str]]:
    """(track_id, url) for tracks without local audio whose link is live: the MOVED target, else the crawled URL."""
    if status is None:
        status = pl.DataFrame(schema={S.TRACK_ID: pl.Utf8, S.URL_STATUS: pl.Utf8, S.FINAL_URL: pl.Utf8})
    live = (
        raw.filter(pl.col(S.AUDIO_PATH).is_null() & pl.col(S.PERMALINK_URL).is_not_null())
        .select(S.TRACK_ID, S.PERMALINK_URL)
        .join(status.select(S.TRACK_ID, S.URL_STATUS, S.FINAL_URL), on=S.TRACK_ID, how="inner")
        .filter(pl.col(S.URL_STATUS).is_in(list(FETCHABLE_STATUSES)))
        .with_columns(
            pl.when((pl.col(S.URL_STATUS) == S.MOVED) & pl.col(S.FINAL_URL).is_not_null())
            .then(pl.col(S.FINAL_URL))
            .otherwise(pl.col(S.PERMALINK_URL))
            .alias(FETCH_URL)
        )
    )
    return list(zip(live.get_column(S.TRACK_ID).to_list(), live.get_column(FETCH_URL).to_list()))


def acquire_audio(
    *,
    raw: pl.DataFrame,
    status: pl.DataFrame | None,
    fetch_log: pl.DataFrame | None,
    dest: Path,
    offline: bool,
    budget: int,
    max_bytes: int,
    allow_hosts: frozenset[str],
    progress: bool = False,
) -> Acquisition:
    """Local audio paths plus downloads of live links (at most ``budget`` new URLs, none offline).

    Earlier downloads in ``dest`` are reused; URLs whose last attempt failed for good (in
    ``fetch_log``) are not asked again. Downloads go through the link checker's network policy.
    """
    local = raw.filter(pl.col(S.AUDIO_PATH).is_not_null())
    items = list(zip(local.get_column(S.TRACK_ID).to_list(), local.get_column(S.AUDIO_PATH).to_list()))
    origin = dict.fromkeys(local.get_column(S.TRACK_ID).to_list(), "local")
    candidates = fetch_candidates(raw=raw, status=status)
    log = fetch_log if fetch_log is not None else empty_fetch_log()
    previous = dict(zip(log.get_column(S.LINK_URL).to_list(), log.get_column(S.REASON).to_list()))
    plan = plan_fetches(candidates=candidates, previous=previous, dest_dir=dest, budget=0 if offline else budget)
    results: list[FetchResult] = []
    updated = None
    if plan.todo:
        results = fetch_many(
            urls=[u for _, u in plan.todo],
            dest_dir=dest,
            policy=NetworkPolicy(allow_hosts=allow_hosts),
            config=FetchConfig(max_bytes=max_bytes),
            progress=progress,
        )
        fresh = fetch_log_frame(todo=plan.todo, results=results, fetched_at=utc_now())
        updated = pl.concat([log, fresh], how="vertical").unique(subset=[S.LINK_URL], keep="last", maintain_order=True)
    per_track = [(t, u, "reused") for t, u, _ in plan.reuse]
    per_track += [(t, u, r.reason) for (t, u), r in zip(plan.todo, results)]
    per_track += [(t, u, "offline" if offline and why == "budget" else why) for t, u, why in plan.skipped]
    fetch_table = pl.DataFrame(
        per_track, schema={S.TRACK_ID: pl.Utf8, S.LINK_URL: pl.Utf8, S.REASON: pl.Utf8}, orient="row"
    )
    for t, _u, path in plan.reuse:
        items.append((t, str(path)))
        origin[t] = "fetched"
    for (t, _u), r in zip(plan.todo, results):
        if r.path is not None:
            items.append((t, str(r.path)))
            origin[t] = "fetched"
    return Acquisition(
        items=items,
        origin=origin,
        local=local.height,
        candidates=candidates,
        plan=plan,
        results=results,
        fetch_log=updated,
        fetch_table=fetch_table,
    )


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
        feats = pl.DataFrame(
            schema={
                S.TRACK_ID: pl.Utf8,
                **{c: pl.Float64 for c in FEATURE_COLUMNS},
                S.AUDIO_ERROR: pl.Utf8,
                EXTRACT_S: pl.Float64,
            }
        )
    feats = feats.with_columns(
        pl.col(S.TRACK_ID).replace_strict(acquisition.origin, default=None, return_dtype=pl.Utf8).alias(AUDIO_ORIGIN)
    )
    return feats, stats
