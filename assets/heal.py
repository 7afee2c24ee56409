"""Heal the crawl: render the demo's MIDI, ingest with quarantine, check links, extract audio, filter music."""

import math

import joblib

import polars as pl
from dagster import (
    AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, MaterializeResult, MetadataValue,
    StaticPartitionsDefinition, asset,
)

from assets.common import counts_md, load, null_rates, value_counts
from assets.settings import MoodscapeSettings
from pipelines import schema as S
from pipelines.audio.features import FEATURE_COLUMNS, extract_many
from pipelines.audio.cache import extract_with_cache
from pipelines.heal.democorpus import build_demo_crawl, emopia_midi_items
from pipelines.heal.ingest import ingest, ingest_frame
from pipelines.heal.links.check import LinkCheckConfig, check_links
from pipelines.heal.links.status import (
    HISTORY_SCHEMA, current_status, empty_history, in_shard, plan_checks, reason_table, shard_budget, shard_keys,
    union_histories,
)
from pipelines.heal.resolver import CatalogueResolver, apply_resolutions, resolve_dead_links
from pipelines.heal.musicfilter import classify_music
from pipelines.heal.musicclassifier import MusicClassifier, apply_classifier, fit_from_open_data
from pipelines.audio.render import render_many
from assets.inbox import crawl_batch
from pipelines.store import DATA_DIR, atomic_path, audio_dir, batch_table_paths, model_path, read_table, table_path, write_table

CRAWL_QUALITY_COLUMNS = [S.TITLE, S.ARTIST, S.YEAR, S.GENRE, S.TAGS, S.DESCRIPTION, S.PLAYBACK_COUNT, S.PERMALINK_URL]


def select_emopia(items: list[tuple[str, object]], labels: pl.DataFrame, limit: int | None) -> list[tuple[str, object]]:
    """All clips, or a deterministic subset balanced over quadrant × split (for small test runs)."""
    if limit is None or limit >= len(items):
        return items
    groups = labels.sort("clip_id").group_by(["quadrant", "split"], maintain_order=True).agg(pl.col("clip_id"))
    per_group = max(1, math.ceil(limit / max(1, groups.height)))
    chosen = {c for ids in groups.get_column("clip_id").to_list() for c in ids[:per_group]}
    return [it for it in items if it[0] in chosen][:limit]


@asset(group_name="ingest", compute_kind="fluidsynth")
def emopia_audio(context: AssetExecutionContext, settings: MoodscapeSettings) -> MaterializeResult:
    """EMOPIA piano MIDI clips rendered to audio with FluidSynth (GM soundfont), one file per clip.

    The demo corpus uses them as audio-bearing tracks and the audio mood model trains on them
    (their quadrant labels stay in ``data/emopia/labels.csv``, never in track metadata).
    Re-runs skip clips whose audio is newer than the MIDI.
    """
    labels = pl.read_csv(DATA_DIR / "emopia" / "labels.csv")
    items = select_emopia(emopia_midi_items(data_dir=DATA_DIR), labels, settings.emopia_limit)
    rendered = render_many(items=items, out_dir=audio_dir("emopia"), workers=settings.workers, progress=settings.progress)
    write_table(rendered, table_path("emopia_audio"))
    errors = rendered.filter(pl.col("render_error").is_not_null())
    for row in errors.head(5).iter_rows(named=True):
        context.log.warning(f"render failed for {row['clip_id']}: {row['render_error']}")
    return MaterializeResult(metadata={
        "clips": rendered.height,
        "render_errors": errors.height,
        "render_s_total": round(float(rendered.get_column("render_s").sum() or 0.0), 2),
        "folder": MetadataValue.path(str(audio_dir("emopia"))),
    })


def _preview(df: pl.DataFrame, n: int = 5) -> str:
    cols = [c for c in (S.TRACK_ID, S.TITLE, S.ARTIST, S.GENRE, S.SOURCE) if c in df.columns]
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.head(n).iter_rows(named=True):
        rows.append("| " + " | ".join(str(r[c])[:40] for c in cols) + " |")
    return "\n".join(rows)


