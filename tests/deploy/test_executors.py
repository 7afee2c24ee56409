"""The executor choice (``assets.executors``): names, the CPU-aware step limit, the celery config the
workers share, and a real shard run under the default multiprocess executor."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from assets.executors import (
    CELERY_VISIBILITY_TIMEOUT_S,
    celery_config,
    cgroup_cpu_limit,
    executor_for,
    executor_name,
    max_concurrent,
    usable_cpus,
)
from pipelines import schema as S
from pipelines.errors import InvalidInputError
from tests.helpers import probe_definitions

REPO = Path(__file__).resolve().parents[2]


def _resolved(executor_def) -> dict:
    result = executor_def.config_schema.resolve_config({})
    assert result.success, result.errors
    return result.value["config"]


def test_executor_name_defaults_to_multiprocess_and_refuses_unknown_names(monkeypatch) -> None:
    monkeypatch.delenv("MOODSCAPE_EXECUTOR", raising=False)
    assert executor_name() == "multiprocess"
    monkeypatch.setenv("MOODSCAPE_EXECUTOR", "In-Process")
    assert executor_name() == "in_process"
    assert executor_for().name == "in_process"
    monkeypatch.setenv("MOODSCAPE_EXECUTOR", "dask")
    with pytest.raises(InvalidInputError) as err:
        executor_name()
    assert err.value.field == "MOODSCAPE_EXECUTOR" and "celery" in str(err.value)


def test_multiprocess_limit_follows_the_cpus_or_the_setting(monkeypatch) -> None:
    monkeypatch.delenv("MOODSCAPE_MAX_CONCURRENT", raising=False)
    assert max_concurrent() == usable_cpus() >= 1
    assert usable_cpus() <= (os.cpu_count() or 1)
    assert _resolved(executor_for("multiprocess"))["max_concurrent"] == usable_cpus()
    monkeypatch.setenv("MOODSCAPE_MAX_CONCURRENT", "3")
    assert _resolved(executor_for("multiprocess"))["max_concurrent"] == 3
    for bad in ("0", "-2", "two"):
        monkeypatch.setenv("MOODSCAPE_MAX_CONCURRENT", bad)
        with pytest.raises(InvalidInputError):
            max_concurrent()


def test_cgroup_quota_rounds_up_to_whole_cpus(tmp_path) -> None:
    v2 = tmp_path / "cpu.max"
    v1 = (tmp_path / "cfs_quota_us", tmp_path / "cfs_period_us")
    assert cgroup_cpu_limit(v2, v1) is None  # neither file: no quota
    v2.write_text("150000 100000\n")
    assert cgroup_cpu_limit(v2, v1) == 2
    v2.write_text("50000 100000\n")
    assert cgroup_cpu_limit(v2, v1) == 1
    v2.write_text("max 100000\n")
    assert cgroup_cpu_limit(v2, v1) is None
    v2.unlink()
    v1[0].write_text("400000\n")
    v1[1].write_text("100000\n")
    assert cgroup_cpu_limit(v2, v1) == 4
    v1[0].write_text("-1\n")
    assert cgroup_cpu_limit(v2, v1) is None


def test_celery_workers_yaml_matches_the_executor_config(monkeypatch) -> None:
    """``deploy/celery/celery.yaml`` (what ``dagster-celery worker start -y`` reads) resolves to exactly
    the config the jobs' celery executor is built with."""
    from dagster_celery.cli import get_validated_config

    monkeypatch.setenv("MOODSCAPE_CELERY_BROKER", "redis://queue.example:6380/2")
    worker = get_validated_config(str(REPO / "deploy" / "celery" / "celery.yaml"))
    ours = celery_config()
    assert ours["broker"] == ours["backend"] == "redis://queue.example:6380/2"
    assert {k: worker[k] for k in ("broker", "backend", "config_source")} == ours
    assert worker["config_source"]["broker_transport_options"]["visibility_timeout"] == CELERY_VISIBILITY_TIMEOUT_S
    assert _resolved(executor_for("celery"))["broker"] == "redis://queue.example:6380/2"


