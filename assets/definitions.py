"""The one Dagster ``Definitions`` of Moodscape (``dagster dev -w workspace.yaml``).

Jobs for the common operations (each selection brings the asset checks of its assets along):

- ``materialize_everything`` — the whole graph (but the per-file inbox ingest) and a new published version
- ``heal``                   — ingest, link status, music filter, metadata imputation
- ``features``               — text embeddings, audio features (extracted + imputed), metadata imputation, track moods
- ``mood_models``            — train the query-mood and audio-mood models
- ``rebuild_indices``        — the three FAISS indices (blocking recall checks) and publication
- ``evaluate``               — the evaluation harness on the dev-eval sets
- ``recheck_links``          — re-check the links that are due (the daily schedule runs it)
- ``ingest_batch``           — ingest one inbox file (the inbox sensor runs it)

Schedules and sensors start STOPPED unless ``MOODSCAPE_AUTOMATION=on`` (``make ui`` sets it).
"""

from dagster import (
    AssetSelection, DagsterRunStatus, Definitions, RunRequest, RunsFilter, RunStatusSensorContext,
    ScheduleDefinition, SkipReason, run_status_sensor,
    define_asset_job, load_asset_checks_from_modules, load_assets_from_modules,
)

from assets import enrich, evaluation, heal, inbox, index, mood, publish
from assets.settings import MoodscapeSettings, schedule_status, sensor_status

ASSET_MODULES = [inbox, heal, enrich, mood, index, publish, evaluation]

all_assets = load_assets_from_modules(ASSET_MODULES)
all_checks = load_asset_checks_from_modules(ASSET_MODULES)
# What one in-process run can build: every asset but the batch-partitioned inbox ingest, which
# runs per partition (inbox_sensor → ingest_batch); raw_tracks reads whatever batches exist.
graph_assets = [a for a in all_assets if a.partitions_def is None]

# Run tag read by the production instance's tag concurrency limits (dagster.prod.yaml): at most
# one CPU-heavy build and one link re-check at a time.
RESOURCE_TAG = "moodscape/resource"
CPU = {RESOURCE_TAG: "cpu"}
NETWORK = {RESOURCE_TAG: "network"}

_batch = AssetSelection.assets("crawl_batch")

everything_job = define_asset_job(
    "materialize_everything", selection=AssetSelection.all() - _batch, tags=CPU,
    description="Build every artifact and publish a new store version.",
)
heal_job = define_asset_job(
    "heal", selection=AssetSelection.groups("ingest", "heal") - _batch, tags=NETWORK,
    description="Ingest, check links, filter non-music, impute metadata.",
)
features_job = define_asset_job(
    "features",
    selection=AssetSelection.groups("embed", "audio") | AssetSelection.assets("imputed_metadata", "track_moods"),
    tags=CPU,
    description="Embed texts, extract audio features, impute missing metadata and audio features, compute track moods.",
)
mood_models_job = define_asset_job(
    "mood_models", selection=AssetSelection.groups("mood") - AssetSelection.assets("track_moods"), tags=CPU,
    description="Train the query-mood model and the audio-mood model.",
)
rebuild_indices_job = define_asset_job(
    "rebuild_indices", selection=AssetSelection.groups("index", "publish"), tags=CPU,
    description="Rebuild the text, audio and mood indices (blocking recall checks) and publish a new store version.",
)
evaluate_job = define_asset_job(
    "evaluate", selection=AssetSelection.assets("evaluation_report"),
    description="Run the evaluation harness on the dev-eval sets.",
)
link_recheck_job = define_asset_job(
    "recheck_links", selection=AssetSelection.assets("track_link_status"), tags=NETWORK,
    description="Re-check the stalest links within the per-run budget.",
)


link_recheck_schedule = ScheduleDefinition(
    name="link_recheck_daily", job=link_recheck_job, cron_schedule="0 3 * * *",
    default_status=schedule_status(),
    description="Daily re-check of the links that are due (VALID/MOVED/DEAD after 30 days, REQUIRES_AUTH after 7, UNKNOWN after 1 day with doubling backoff), within the per-run budget.",
)
inbox_sensor = inbox.inbox_sensor


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS, monitored_jobs=[inbox.ingest_batch_job], request_job=everything_job,
    default_status=sensor_status(), minimum_interval_seconds=30,
    description="After a crawl batch is ingested, rebuild the downstream graph (links, features, moods, "
                "indices) and publish a new store version. Batches that land while a rebuild is still "
                "queued ride along with it instead of queueing another.",
)
def rebuild_after_batch(context: RunStatusSensorContext):
    run = context.dagster_run
    if run.job_name != inbox.ingest_batch_job.name:
        return SkipReason(f"run {run.run_id} is {run.job_name}, not {inbox.ingest_batch_job.name}")
    waiting = context.instance.get_runs(
        filters=RunsFilter(job_name=everything_job.name, statuses=[DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED]),
        limit=1,
    )
    if waiting:
        return SkipReason(f"rebuild {waiting[0].run_id} is already waiting; it will read batch {run.tags.get('dagster/partition')}")
    return RunRequest(run_key=f"after-{run.run_id}", tags={"moodscape/after_batch": run.tags.get("dagster/partition", "")})

defs = Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[everything_job, heal_job, features_job, mood_models_job, rebuild_indices_job, evaluate_job,
          link_recheck_job, inbox.ingest_batch_job],
    sensors=[inbox_sensor, rebuild_after_batch],
    schedules=[link_recheck_schedule],
    resources={"settings": MoodscapeSettings()},
)
