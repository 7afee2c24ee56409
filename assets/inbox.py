"""Crawl batches: files dropped into ``$MOODSCAPE_HOME/inbox`` become partitions of ``crawl_batch``.

The sensor adds one dynamic partition per new file (keyed by file name) and requests its ingest
run; ``raw_tracks`` unions the base crawl with every ingested batch (duplicates merged by ingest),
so the next run of the graph serves the new tracks.
"""

from dagster import (
    AssetExecutionContext, DynamicPartitionsDefinition, MaterializeResult,
    RunRequest, SensorEvaluationContext, SensorResult, SkipReason, asset, define_asset_job, sensor,
)

from assets.common import counts_md, value_counts
from assets.settings import sensor_status
from pipelines.heal.ingest import ingest
from pipelines.store import inbox_dir, table_path, write_table

CRAWL_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".ndjson", ".json")
crawl_batches = DynamicPartitionsDefinition(name="crawl_batches")


@asset(group_name="ingest", partitions_def=crawl_batches, compute_kind="polars")
def crawl_batch(context: AssetExecutionContext) -> MaterializeResult:
    """One crawl file from the inbox (partition = its file name), ingested with quarantine.

    A re-run of a partition overwrites exactly its own two files.
    """
    key = context.partition_key
    result = ingest(path=inbox_dir() / key)
    write_table(result.tracks, table_path("crawl_batches", key))
    write_table(result.quarantine, table_path("crawl_batch_quarantine", key))
    return MaterializeResult(metadata={
        **{k: v for k, v in result.stats.items() if isinstance(v, (int, float, str))},
        "quarantine_reasons": counts_md(value_counts(result.quarantine, "reason"), key="reason") if result.quarantine.height else "none",
    })


ingest_batch_job = define_asset_job(
    "ingest_batch", selection=[crawl_batch], partitions_def=crawl_batches,
    description="Ingest one inbox file (a crawl_batches partition).",
)


def new_inbox_files(known: set[str]) -> list[str]:
    folder = inbox_dir()
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in CRAWL_SUFFIXES and not p.name.startswith(".") and p.name not in known)


@sensor(job=ingest_batch_job, minimum_interval_seconds=30, default_status=sensor_status(),
        description="Picks up crawl files dropped into $MOODSCAPE_HOME/inbox: one new batch partition and ingest run per file.")
def inbox_sensor(context: SensorEvaluationContext):
    known = set(context.instance.get_dynamic_partitions(crawl_batches.name))
    new = new_inbox_files(known)
    if not new:
        return SkipReason(f"no new crawl files in {inbox_dir()}")
    return SensorResult(
        run_requests=[RunRequest(partition_key=name, run_key=name) for name in new],
        dynamic_partitions_requests=[crawl_batches.build_add_request(new)],
    )
