"""The celery deployment profile end to end: a real Redis broker on loopback, two dagster-celery
workers started from ``deploy/celery/celery.yaml``, and concurrent ``recheck_links`` shard runs
launched with ``MOODSCAPE_EXECUTOR=celery``; their steps check real links on a loopback site and
must run on both workers."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from pipelines import schema as S
from pipelines.heal import democorpus
from pipelines.heal.links.status import shard_of
from pipelines.store import DATA_DIR
from tests.helpers import LoopbackHandler, http_on_loopback

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKERS = ("w1", "w2")
RUNS = 4  # shard runs launched at once
SITE_DELAY_S = 1.0  # each link answer waits this long, so a busy worker leaves the next step to the other


class _SlowSite(LoopbackHandler):
    def _answer(self) -> None:
        time.sleep(SITE_DELAY_S)
        self.reply(200 if self.path.startswith("/tracks/") else 404)

    do_HEAD = _answer
    do_GET = _answer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (the worker CLI and its celery child), SIGKILL after 15 s."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _spawn(cmd: list[str], *, log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``cmd`` from the repo root in a process group of its own, output to ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture()
def redis_url(tmp_path) -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (scripts/install_system_deps.sh installs it)")
    import redis

    port = _free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(100):
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail("redis-server did not answer PING within 10 s")
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(proc)


@pytest.fixture()
def site() -> Iterator[str]:
    with http_on_loopback(_SlowSite) as base:
        yield base


def _store_with_tracks(home: Path, site: str, tmp_path: Path) -> pl.DataFrame:
    """A tiny store: 24 demo rows whose links point at the loopback site, ingested into raw_tracks."""
    from assets.build import materialize_all
    from assets.resources import resources_for
    from assets.settings import MoodscapeSettings

    rows = democorpus.musiccaps_rows(data_dir=DATA_DIR).head(24)
    urls = [f"{site}/tracks/{i}" for i in range(rows.height)]
    rows.with_columns(pl.Series(S.PERMALINK_URL, urls)).write_csv(tmp_path / "crawl.csv")
    settings = MoodscapeSettings(crawl=str(tmp_path / "crawl.csv"), offline=True)
    resources = resources_for("test", home_dir=home, settings=settings)
    assert all(r.success for r in materialize_all(resources=resources, select=["raw_tracks"]))
    return pl.read_parquet(resources["store"].layout().table("raw_tracks"))


def _wait_for_workers(broker: str, procs: list[subprocess.Popen], timeout_s: float = 90) -> set[str]:
    """The names of the workers that answer a broadcast ping, once all of them do."""
    from celery import Celery

    deadline = time.monotonic() + timeout_s
    names: set[str] = set()
    with Celery(broker=broker) as app:
        while time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), "a celery worker exited during start-up"
            names = {name for reply in app.control.ping(timeout=1.0) or [] for name in reply}
            if len(names) == len(procs):
                return names
            time.sleep(0.5)
    pytest.fail(f"only {sorted(names)} of {len(procs)} celery workers answered within {timeout_s} s")


def test_shard_runs_execute_on_two_celery_workers(redis_url, site, tmp_path) -> None:
    from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

    home, dagster_home = tmp_path / "home", tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.upgrade()  # create the SQLite schemas once, before workers and runs open them concurrently
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DAGSTER_HOME": str(dagster_home),
        "MOODSCAPE_HOME": str(home),
        "MOODSCAPE_EXECUTOR": "celery",
        "MOODSCAPE_CELERY_BROKER": redis_url,
        "MOODSCAPE_LINKCHECK_ALLOW_HOSTS": "127.0.0.1",
        "MOODSCAPE_OFFLINE": "0",
        "MOODSCAPE_AUTOMATION": "off",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    worker_cmd = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                  "-y", str(REPO / "deploy" / "celery" / "celery.yaml"), "-i", "assets.definitions"]
    procs = [
        _spawn([*worker_cmd, "-n", name, "--", "-P", "solo"], log=logs / f"{name}.log", env=env) for name in WORKERS
    ]
    try:
        raw = _store_with_tracks(home, site, tmp_path)  # while the workers start
        by_shard: dict[str, list[str]] = {}
        for track_id in raw.get_column(S.TRACK_ID).to_list():
            by_shard.setdefault(shard_of(track_id=track_id), []).append(track_id)
        shards = sorted(by_shard)[:RUNS]
        assert len(shards) == RUNS, f"the tiny crawl fills only {len(by_shard)} shards"
        workers = _wait_for_workers(redis_url, procs)
        runs = [
            _spawn([str(BIN / "dagster"), "job", "execute", "-m", "assets.definitions", "-j", "recheck_links",
                    "--tags", json.dumps({"dagster/partition": shard})], log=logs / f"run-{shard}.log", env=env)
            for shard in shards
        ]
        procs += runs
        for shard, run in zip(shards, runs):
            try:
                code = run.wait(timeout=180)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the run of shard {shard} did not finish in 180 s")
            assert code == 0, (logs / f"run-{shard}.log").read_text()[-3000:]
    finally:
        for proc in reversed(procs):
            _stop(proc)

    with DagsterInstance.from_config(str(dagster_home)) as instance:
        records = instance.get_run_records(RunsFilter(job_name="recheck_links"))
        assert sorted(r.dagster_run.tags["dagster/partition"] for r in records) == shards
        assert all(r.dagster_run.status == DagsterRunStatus.SUCCESS for r in records)
        ran_on: dict[str, str] = {}  # "<run partition>/<step>" -> celery worker
        for record in records:
            shard = record.dagster_run.tags["dagster/partition"]
            for event in instance.all_logs(record.dagster_run.run_id, of_type=DagsterEventType.ENGINE_EVENT):
                data = event.dagster_event.event_specific_data
                worker = data.metadata.get("Celery worker") if data and data.metadata else None
                if worker is not None:
                    ran_on[f"{shard}/{event.step_key}"] = worker.value
            steps = instance.all_logs(record.dagster_run.run_id, of_type=DagsterEventType.STEP_SUCCESS)
            assert {e.step_key for e in steps} == {"link_checks", "track_link_status"}
    assert set(ran_on) == {f"{s}/{step}" for s in shards for step in ("link_checks", "track_link_status")}
    assert set(ran_on.values()) == workers, f"steps ran on {sorted(set(ran_on.values()))}, workers {sorted(workers)}"

    from assets.links import LINK_HISTORY
    from pipelines.store import StoreLayout

    layout = StoreLayout.under_home(home)
    for shard in shards:  # every track of a run's shard was checked, over real HTTP, by a worker
        history = pl.read_parquet(layout.table(LINK_HISTORY, shard))
        assert sorted(history.get_column(S.TRACK_ID).to_list()) == sorted(by_shard[shard])
        assert set(history.get_column(S.URL_STATUS).to_list()) == {S.VALID}
    assert pl.read_parquet(layout.table("track_link_status")).height == raw.height
