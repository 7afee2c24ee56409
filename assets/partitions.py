"""Partitions: crawl batches (one per inbox file) and track shards (a hash of track_id)."""

from dagster import DynamicPartitionsDefinition, StaticPartitionsDefinition

from pipelines.heal.links.status import shard_keys

crawl_batches = DynamicPartitionsDefinition(name="crawl_batches")
# Link checking is partitioned by hash shard of track_id (never one partition per track).
link_shards = StaticPartitionsDefinition(shard_keys())
# Audio fetching uses the same shards: a track's fetch partition is its link-check partition, and a
# fetch shard depends on that link-check shard only.
fetch_shards = link_shards