@asset(group_name="ingest", deps=[emopia_audio, crawl_batch], compute_kind="polars")
def raw_tracks(context: AssetExecutionContext, settings: MoodscapeSettings) -> MaterializeResult:
    """The crawl, ingested: typed columns, stable track ids, duplicates merged, bad rows quarantined.

    Source: the file named by ``MOODSCAPE_CRAWL`` (CSV / Parquet / JSON Lines) or, by default, the
    bundled demo corpus (MusicCaps, MTG-Jamendo, EMOPIA rendered clips, immich, librosa clips),
    plus every crawl batch ingested from the inbox (duplicates across them merged).
    """
    if settings.crawl:
        result = ingest(path=settings.crawl)
        source = settings.crawl
    else:
        rendered = load("emopia_audio").filter(pl.col("render_error").is_null())
        emopia = dict(zip(rendered.get_column("clip_id").to_list(), rendered.get_column("audio_path").to_list()))
        crawl = build_demo_crawl(data_dir=DATA_DIR, jamendo_limit=settings.jamendo_limit, emopia_audio=emopia)
        # EMOPIA clips that were not rendered (subset runs, render errors) have no audio: leave them out.
        crawl = crawl.filter((pl.col(S.SOURCE) != "emopia") | pl.col(S.AUDIO_PATH).is_not_null())
        result = ingest_frame(df=crawl, source_name="demo")
        source = "bundled demo corpus"
    batches = [read_table(p) for p in batch_table_paths("crawl_batches")]
    if batches:
        base_stats = result.stats
        merged = ingest_frame(df=pl.concat([result.tracks, *batches], how="diagonal_relaxed"), source_name="batches")
        result = type(result)(tracks=merged.tracks, quarantine=pl.concat([result.quarantine, merged.quarantine], how="diagonal_relaxed"),
                              stats={**base_stats, "batches": len(batches), "rows_after_batches": merged.tracks.height,
                                     "batch_duplicates_merged": merged.stats.get("duplicates_merged", 0)})
        source += f" + {len(batches)} inbox batch(es)"
    write_table(result.tracks, table_path("raw_tracks"))
    write_table(result.quarantine, table_path("quarantine"))
    context.log.info(f"ingested {result.stats}")
    return MaterializeResult(metadata={
        "source": source,
        **{k: v for k, v in result.stats.items() if isinstance(v, (int, float, str))},
        "rows_by_source": counts_md(value_counts(result.tracks, S.SOURCE), key="source"),
        "null_rates": MetadataValue.json(null_rates(result.tracks, CRAWL_QUALITY_COLUMNS)),
        "quarantine_reasons": counts_md(value_counts(result.quarantine, "reason"), key="reason") if result.quarantine.height else "none",
        "preview": MetadataValue.md(_preview(result.tracks)),
    })


# Reasons that say nothing about the link itself (no request was made).
_NOT_A_CHECK = ("offline", "no_url", "not_checked_yet", "deadline")
MAX_ERROR_FRACTION = 0.5


def error_rate(checked: pl.DataFrame) -> dict[str, float | int]:
    """Of the checks that made a request, how many ended in network errors (UNKNOWN)."""
    run = checked.filter(~pl.col(S.REASON).fill_null("").is_in(_NOT_A_CHECK))
    errors = run.filter(pl.col(S.URL_STATUS) == "UNKNOWN").height
    return {"checked": run.height, "unknown": errors, "unknown_fraction": round(errors / run.height, 4) if run.height else 0.0}


# Link checking is partitioned by hash shard of track_id (never one partition per track).
link_shards = StaticPartitionsDefinition(shard_keys())
LINK_HISTORY = "link_history"  # one history file per shard: tables/link_history/<shard>.parquet
LEGACY_HISTORY = "link_status_history"  # the single history file of stores from before sharding (read only)
LAST_RUN = "link_check_last_run"  # per shard: the checks of its last run


def _legacy_history() -> pl.DataFrame:
    path = table_path(LEGACY_HISTORY)
    return read_table(path) if path.exists() else empty_history()


