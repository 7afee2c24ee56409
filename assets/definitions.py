"""The one Dagster ``Definitions`` of Moodscape (``dagster dev -w workspace.yaml``)."""

from dagster import (
    AssetSelection, DefaultScheduleStatus, Definitions, ScheduleDefinition, define_asset_job,
    load_asset_checks_from_modules, load_assets_from_modules,
)

from assets import enrich, evaluation, heal, inbox, index, mood, publish
from assets.settings import MoodscapeSettings

ASSET_MODULES = [inbox, heal, enrich, mood, index, publish, evaluation]

all_assets = load_assets_from_modules(ASSET_MODULES)
all_checks = load_asset_checks_from_modules(ASSET_MODULES)
# What one in-process run can build: every asset but the batch-partitioned inbox ingest, which
# runs per partition (inbox_sensor → ingest_batch); raw_tracks reads whatever batches exist.
graph_assets = [a for a in all_assets if a.partitions_def is None]

everything_job = define_asset_job("materialize_everything", selection=AssetSelection.all() - AssetSelection.assets("crawl_batch"), description="Build every artifact and publish a new store version.")
heal_job = define_asset_job("heal", selection=AssetSelection.groups("ingest", "heal") - AssetSelection.assets("crawl_batch"), description="Ingest, check links, filter non-music, impute metadata.")
evaluate_job = define_asset_job("evaluate", selection=AssetSelection.assets("evaluation_report"), description="Run the evaluation harness on the dev-eval sets.")
link_recheck_job = define_asset_job("recheck_links", selection=AssetSelection.assets("track_link_status"), description="Re-check the stalest links within the per-run budget.")

link_recheck_schedule = ScheduleDefinition(
    name="link_recheck_daily", job=link_recheck_job, cron_schedule="0 3 * * *",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Daily re-check of the links that are due (VALID/MOVED/DEAD after 30 days, REQUIRES_AUTH after 7, UNKNOWN after 1 day with doubling backoff), within the per-run budget.",
)

defs = Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[everything_job, heal_job, link_recheck_job, evaluate_job, inbox.ingest_batch_job],
    sensors=[inbox.inbox_sensor],
    schedules=[link_recheck_schedule],
    resources={"settings": MoodscapeSettings()},
)
