"""Jobs for the common operations, the link re-check and audio fetch schedules and the two sensors.

Each job's selection brings the asset checks of its assets along. Schedules and sensors start
STOPPED unless ``MOODSCAPE_AUTOMATION=on`` (``make ui`` sets it).
"""

from datetime import datetime, timezone

from dagster import (
    AssetSelection,
    DagsterRunStatus,
    RunRequest,
    RunsFilter,
    RunStatusSensorContext,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    run_status_sensor,
    schedule,
    sensor,
)

from assets.partitions import crawl_batches, fetch_shards, link_shards
from assets.resources import StoreResource
from assets.settings import schedule_status, sensor_status
from pipelines.heal.catalogue import new_inbox_files

# Run tag read by the production instance's tag concurrency limits (dagster.prod.yaml): at most
# one CPU-heavy build and one network run (link re-check or audio fetch) at a time.
RESOURCE_TAG = "moodscape/resource"
CPU = {RESOURCE_TAG: "cpu"}
NETWORK = {RESOURCE_TAG: "network"}

_batch = AssetSelection.assets("crawl_batch")
_shards = AssetSelection.assets("link_checks")
_fetch = AssetSelection.assets("audio_fetch")

everything_job = define_asset_job(
    "materialize_everything",
    selection=AssetSelection.all() - _batch - _shards - _fetch,
    tags=CPU,
    description="Build every artifact and publish a new store version (link statuses from the shards' "
    "check histories, audio from the shards' fetch tables; recheck_links and fetch_audio run per shard).",
)
heal_job = define_asset_job(
    "heal",
    selection=AssetSelection.groups("ingest", "heal") - _batch - _shards,
    tags=NETWORK,
    description="Ingest, derive link status from the shard histories, filter non-music, impute metadata.",
)
features_job = define_asset_job(
    "features",
    selection=(AssetSelection.groups("embed", "audio")
               | AssetSelection.assets("imputed_metadata", "tag_priors", "track_moods")) - _fetch,
    tags=CPU,
    description="Embed texts, extract audio features (local and already fetched audio), impute missing metadata "
    "and audio features, compute track moods (the tag priors they read are reused unless their data changed).",
)
mood_models_job = define_asset_job(
    "mood_models",
    selection=AssetSelection.groups("mood") - AssetSelection.assets("track_moods"),
    tags=CPU,
    description="Train the query-mood model and the audio-mood model, learn the genre/tag mood priors.",
)
rebuild_indices_job = define_asset_job(
    "rebuild_indices",
    selection=AssetSelection.groups("index", "publish"),
    tags=CPU,
    description="Rebuild the text, audio and mood indices (blocking recall checks) and publish a new store version.",
)
evaluate_job = define_asset_job(
    "evaluate",
    selection=AssetSelection.assets("evaluation_report"),
    description="Run the evaluation harness on the dev-eval sets.",
)
link_recheck_job = define_asset_job(
    "recheck_links",
    selection=AssetSelection.assets("link_checks", "track_link_status"),
    tags=NETWORK,
    partitions_def=link_shards,
    description="Re-check the stalest due links of one hash shard within its share of the per-run budget, "
    "then refresh the derived link status.",
)
audio_fetch_job = define_asset_job(
    "fetch_audio",
    selection=_fetch,
    tags=NETWORK,
    partitions_def=fetch_shards,
    description="Fetch the audio of one hash shard's live links (track pages resolved to their audio) within its "
    "share of the per-run budget: never-tried links first, then failures whose backoff has passed.",
)
ingest_batch_job = define_asset_job(
    "ingest_batch",
    selection=AssetSelection.assets("crawl_batch"),
    partitions_def=crawl_batches,
    description="Ingest one inbox file (a crawl_batches partition).",
)
JOBS = [
    everything_job,
    heal_job,
    features_job,
    mood_models_job,
    rebuild_indices_job,
    evaluate_job,
    link_recheck_job,
    audio_fetch_job,
    ingest_batch_job,
]


def _shard_runs(context: ScheduleEvaluationContext, *, prefix: str, stamp: str, shards, tag: str) -> list[RunRequest]:
    """One run per hash shard, keyed by the tick's time (``stamp``) so a tick never asks twice."""
    at = (context.scheduled_execution_time or datetime.now(timezone.utc)).strftime(stamp)
    return [
        RunRequest(run_key=f"{prefix}-{at}-{shard}", partition_key=shard, tags={tag: shard})
        for shard in shards.get_partition_keys()
    ]


@schedule(
    name="link_recheck_daily",
    job=link_recheck_job,
    cron_schedule="0 3 * * *",
    default_status=schedule_status(),
    description="Daily re-check of the links that are due (VALID/MOVED/DEAD after 30 days, REQUIRES_AUTH after 7, "
    "SUSPECT after 1 day, UNKNOWN after 1 day with doubling backoff): one run per hash shard, each within "
    "its share of the budget.",
)
def link_recheck_schedule(context: ScheduleEvaluationContext) -> list[RunRequest]:
    return _shard_runs(context, prefix="links", stamp="%Y-%m-%d", shards=link_shards, tag="moodscape/link_shard")


@schedule(
    name="audio_fetch_hourly",
    job=audio_fetch_job,
    cron_schedule="30 * * * *",
    default_status=schedule_status(),
    description="Hourly audio fetch: one run per hash shard, each within its share of the budget and deadline, "
    "so successive runs cover the whole crawl (never-tried links first, retryable failures after their backoff).",
)
def audio_fetch_schedule(context: ScheduleEvaluationContext) -> list[RunRequest]:
    return _shard_runs(context, prefix="audio", stamp="%Y-%m-%dT%H", shards=fetch_shards, tag="moodscape/fetch_shard")


@sensor(
    job=ingest_batch_job,
    minimum_interval_seconds=30,
    default_status=sensor_status(),
    description="Picks up crawl files dropped into $MOODSCAPE_HOME/inbox: one new batch partition and ingest run "
    "per file.",
)
def inbox_sensor(context: SensorEvaluationContext, store: StoreResource):
    known = set(context.instance.get_dynamic_partitions(crawl_batches.name))
    new = new_inbox_files(folder=store.inbox(), known=known)
    if not new:
        return SkipReason(f"no new crawl files in {store.inbox()}")
    return SensorResult(
        run_requests=[RunRequest(partition_key=name, run_key=name) for name in new],
        dynamic_partitions_requests=[crawl_batches.build_add_request(new)],
    )


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[ingest_batch_job],
    request_job=everything_job,
    default_status=sensor_status(),
    minimum_interval_seconds=30,
    description="After a crawl batch is ingested, rebuild the downstream graph (links, features, moods, "
    "indices) and publish a new store version. Batches that land while a rebuild is still "
    "queued ride along with it instead of queueing another.",
)
def rebuild_after_batch(context: RunStatusSensorContext):
    run = context.dagster_run
    if run.job_name != ingest_batch_job.name:
        return SkipReason(f"run {run.run_id} is {run.job_name}, not {ingest_batch_job.name}")
    waiting = context.instance.get_runs(
        filters=RunsFilter(
            job_name=everything_job.name, statuses=[DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED]
        ),
        limit=1,
    )
    if waiting:
        return SkipReason(
            f"rebuild {waiting[0].run_id} is already waiting; it will read batch {run.tags.get('dagster/partition')}"
        )
    return RunRequest(
        run_key=f"after-{run.run_id}", tags={"moodscape/after_batch": run.tags.get("dagster/partition", "")}
    )