def test_local_profile_instance_queues_runs_within_the_resource_limits(tmp_path) -> None:
    """``deploy/local/dagster.yaml`` loads as an instance: a run queue, one CPU-heavy and one network run at once."""
    from dagster import DagsterInstance

    from assets.jobs import CPU, NETWORK, RESOURCE_TAG

    shutil.copy(REPO / "deploy" / "local" / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        queue = instance.run_coordinator.get_run_queue_config()
        assert queue.max_concurrent_runs >= 1 and instance.run_monitoring_enabled
    limits = {(lim["key"], lim.get("value")): lim["limit"] for lim in queue.tag_concurrency_limits}
    assert limits == {(RESOURCE_TAG, CPU[RESOURCE_TAG]): 1, (RESOURCE_TAG, NETWORK[RESOURCE_TAG]): 1}


def test_definitions_carry_the_chosen_executor_and_k8s_needs_its_package() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSCAPE_")}
    expr = "sorted({defs.resolve_job_def(j.name).executor_def.name for j in defs.jobs})"
    assert probe_definitions(expr, {**env, "MOODSCAPE_EXECUTOR": "celery"}) == ["celery"]
    try:
        import dagster_k8s  # noqa: F401
    except ImportError:
        with pytest.raises(InvalidInputError, match="dagster-k8s"):
            executor_for("k8s")
    else:
        assert executor_for("k8s").name == "k8s"


def test_a_shard_run_executes_its_steps_in_child_processes(tmp_path) -> None:
    """``dagster job execute`` of one ``recheck_links`` shard (offline: nothing is sent) under the default
    executor: each step runs in its own process, not the run's."""
    from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

    from assets.build import materialize_all
    from assets.resources import resources_for
    from assets.settings import MoodscapeSettings
    from pipelines.heal import democorpus
    from pipelines.heal.links.status import shard_of
    from pipelines.store import DATA_DIR, StoreLayout

    home, dagster_home = tmp_path / "home", tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    democorpus.musiccaps_rows(data_dir=DATA_DIR).head(12).write_csv(tmp_path / "crawl.csv")
    settings = MoodscapeSettings(crawl=str(tmp_path / "crawl.csv"), offline=True)
    assert all(r.success for r in materialize_all(resources=resources_for("test", home_dir=home, settings=settings),
                                                  select=["raw_tracks"]))
    raw = pl.read_parquet(StoreLayout.under_home(home).table("raw_tracks"))
    shard = shard_of(track_id=raw.get_column(S.TRACK_ID)[0])
    env = {k: v for k, v in os.environ.items() if k not in ("MOODSCAPE_EXECUTOR", "MOODSCAPE_MAX_CONCURRENT")}
    env.update(DAGSTER_HOME=str(dagster_home), MOODSCAPE_HOME=str(home), MOODSCAPE_OFFLINE="1")
    dagster = Path(sys.executable).parent / "dagster"
    out = subprocess.run(
        [str(dagster), "job", "execute", "-m", "assets.definitions", "-j", "recheck_links",
         "--tags", json.dumps({"dagster/partition": shard})],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        (record,) = instance.get_run_records()
        assert record.dagster_run.status == DagsterRunStatus.SUCCESS
        run_id = record.dagster_run.run_id
        starts = instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)
        run_pid = instance.all_logs(run_id, of_type=DagsterEventType.RUN_START)[0].dagster_event.pid
    assert {e.step_key for e in starts} == {"link_checks", "track_link_status"}
    step_pids = {e.dagster_event.pid for e in starts}
    assert run_pid not in step_pids and len(step_pids) == 2
    status = pl.read_parquet(StoreLayout.under_home(home).table("track_link_status"))
    in_shard = status.filter(pl.col(S.TRACK_ID).map_elements(lambda t: shard_of(track_id=t) == shard,
                                                            return_dtype=pl.Boolean))
    assert in_shard.height >= 1 and set(in_shard.get_column(S.REASON).to_list()) == {"offline"}
