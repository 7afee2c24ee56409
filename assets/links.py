"""Link checks per hash shard (append-only histories) and the link status derived from all of them."""

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.metadata import counts_md, value_counts
from assets.partitions import link_shards
from assets.resources import StoreResource
from assets.settings import MoodscapeSettings
from pipelines import schema as S
from pipelines.heal.links.checker import LinkCheckConfig
from pipelines.heal.links.overlay import Overlay, build_overlay, write_overlay
from pipelines.heal.links.run import check_links
from pipelines.heal.links.status import (
    HISTORY_SCHEMA,
    current_status,
    empty_history,
    in_shard,
    plan_checks,
    reason_table,
    shard_budget,
    union_histories,
)
from pipelines.index.bundle import TRACKS_FILE
from pipelines.index.remote_store import RemoteStore, push_overlay
from pipelines.store import read_table

# Reasons that say nothing about the link itself (no request was made).
_NOT_A_CHECK = ("offline", "no_url", "not_checked_yet", "deadline")
MAX_ERROR_FRACTION = 0.5
LINK_HISTORY = "link_history"  # one history file per shard: a partition of this table
LEGACY_HISTORY = "link_status_history"  # the single history file of stores from before sharding (read only)
LAST_RUN = "link_check_last_run"  # per shard: the checks of its last run


def error_rate(checked: pl.DataFrame) -> dict[str, float | int]:
    """Of the checks that made a request, how many ended in network errors (UNKNOWN)."""
    run = checked.filter(~pl.col(S.REASON).fill_null("").is_in(_NOT_A_CHECK))
    errors = run.filter(pl.col(S.URL_STATUS) == S.UNKNOWN).height
    return {
        "checked": run.height,
        "unknown": errors,
        "unknown_fraction": round(errors / run.height, 4) if run.height else 0.0,
    }


def _legacy_history(store: StoreResource) -> pl.DataFrame:
    legacy = store.load_optional(LEGACY_HISTORY)
    return legacy if legacy is not None else empty_history()


def publish_overlay(*, store: StoreResource, status: pl.DataFrame) -> Overlay | None:
    """Replace the availability overlay with ``status`` against the published version (None: nothing published)."""
    layout = store.layout()
    folder = layout.current_version_dir()
    if folder is None or not (folder / TRACKS_FILE).exists():
        return None
    served = pl.read_parquet(folder / TRACKS_FILE, columns=[S.TRACK_ID, S.PERMALINK_URL, S.URL_STATUS])
    table = build_overlay(status=status, served=served)
    overlay = write_overlay(table, layout.availability_overlay, base_version=folder.name)
    remote = RemoteStore.from_env()  # replicas serving from an object store pick it up from there
    if remote is not None:
        push_overlay(local=layout, remote=remote)
    return overlay


def _overlay_md(overlay: Overlay | None) -> MetadataValue:
    if overlay is None:
        return MetadataValue.json({"written": False, "why": "no published version"})
    return MetadataValue.json({"written": True, "tracks": overlay.table.height, "dead": overlay.dead,
                               "base_version": overlay.base_version, "written_at": overlay.written_at})


def _reasons_md(table: pl.DataFrame) -> MetadataValue:
    """status × reason counts as a markdown table (one row per pair)."""
    lines = ["| status | reason | count |", "|---|---|---|"]
    lines += [f"| {r[S.URL_STATUS]} | {r[S.REASON]} | {r['count']} |" for r in table.iter_rows(named=True)]
    return MetadataValue.md("\n".join(lines) if table.height else "none")


