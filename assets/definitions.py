"""The one Dagster ``Definitions`` of Moodscape (``dagster dev -w workspace.yaml``).

Jobs for the common operations (each selection brings the asset checks of its assets along):

- ``materialize_everything`` — the whole graph (but the per-file inbox ingest) and a new published version
- ``heal``                   — ingest, link status, music filter, metadata imputation
- ``features``               — text embeddings, audio features (extracted + imputed), metadata imputation, track moods
- ``mood_models``            — train the query-mood and audio-mood models
- ``rebuild_indices``        — the three FAISS indices (blocking recall checks) and publication
- ``evaluate``               — the evaluation harness on the dev-eval sets
- ``recheck_links``          — re-check the links of one hash shard that are due, then refresh the
                               link status (partitioned by shard; the daily schedule runs every shard)
- ``ingest_batch``           — ingest one inbox file (the inbox sensor runs it)

The partitioned link checks (``link_checks``, one partition per hash shard) are left out of the
unpartitioned jobs; ``materialize_all`` is the one in-process way to build everything (every shard,
then the rest of the graph), used by ``moodscape materialize``, evaluation stores and tests.

Schedules and sensors start STOPPED unless ``MOODSCAPE_AUTOMATION=on`` (``make ui`` sets it).
"""

from collections.abc import Collection, Sequence
from datetime import datetime, timezone

from dagster import (
    AssetsDefinition, AssetSelection, DagsterInstance, DagsterRunStatus, Definitions, ExecuteInProcessResult,
    RunRequest, RunsFilter, RunStatusSensorContext, ScheduleEvaluationContext, SkipReason, materialize,
    run_status_sensor, schedule, define_asset_job, load_asset_checks_from_modules, load_assets_from_modules,
)

from assets import enrich, evaluation, heal, inbox, index, mood, publish
from assets.settings import MoodscapeSettings, schedule_status, sensor_status

ASSET_MODULES = [inbox, heal, enrich, mood, index, publish, evaluation]

all_assets = load_assets_from_modules(ASSET_MODULES)
all_checks = load_asset_checks_from_modules(ASSET_MODULES)
# What one in-process run can build: every asset but the partitioned ones — the batch-partitioned
# inbox ingest runs per partition (inbox_sensor → ingest_batch; raw_tracks reads whatever batches
# exist) and the shard-partitioned link checks run per shard (see ``materialize_all``).
graph_assets = [a for a in all_assets if a.partitions_def is None]
LINK_CHECKS = heal.link_checks.key.to_user_string()


def _names(asset_def: AssetsDefinition) -> set[str]:
    return {k.to_user_string() for k in asset_def.keys}


def materialize_all(*, resources: dict, instance: DagsterInstance | None = None, select: Collection[str] | None = None,
                    exclude: Collection[str] = (), shards: Sequence[str] | None = None,
                    raise_on_error: bool = True) -> list[ExecuteInProcessResult]:
    """Materialize the graph in-process: the unpartitioned assets ``link_checks`` reads, then one
    run per link-check shard, then the rest of the unpartitioned graph, each with its asset checks.

    ``select`` (asset names, default every unpartitioned asset plus ``link_checks``) minus
    ``exclude`` is what is built; ``shards`` narrows the link-check partitions (default all).
    Returns the in-process results in run order; stops at the first failed run (or raises, with
    ``raise_on_error``).
    """
    wanted = [a for a in graph_assets if (select is None or _names(a) & set(select)) and not _names(a) & set(exclude)]
    check_links = (select is None or LINK_CHECKS in select) and LINK_CHECKS not in exclude
    before_keys = AssetSelection.assets(heal.link_checks).upstream().resolve(all_assets) if check_links else set()
    before = [a for a in wanted if set(a.keys) <= before_keys]
    after = [a for a in wanted if a not in before]
    plan: list[tuple[list[AssetsDefinition], str | None]] = []
    if before:
        plan.append((before, None))
    if check_links:
        plan += [([heal.link_checks], shard) for shard in (shards if shards is not None else heal.link_shards.get_partition_keys())]
    if after:
        plan.append((after, None))
    results = []
    for selected, shard in plan:
        keys = {k for a in selected for k in a.keys}
        checks = [c for c in all_checks if {ck.asset_key for ck in c.check_keys} <= keys]
        result = materialize([*selected, *checks], instance=instance, resources=resources, partition_key=shard,
                             raise_on_error=raise_on_error)
        results.append(result)
        if not result.success:
            break
    return results

# Run tag read by the production instance's tag concurrency limits (dagster.prod.yaml): at most
# one CPU-heavy build and one link re-check at a time.
RESOURCE_TAG = "moodscape/resource"
CPU = {RESOURCE_TAG: "cpu"}
NETWORK = {RESOURCE_TAG: "network"}

_batch = AssetSelection.assets("crawl_batch")

_shards = AssetSelection.assets(LINK_CHECKS)

everything_job = define_asset_job(
    "materialize_everything", selection=AssetSelection.all() - _batch - _shards, tags=CPU,
    description="Build every artifact and publish a new store version (link statuses from the shards' "
                "check histories; recheck_links checks links per shard).",
)
heal_job = define_asset_job(
    "heal", selection=AssetSelection.groups("ingest", "heal") - _batch - _shards, tags=NETWORK,
    description="Ingest, derive link status from the shard histories, filter non-music, impute metadata.",
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
    "recheck_links", selection=AssetSelection.assets(LINK_CHECKS, "track_link_status"), tags=NETWORK,
    partitions_def=heal.link_shards,
    description="Re-check the stalest due links of one hash shard within its share of the per-run budget, "
                "then refresh the derived link status.",
)


@schedule(
    name="link_recheck_daily", job=link_recheck_job, cron_schedule="0 3 * * *", default_status=schedule_status(),
    description="Daily re-check of the links that are due (VALID/MOVED/DEAD after 30 days, REQUIRES_AUTH after 7, "
                "SUSPECT after 1 day, UNKNOWN after 1 day with doubling backoff): one run per hash shard, each within "
                "its share of the budget.",
)
def link_recheck_schedule(context: ScheduleEvaluationContext) -> list[RunRequest]:
    day = (context.scheduled_execution_time or datetime.now(timezone.utc)).strftime("%Y-%m-%d")
    return [RunRequest(run_key=f"links-{day}-{shard}", partition_key=shard, tags={"moodscape/link_shard": shard})
            for shard in heal.link_shards.get_partition_keys()]

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