@asset(
    group_name="heal", deps=[raw_tracks], compute_kind="httpx", partitions_def=link_shards,
    check_specs=[AssetCheckSpec(
        "link_check_error_rate", asset="link_checks",
        description="warns when most of this shard's checks in the run ended in network errors (UNKNOWN), e.g. no network or a blocked crawler",
    )],
)
def link_checks(context: AssetExecutionContext, settings: MoodscapeSettings) -> MaterializeResult:
    """Link checks of one hash shard of the crawl (``sha1(track_id)`` mod 8), appended to its history.

    Real HTTP through the link checker's network policy (non-global addresses refused). Each run
    checks at most its share of ``link_check_budget`` (budget / shards) within
    ``link_check_deadline_s`` — never-checked first, then the stalest (VALID after 30 days,
    UNKNOWN/SUSPECT after a day with backoff) — and appends to ``link_history/<shard>``; offline
    runs record UNKNOWN/offline without sending anything. The shard's part of a pre-sharding
    history is read too, so links checked before are not re-checked early.
    """
    shard = context.partition_key
    tracks = in_shard(frame=load("raw_tracks"), shard=shard)
    own_path = table_path(LINK_HISTORY, shard)
    own = read_table(own_path) if own_path.exists() else empty_history()
    history = union_histories(histories=[in_shard(frame=_legacy_history(), shard=shard), own])
    budget = shard_budget(budget=settings.link_check_budget)
    todo = plan_checks(tracks=tracks, history=history, budget=budget)
    config = LinkCheckConfig(offline=settings.offline, allow_hosts=settings.allow_hosts(), deadline_s=settings.link_check_deadline_s)
    checked = check_links(todo, config=config, progress=settings.progress) if todo else empty_history()
    checked = checked.select(list(HISTORY_SCHEMA)).cast(HISTORY_SCHEMA)
    write_table(union_histories(histories=[own, checked]), own_path)
    write_table(checked, table_path(LAST_RUN, shard))
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
        check_results=[AssetCheckResult(
            check_name="link_check_error_rate", asset_key="link_checks",
            passed=errors["unknown_fraction"] <= MAX_ERROR_FRACTION, severity=AssetCheckSeverity.WARN,
            metadata={**errors, "threshold": MAX_ERROR_FRACTION, "shard": shard},
        )],
    )


@asset(group_name="heal", deps=[raw_tracks, link_checks], compute_kind="polars")
def track_link_status(context: AssetExecutionContext) -> MaterializeResult:
    """Link status per track (VALID / MOVED / REQUIRES_AUTH / SUSPECT / DEAD / UNKNOWN / BLOCKED).

    Derived from the union of every shard's append-only check history (``link_checks``, plus a
    pre-sharding history if the store has one): one DEAD check makes a link SUSPECT (still
    served); DEAD needs two DEAD checks ≥ 24 h apart (``MOODSCAPE_DEAD_CONFIRM_HOURS``). Tracks
    no shard has checked yet read UNKNOWN/not_checked_yet.
    """
    tracks = load("raw_tracks")
    shard_files = batch_table_paths(LINK_HISTORY)
    history = union_histories(histories=[_legacy_history(), *(read_table(p) for p in shard_files)])
    status = current_status(tracks=tracks, history=history)
    write_table(status, table_path("track_link_status"))
    return MaterializeResult(metadata={
        "tracks": status.height,
        "status_counts": counts_md(value_counts(status, S.URL_STATUS), key="status"),
        "reasons": _reasons_md(reason_table(status=status)),
        "suspect": int((status.get_column(S.URL_STATUS) == S.LINK_SUSPECT).sum()),
        "history_rows": history.height,
        "shards_with_history": MetadataValue.json(sorted(p.stem for p in shard_files)),
    })


def _reasons_md(table: pl.DataFrame) -> MetadataValue:
    """status × reason counts as a markdown table (one row per pair)."""
    lines = ["| status | reason | count |", "|---|---|---|"]
    lines += [f"| {r[S.URL_STATUS]} | {r[S.REASON]} | {r['count']} |" for r in table.iter_rows(named=True)]
    return MetadataValue.md("\n".join(lines) if table.height else "none")


