"""Audio fetching per hash shard: each track's link resolved to audio (page → audio, or page → oEmbed
→ audio), politely, within a budget, into the shard's fetch table."""

import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, asset

from assets.links import LEGACY_HISTORY, LINK_HISTORY
from assets.metadata import counts_md, value_counts
from assets.modelcache import table_version
from assets.partitions import fetch_shards
from assets.resources import StoreResource
from assets.settings import MoodscapeSettings
from pipelines import schema as S
from pipelines.audio.acquire import run_fetches
from pipelines.audio.fetch import FetchConfig
from pipelines.audio.plan import PATH, RESOLVER, union_fetch_tables
from pipelines.heal.links.status import current_status, in_shard, shard_budget, union_histories
from pipelines.net.policy import NetworkPolicy
from pipelines.store import read_table

AUDIO_FETCH = "audio_fetch"  # one fetch table per shard: a partition of this table
FETCHED_AUDIO = "fetched"  # the store's audio folder downloads are kept in


def _fetch_config(settings: MoodscapeSettings) -> FetchConfig:
    """The download settings of a run (sizes, politeness, offline)."""
    return FetchConfig(
        max_bytes=settings.audio_fetch_max_bytes, page_max_bytes=settings.audio_fetch_page_max_bytes,
        per_host=settings.audio_fetch_per_host, min_interval_s=settings.audio_fetch_host_interval_s,
        offline=settings.offline,
    )


def fetch_table(store: StoreResource) -> pl.DataFrame:
    """Every shard's fetch table as one frame (empty before the first fetch run)."""
    return union_fetch_tables([read_table(p) for p in store.layout().batch_tables(AUDIO_FETCH)])


def _shard_status(store: StoreResource, *, tracks: pl.DataFrame, shard: str) -> pl.DataFrame:
    """The current link status of the shard's tracks, from that shard's check history (and a pre-sharding one)."""
    parts = [store.load_optional(LEGACY_HISTORY), store.load_optional(LINK_HISTORY, shard)]
    history = union_histories(histories=[in_shard(frame=h, shard=shard) for h in parts if h is not None])
    return current_status(tracks=tracks, history=history)


@asset(
    group_name="audio", deps=["raw_tracks", "link_checks"], compute_kind="httpx", partitions_def=fetch_shards,
    code_version="1",
)
def audio_fetch(context: AssetExecutionContext, settings: MoodscapeSettings, store: StoreResource) -> MaterializeResult:
    """Audio downloads of one hash shard (the link-check shard), for tracks without ``audio_path``
    whose link is VALID/MOVED.

    A link that answers with audio is kept; a track page is read for its audio (``<audio>``/``<source>``,
    ``og:audio``, ``twitter:player:stream``, JSON-LD, or its oEmbed answer). Every request goes
    through the link checker's network policy (each redirect hop re-checked), with per-host
    politeness (``audio_fetch_per_host`` in flight, starts ``audio_fetch_host_interval_s`` apart).
    Each run asks at most its share of ``audio_fetch_budget`` links within ``audio_fetch_deadline_s``:
    never-tried first, then retryable failures whose backoff has passed; permanent failures are not
    asked again and downloads are kept and reused. Writes ``audio_fetch/<shard>``: one row per track
    with its link, resolved audio, resolver, reason, attempts and next attempt. Offline: no request.
    """
    shard = context.partition_key
    tracks = in_shard(frame=store.load("raw_tracks"), shard=shard)
    budget = shard_budget(budget=settings.audio_fetch_budget)
    run = run_fetches(
        raw=tracks,
        status=_shard_status(store, tracks=tracks, shard=shard),
        table=store.load_optional(AUDIO_FETCH, shard),
        dest=store.layout().audio(FETCHED_AUDIO),
        policy=NetworkPolicy(allow_hosts=settings.allow_hosts()),
        config=_fetch_config(settings),
        budget=budget,
        deadline_s=settings.audio_fetch_deadline_s,
        progress=settings.progress,
    )
    store.write(run.table, AUDIO_FETCH, shard)
    table = run.table
    downloaded = run.downloaded
    context.log.info(f"shard {shard}: {len(run.resolutions)} links asked, {len(downloaded)} with audio")
    return MaterializeResult(
        metadata={
            "shard": shard,
            "tracks_without_local_audio": table.height,
            "budget": budget,
            "offline": settings.offline,
            "links_asked": len(run.resolutions),
            "downloaded": len(downloaded),
            "downloaded_bytes": sum(r.result.bytes for r in downloaded),
            "reused": run.reused,
            "with_audio": int(table.get_column(PATH).is_not_null().sum()),
            "reasons": counts_md(value_counts(table, S.REASON), key="reason") if table.height else "none",
            "resolvers": counts_md(value_counts(table, RESOLVER), key="resolver") if table.height else "none",
        },
        data_version=table_version(table),
    )
