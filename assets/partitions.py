"""Partitions: crawl batches (one per inbox file) and link-check shards (a hash of track_id)."""

from dagster import DynamicPartitionsDefinition, StaticPartitionsDefinition

from pipelines.heal.links.status import shard_keys

crawl_batches = DynamicPartitionsDefinition(name="crawl_batches")
# Link checking is partitioned by hash shard of track_id (never one partition per track).
link_shards = StaticPartitionsDefinition(shard_keys())