def _extract(settings: MoodscapeSettings):
    def run(items):
        return extract_many(items=items, workers=settings.workers, progress=settings.progress)
    return run


@asset(group_name="audio", deps=[raw_tracks, track_link_status], compute_kind="librosa")
def audio_features(context: AssetExecutionContext, settings: MoodscapeSettings) -> MaterializeResult:
    """librosa features (one STFT shared by every spectral feature), 30 s from ``audio_offset_s``
    (``MOODSCAPE_AUDIO_OFFSET_S``), for every track with audio.

    Audio comes from ``audio_path`` or, for tracks without it whose link is VALID/MOVED (the MOVED
    target), from a bounded download through the link checker's network policy
    (``pipelines.audio.fetch``): at most ``audio_fetch_budget`` new URLs per run, none offline;
    downloads are kept and reused. Every attempt is logged per track in ``audio_fetch`` (reason
    column) and per URL in ``audio_fetch_log`` (permanent refusals are not asked again). Cached by
    file content key (one cache per offset), so re-runs decode only new or changed files; a failing
    file gets an ``audio_error`` row and never fails the batch.
    """
    from pipelines.audio.fetch import (
        FETCH_LOG_SCHEMA, FETCHABLE_STATUSES, FetchConfig, fetch_log_frame, fetch_many, plan_fetches,
    )
    from pipelines.heal.links.status import utc_now
    from pipelines.net.policy import NetworkPolicy

    raw = load("raw_tracks")
    local = raw.filter(pl.col(S.AUDIO_PATH).is_not_null())
    items = list(zip(local.get_column(S.TRACK_ID).to_list(), local.get_column(S.AUDIO_PATH).to_list()))
    origin = dict.fromkeys(local.get_column(S.TRACK_ID).to_list(), "local")

    # Tracks without local audio whose link is live: the MOVED target, else the crawled URL.
    status_path = table_path("track_link_status")
    status = read_table(status_path) if status_path.exists() else pl.DataFrame(
        schema={S.TRACK_ID: pl.Utf8, S.URL_STATUS: pl.Utf8, S.FINAL_URL: pl.Utf8})
    live = (
        raw.filter(pl.col(S.AUDIO_PATH).is_null() & pl.col(S.PERMALINK_URL).is_not_null())
        .select(S.TRACK_ID, S.PERMALINK_URL)
        .join(status.select(S.TRACK_ID, S.URL_STATUS, S.FINAL_URL), on=S.TRACK_ID, how="inner")
        .filter(pl.col(S.URL_STATUS).is_in(list(FETCHABLE_STATUSES)))
        .with_columns(pl.when((pl.col(S.URL_STATUS) == "MOVED") & pl.col(S.FINAL_URL).is_not_null())
                      .then(pl.col(S.FINAL_URL)).otherwise(pl.col(S.PERMALINK_URL)).alias("fetch_url"))
    )
    candidates = list(zip(live.get_column(S.TRACK_ID).to_list(), live.get_column("fetch_url").to_list()))
    log_path = table_path("audio_fetch_log")
    log = read_table(log_path) if log_path.exists() else pl.DataFrame(
        schema={k: getattr(pl, v) for k, v in FETCH_LOG_SCHEMA.items()})
    previous = dict(zip(log.get_column("url").to_list(), log.get_column("reason").to_list()))
    dest = audio_dir("fetched")
    plan = plan_fetches(candidates=candidates, previous=previous, dest_dir=dest,
                        budget=0 if settings.offline else settings.audio_fetch_budget)
    results = []
    if plan.todo:
        config = FetchConfig(max_bytes=settings.audio_fetch_max_bytes)
        policy = NetworkPolicy(allow_hosts=settings.allow_hosts())
        results = fetch_many(urls=[u for _, u in plan.todo], dest_dir=dest, policy=policy, config=config,
                             progress=settings.progress)
        fresh_log = fetch_log_frame(todo=plan.todo, results=results, fetched_at=utc_now())
        log = pl.concat([log, fresh_log], how="vertical").unique(subset=["url"], keep="last", maintain_order=True)
        write_table(log, log_path)
    per_track = [(t, u, "reused") for t, u, _ in plan.reuse]
    per_track += [(t, u, r.reason) for (t, u), r in zip(plan.todo, results)]
    per_track += [(t, u, "offline" if settings.offline and why == "budget" else why) for t, u, why in plan.skipped]
    fetch_table = pl.DataFrame(per_track, schema={S.TRACK_ID: pl.Utf8, "url": pl.Utf8, S.REASON: pl.Utf8}, orient="row")
    write_table(fetch_table, table_path("audio_fetch"))
    for t, _u, path in plan.reuse:
        items.append((t, str(path)))
        origin[t] = "fetched"
    for (t, _u), r in zip(plan.todo, results):
        if r.path is not None:
            items.append((t, str(r.path)))
            origin[t] = "fetched"

    def extract(todo):
        return extract_many(items=todo, workers=settings.workers, progress=settings.progress,
                            offset=settings.audio_offset_s)

    # The cache is keyed by file; the analysed window is part of what it holds: one cache per offset.
    offset = settings.audio_offset_s
    cache_name = "audio_feature_cache" if offset == 0 else f"audio_feature_cache_offset_{offset:g}s"
    feats, stats = extract_with_cache(items=items, cache_path=table_path(cache_name), extract=extract)
    if feats.height == 0:
        feats = pl.DataFrame(schema={S.TRACK_ID: pl.Utf8, **{c: pl.Float64 for c in FEATURE_COLUMNS}, S.AUDIO_ERROR: pl.Utf8, "extract_s": pl.Float64})
    feats = feats.with_columns(
        pl.col(S.TRACK_ID).replace_strict(origin, default=None, return_dtype=pl.Utf8).alias("audio_origin"))
    write_table(feats, table_path("audio_features"))
    errors = feats.filter(pl.col(S.AUDIO_ERROR).is_not_null())
    fresh = feats.filter(pl.col("extract_s") > 0) if "extract_s" in feats.columns else feats
    fetched_ok = [r for r in results if r.path is not None]
    return MaterializeResult(metadata={
        "tracks_with_audio": len(items),
        "tracks_with_local_audio": local.height,
        "dims": len(FEATURE_COLUMNS),
        "errors": errors.height,
        "decode_errors_fetched": errors.filter(pl.col("audio_origin") == "fetched").height,
        "offset_s": offset,
        **stats,
        "mean_extract_s": round(float(fresh.get_column("extract_s").mean() or 0.0), 4) if fresh.height else 0.0,
        "fetch_candidates": len(candidates),
        "fetched": len(fetched_ok),
        "fetched_bytes": sum(r.bytes for r in fetched_ok),
        "fetch_reused": len(plan.reuse),
        "fetch_failed": len(results) - len(fetched_ok),
        "fetch_skipped": len(plan.skipped),
        "fetch_reasons": counts_md(value_counts(fetch_table, S.REASON), key="reason") if fetch_table.height else "none",
    })


