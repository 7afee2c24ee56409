"""Inbox → crawl_batch partitions → raw_tracks, with a real Dagster instance and sensor evaluation."""

import polars as pl
import pytest

from pipelines import democorpus
from pipelines import schema as S
from pipelines.store import DATA_DIR

pytestmark = pytest.mark.integration


def test_inbox_sensor_partitions_and_raw_tracks_union(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MOODSCAPE_HOME", str(tmp_path / "home"))
    from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context, materialize

    from assets.definitions import all_assets, defs
    from assets.inbox import crawl_batch, crawl_batches, inbox_sensor
    from assets.settings import MoodscapeSettings
    from pipelines.store import inbox_dir, table_path

    base = democorpus.musiccaps_rows(data_dir=DATA_DIR).head(5)
    base.write_csv(tmp_path / "base.csv")
    inbox = inbox_dir()
    inbox.mkdir(parents=True)
    # batch 1: two new tracks and one duplicate of the base crawl (merged, not doubled)
    pl.concat([democorpus.musiccaps_rows(data_dir=DATA_DIR).slice(5, 2), base.head(1)]).write_csv(inbox / "batch1.csv")
    (inbox / "notes.txt").write_text("not a crawl file")

    with DagsterInstance.ephemeral() as instance:
        result = inbox_sensor(build_sensor_context(instance=instance))
        assert isinstance(result, SensorResult)
        assert [r.partition_key for r in result.run_requests] == ["batch1.csv"]
        instance.add_dynamic_partitions(crawl_batches.name, ["batch1.csv"])
        again = inbox_sensor(build_sensor_context(instance=instance))
        assert isinstance(again, SkipReason)  # nothing new: no second run for the same file

        run = materialize([crawl_batch], partition_key="batch1.csv", instance=instance)
        assert run.success
        assert pl.read_parquet(table_path("crawl_batches", "batch1.csv")).height == 3

        raw = [a for a in all_assets if "raw_tracks" in {k.to_user_string() for k in a.keys}]
        settings = MoodscapeSettings(crawl=str(tmp_path / "base.csv"), offline=True)
        assert materialize(raw, instance=instance, resources={"settings": settings}).success
    tracks = pl.read_parquet(table_path("raw_tracks"))
    assert tracks.height == 7  # 5 base + 2 new; the duplicate merged
    assert set(tracks[S.TRACK_ID]) >= set(base[S.TRACK_ID])
    assert defs.get_sensor_def("inbox_sensor")