@asset(
    group_name="heal",
    deps=["raw_tracks"],
    compute_kind="httpx",
    partitions_def=link_shards,
    code_version="1",
    check_specs=[
        AssetCheckSpec(
            "link_check_error_rate",
            asset="link_checks",
            description="warns when most of this shard's checks in the run ended in network errors (UNKNOWN), "
            "e.g. no network or a blocked crawler",
        )
    ],
)
def link_checks(context: AssetExecutionContext, settings: MoodscapeSettings, store: StoreResource) -> MaterializeResult:
    """Link checks of one hash shard of the crawl (``sha1(track_id)`` mod 8), appended to its history.

    Real HTTP through the link checker's network policy (non-global addresses refused). Each run
    checks at most its share of ``link_check_budget`` (budget / shards) within
    ``link_check_deadline_s`` — never-checked first, then the stalest (VALID after 30 days,
    UNKNOWN/SUSPECT after a day with backoff) — and appends to ``link_history/<shard>``; offline
    runs record UNKNOWN/offline without sending anything. The shard's part of a pre-sharding
    history is read too, so links checked before are not re-checked early.
    """
    shard = context.partition_key
    tracks = in_shard(frame=store.load("raw_tracks"), shard=shard)
    own = store.load_optional(LINK_HISTORY, shard)
    own = own if own is not None else empty_history()
    history = union_histories(histories=[in_shard(frame=_legacy_history(store), shard=shard), own])
    budget = shard_budget(budget=settings.link_check_budget)
    todo = plan_checks(tracks=tracks, history=history, budget=budget)
    config = LinkCheckConfig(
        offline=settings.offline, allow_hosts=settings.allow_hosts(), deadline_s=settings.link_check_deadline_s
    )
    checked = check_links(todo, config=config, progress=settings.progress) if todo else empty_history()
    checked = checked.select(list(HISTORY_SCHEMA)).cast(HISTORY_SCHEMA)
    store.write(union_histories(histories=[own, checked]), LINK_HISTORY, shard)
    store.write(checked, LAST_RUN, shard)
    errors = error_rate(checked)
    context.log.info(f"shard {shard}: {checked.height} checks of {tracks.height} tracks, {errors}")
    return MaterializeResult(
        metadata={
            "shard": shard,
            "tracks_in_shard": tracks.height,
            "checks_made": checked.height,
            "budget": budget,
            "offline": settings.offline,
            "status_counts": counts_md(value_counts(checked, S.URL_STATUS), key="status") if checked.height else "none",
            "reasons": _reasons_md(reason_table(status=checked)),
            "errors_fraction": errors["unknown_fraction"],
            "history_rows": own.height + checked.height,
        },
        check_results=[
            AssetCheckResult(
                check_name="link_check_error_rate",
                asset_key="link_checks",
                passed=errors["unknown_fraction"] <= MAX_ERROR_FRACTION,
                severity=AssetCheckSeverity.WARN,
                metadata={**errors, "threshold": MAX_ERROR_FRACTION, "shard": shard},
            )
        ],
    )


@asset(group_name="heal", deps=["raw_tracks", "link_checks"], compute_kind="polars", code_version="1")
def track_link_status(context: AssetExecutionContext, store: StoreResource) -> MaterializeResult:
    """Link status per track (VALID / MOVED / REQUIRES_AUTH / SUSPECT / DEAD / UNKNOWN / BLOCKED).

    Derived from the union of every shard's append-only check history (``link_checks``, plus a
    pre-sharding history if the store has one): one DEAD check makes a link SUSPECT (still
    served); DEAD needs two DEAD checks ≥ 24 h apart (``MOODSCAPE_DEAD_CONFIRM_HOURS``). Tracks
    no shard has checked yet read UNKNOWN/not_checked_yet. Last, the availability overlay is
    replaced: the tracks whose availability differs from the published version's (served by the
    running service without a rebuild).
    """
    shard_files = store.layout().batch_tables(LINK_HISTORY)
    history = union_histories(histories=[_legacy_history(store), *(read_table(p) for p in shard_files)])
    status = current_status(tracks=store.load("raw_tracks"), history=history)
    store.write(status, "track_link_status")
    overlay = publish_overlay(store=store, status=status)
    return MaterializeResult(
        metadata={
            "tracks": status.height,
            "status_counts": counts_md(value_counts(status, S.URL_STATUS), key="status"),
            "reasons": _reasons_md(reason_table(status=status)),
            "suspect": int((status.get_column(S.URL_STATUS) == S.LINK_SUSPECT).sum()),
            "history_rows": history.height,
            "shards_with_history": MetadataValue.json(sorted(p.stem for p in shard_files)),
            "availability_overlay": _overlay_md(overlay),
        }
    )