@asset(group_name="heal", compute_kind="sklearn")
def music_classifier(context: AssetExecutionContext) -> MaterializeResult:
    """Learned music / non-music signal: logistic regression on MiniLM text embeddings of real
    labelled open-data rows (music captions and tags vs non-music clips and prose).

    Trained once per materialization (it does not depend on the crawl) and read by ``music_tracks``;
    the held-out precision/recall are in the metadata. See ``pipelines.heal.musicclassifier`` for its
    honest limits (only 6 real non-music tracks exist in the open data).
    """
    classifier = fit_from_open_data(data_dir=DATA_DIR, n_per_source=200)
    path = model_path("music_classifier")
    with atomic_path(path, ".joblib") as tmp:
        joblib.dump(classifier, tmp)
    m = classifier.metrics
    flat = {k: v for k, v in m.items() if isinstance(v, (int, float, str))}
    return MaterializeResult(metadata={**flat, "held_out": MetadataValue.json(m)})


def _load_music_classifier() -> MusicClassifier | None:
    path = model_path("music_classifier")
    return joblib.load(path) if path.exists() else None


@asset(group_name="heal", deps=[raw_tracks, track_link_status, audio_features, music_classifier], compute_kind="polars")
def music_tracks(context: AssetExecutionContext) -> MaterializeResult:
    """The crawl without non-music (speech, podcasts, animal and field recordings), with link status.

    Text evidence (lexicon) and, where audio exists, a speech/music discrimination rule; the
    rejected rows are kept in ``non_music`` with their reason.
    """
    tracks = load("raw_tracks")
    feats = load("audio_features")
    verdict = classify_music(tracks=tracks, audio_features=feats.filter(pl.col(S.AUDIO_ERROR).is_null()))
    # Secondary learned signal (see pipelines.heal.musicclassifier for its honest limits): scores only
    # the rows the heuristics left undecided; skipped (and said so) when it was never materialized.
    classifier = _load_music_classifier()
    if classifier is not None:
        verdict = apply_classifier(tracks=tracks, verdict=verdict, classifier=classifier)
    else:
        context.log.warning("music_classifier is not materialized: heuristics only")
        verdict = verdict.with_columns(pl.lit(None, dtype=pl.Float64).alias(S.MUSIC_PROBABILITY))
    status = load("track_link_status").select(S.TRACK_ID, S.URL_STATUS, S.HTTP_CODE, S.FINAL_URL)
    joined = tracks.join(verdict, on=S.TRACK_ID, how="left").join(status, on=S.TRACK_ID, how="left")
    # MOVED links keep their new address (the crawled one stays in permalink_url_original).
    joined = joined.with_columns(pl.col(S.PERMALINK_URL).alias(S.URL_ORIGINAL)).with_columns(
        pl.when((pl.col(S.URL_STATUS) == "MOVED") & pl.col(S.FINAL_URL).is_not_null())
        .then(pl.col(S.FINAL_URL)).otherwise(pl.col(S.PERMALINK_URL)).alias(S.PERMALINK_URL)
    )
    # Confirmed DEAD links: a live copy of the same track elsewhere in the catalogue replaces the
    # URL (provenance in url_resolution_*); the served status becomes the copy's status.
    resolutions = resolve_dead_links(tracks=joined, resolvers=[CatalogueResolver(catalogue=joined)])
    joined = apply_resolutions(tracks=joined, resolutions=resolutions)
    donor_status = joined.select(pl.col(S.TRACK_ID).alias(S.URL_RESOLVED_FROM), pl.col(S.URL_STATUS).alias("_donor_status"))
    joined = joined.join(donor_status, on=S.URL_RESOLVED_FROM, how="left", maintain_order="left").with_columns(
        pl.coalesce(pl.col("_donor_status"), pl.col(S.URL_STATUS)).alias(S.URL_STATUS)).drop("_donor_status")
    music = joined.filter(pl.col(S.IS_MUSIC).fill_null(True))
    rejected = joined.filter(~pl.col(S.IS_MUSIC).fill_null(True))
    write_table(music, table_path("music_tracks"))
    write_table(rejected, table_path("non_music"))
    return MaterializeResult(metadata={
        "music": music.height,
        "non_music": rejected.height,
        "classifier_held_out": MetadataValue.json(classifier.metrics if classifier is not None else {"status": "not materialized"}),
        "classifier_scored": int(verdict.get_column(S.MUSIC_PROBABILITY).is_not_null().sum()),
        "classifier_excluded": int(verdict.get_column(S.MUSIC_REASON).str.starts_with("classifier").sum()),
        "dead_links": int((music.get_column(S.URL_STATUS) == "DEAD").sum()),
        "dead_links_resolved": resolutions.height,
        "resolved_examples": MetadataValue.md("\n".join(
            f"- `{r[S.TRACK_ID]}` → `{r[S.PERMALINK_URL]}` ({r[S.URL_RESOLUTION_SOURCE]}, score {r[S.URL_RESOLUTION_SCORE]:.2f}, "
            f"from `{r[S.URL_RESOLVED_FROM]}`)" for r in resolutions.head(10).iter_rows(named=True)) or "none"),
        "non_music_examples": MetadataValue.md("\n".join(
            f"- `{r[S.TRACK_ID]}`: {r[S.MUSIC_REASON]}" for r in rejected.head(20).iter_rows(named=True)) or "none"),
    })
