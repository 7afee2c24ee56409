"""Inbox → crawl_batch partitions → raw_tracks, with a real Dagster instance and sensor evaluation."""

import polars as pl
import pytest

from pipelines import schema as S
from pipelines.heal import democorpus
from pipelines.store import DATA_DIR

pytestmark = pytest.mark.integration


def test_inbox_sensor_partitions_and_raw_tracks_union(tmp_path, monkeypatch) -> None:
    """The sensor, the batch ingest and raw_tracks read and write the store of the ``store``
    resource (an explicit home), not the one ``MOODSCAPE_HOME`` names."""
    monkeypatch.setenv("MOODSCAPE_HOME", str(tmp_path / "elsewhere"))
    from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context, materialize

    from assets.build import all_assets
    from assets.definitions import defs
    from assets.ingest import crawl_batch
    from assets.jobs import inbox_sensor
    from assets.partitions import crawl_batches
    from assets.resources import resources_for
    from assets.settings import MoodscapeSettings

    base = democorpus.musiccaps_rows(data_dir=DATA_DIR).head(5)
    base.write_csv(tmp_path / "base.csv")
    resources = resources_for(
        "test", home_dir=tmp_path / "home", settings=MoodscapeSettings(crawl=str(tmp_path / "base.csv"), offline=True)
    )
    store = resources["store"]
    inbox = store.inbox()
    assert inbox == (tmp_path / "home" / "inbox").resolve()
    inbox.mkdir(parents=True)
    # batch 1: two new tracks and one duplicate of the base crawl (merged, not doubled)
    pl.concat([democorpus.musiccaps_rows(data_dir=DATA_DIR).slice(5, 2), base.head(1)]).write_csv(inbox / "batch1.csv")
    (inbox / "notes.txt").write_text("not a crawl file")

    with DagsterInstance.ephemeral() as instance:
        result = inbox_sensor(build_sensor_context(instance=instance, resources={"store": store}))
        assert isinstance(result, SensorResult)
        assert [r.partition_key for r in result.run_requests] == ["batch1.csv"]
        instance.add_dynamic_partitions(crawl_batches.name, ["batch1.csv"])
        again = inbox_sensor(build_sensor_context(instance=instance, resources={"store": store}))
        assert isinstance(again, SkipReason)  # nothing new: no second run for the same file

        run = materialize([crawl_batch], partition_key="batch1.csv", instance=instance, resources=resources)
        assert run.success
        assert pl.read_parquet(store.layout().table("crawl_batches", "batch1.csv")).height == 3

        raw = [a for a in all_assets if "raw_tracks" in {k.to_user_string() for k in a.keys}]
        assert materialize(raw, instance=instance, resources=resources).success
    tracks = pl.read_parquet(store.layout().table("raw_tracks"))
    assert tracks.height == 7  # 5 base + 2 new; the duplicate merged
    assert set(tracks[S.TRACK_ID]) >= set(base[S.TRACK_ID])
    assert not (tmp_path / "elsewhere").exists()
    assert defs.get_sensor_def("inbox_sensor")


def test_rebuild_after_batch_requests_one_downstream_run(tmp_path, monkeypatch) -> None:
    """A successful ingest_batch run triggers materialize_everything; a queued rebuild absorbs the next."""
    monkeypatch.setenv("MOODSCAPE_HOME", str(tmp_path / "home"))
    from dagster import (
        DagsterInstance,
        DagsterRunStatus,
        RunRequest,
        SkipReason,
        build_run_status_sensor_context,
    )

    from assets.definitions import defs
    from assets.jobs import everything_job, rebuild_after_batch
    from assets.partitions import crawl_batches
    from pipelines.store import inbox_dir

    inbox = inbox_dir()
    inbox.mkdir(parents=True)
    democorpus.musiccaps_rows(data_dir=DATA_DIR).slice(0, 3).write_csv(inbox / "b1.csv")
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(crawl_batches.name, ["b1.csv"])
        result = defs.resolve_job_def("ingest_batch").execute_in_process(partition_key="b1.csv", instance=instance)
        assert result.success

        def evaluate():
            ctx = build_run_status_sensor_context(
                sensor_name=rebuild_after_batch.name,
                dagster_instance=instance,
                dagster_run=result.dagster_run,
                dagster_event=result.get_run_success_event(),
            )
            return rebuild_after_batch(ctx)

        first = evaluate()
        assert isinstance(first, RunRequest)
        assert first.run_key == f"after-{result.run_id}" and first.tags["moodscape/after_batch"] == "b1.csv"
        assert rebuild_after_batch.job_name == everything_job.name
        # a rebuild is waiting (not started): the next batch rides along instead of queueing another
        instance.create_run_for_job(defs.resolve_job_def(everything_job.name), status=DagsterRunStatus.NOT_STARTED)
        assert isinstance(evaluate(), SkipReason)
