"""The production Dagster profile (dagster.prod.yaml) against a real PostgreSQL 15 server.

The test starts its own throwaway server (initdb + pg_ctl on a free 127.0.0.1 port, data and unix
socket in a temp dir; as the ``postgres`` user when run as root, since PostgreSQL refuses root),
loads the instance from the prod yaml through ``DAGSTER_HOME`` + ``DAGSTER_PG_*``, materializes two
real assets (ingest + offline link status on a tiny real crawl) and reads the runs / event_logs
tables back with psycopg2. Skipped when the PostgreSQL binaries are absent.
"""

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from pipelines.heal import democorpus
from pipelines.store import DATA_DIR

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("MOODSCAPE_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "dagster"
PG_DB = "moodscape_dagster"


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    password: str
    db_name: str

    def env(self) -> dict[str, str]:
        """The DAGSTER_PG_* variables dagster.prod.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.db_name,
        }

    def connect(self, db_name: str | None = None):
        import psycopg2

        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=db_name or self.db_name,
            connect_timeout=10,
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PgServer]:
    """A PostgreSQL 15 server on 127.0.0.1 with a password-protected role and an empty database."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).exists():
            pytest.skip(f"PostgreSQL binaries not found in {PG_BIN}")
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the postgres user
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root and runuser is missing")
        prefix = [runuser, "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="moodscape-pg-"))  # /tmp, reachable by the postgres user
    password = secrets.token_urlsafe(16)
    (base / "pwfile").write_text(password + "\n")
    (base / "sock").mkdir()
    if owner is not None:
        for p in (base, base / "pwfile", base / "sock"):
            os.chown(p, owner.pw_uid, owner.pw_gid)
    data, log = base / "data", base / "server.log"
    port = _free_port()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120, cwd=base)

    started = False
    try:
        out = run(
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            PG_USER,
            f"--pwfile={base / 'pwfile'}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        )
        assert out.returncode == 0, out.stdout + out.stderr
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base / 'sock'} -c fsync=off -c full_page_writes=off"
        out = run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
        started = out.returncode == 0
        assert started, out.stdout + out.stderr + (log.read_text() if log.exists() else "")
        server = PgServer(host="127.0.0.1", port=port, user=PG_USER, password=password, db_name=PG_DB)
        con = server.connect("postgres")
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f"CREATE DATABASE {PG_DB}")
        con.close()
        yield server
    finally:
        if started:
            out = run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop")
            if out.returncode != 0:
                run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def prod_instance(postgres: PgServer, tmp_path, monkeypatch):
    """``DagsterInstance.get()`` from a DAGSTER_HOME holding dagster.prod.yaml, env-configured."""
    from dagster import DagsterInstance

    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.prod.yaml", dagster_home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("MOODSCAPE_HOME", str(tmp_path / "home"))
    for key, value in postgres.env().items():
        monkeypatch.setenv(key, value)
    instance = DagsterInstance.get()
    try:
        yield instance
    finally:
        instance.dispose()


def test_prod_profile_loads_postgres_storage_queue_and_retries(prod_instance) -> None:
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    assert isinstance(prod_instance.run_storage, PostgresRunStorage)
    assert isinstance(prod_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(prod_instance.schedule_storage, PostgresScheduleStorage)
    coordinator = prod_instance.run_coordinator
    assert isinstance(coordinator, QueuedRunCoordinator)
    queue = coordinator.get_run_queue_config()
    assert queue.max_concurrent_runs == 4
    limits = {(lim["key"], lim.get("value")): lim["limit"] for lim in queue.tag_concurrency_limits}
    assert limits[("moodscape/resource", "cpu")] == 1 and limits[("moodscape/resource", "network")] == 1
    assert prod_instance.run_retries_enabled and prod_instance.run_retries_max_retries == 2
    assert not prod_instance.telemetry_enabled


def test_materialize_against_postgres_records_run_and_events(prod_instance, postgres: PgServer, tmp_path) -> None:
    from dagster import AssetKey, DagsterEventType

    from assets.build import materialize_all
    from assets.settings import MoodscapeSettings

    crawl = tmp_path / "crawl.csv"
    democorpus.musiccaps_rows(data_dir=DATA_DIR).head(4).write_csv(crawl)
    settings = MoodscapeSettings(crawl=str(crawl), offline=True)
    # ingest, two link-check shard partitions, the derived status: four runs in the Postgres storage
    results = materialize_all(
        instance=prod_instance,
        resources={"settings": settings},
        select={"raw_tracks", "link_checks", "track_link_status"},
        shards=["00", "01"],
    )
    assert len(results) == 4 and all(r.success for r in results)
    run_ids = [r.run_id for r in results]
    run_id = run_ids[-1]

    from pipelines.store import table_path

    assert pl.read_parquet(table_path("track_link_status")).height == 4  # the assets really ran

    with postgres.connect() as con, con.cursor() as cur:
        cur.execute("SELECT run_id, status FROM runs WHERE run_id = ANY(%s)", (run_ids,))
        assert sorted(cur.fetchall()) == sorted((r, "SUCCESS") for r in run_ids)
        cur.execute(
            "SELECT run_id, dagster_event_type, asset_key, partition FROM event_logs WHERE run_id = ANY(%s)", (run_ids,)
        )
        events = cur.fetchall()
        cur.execute("SELECT asset_key FROM asset_keys")
        asset_keys = {row[0] for row in cur.fetchall()}
    con.close()
    materialized = {(run, key, part) for run, kind, key, part in events if kind == "ASSET_MATERIALIZATION"}
    assert materialized == {
        (run_ids[0], '["raw_tracks"]', None),
        (run_ids[1], '["link_checks"]', "00"),
        (run_ids[2], '["link_checks"]', "01"),
        (run_ids[3], '["track_link_status"]', None),
    }
    kinds = {kind for run, kind, _, _ in events if run == run_ids[1]}
    expected = {
        DagsterEventType.RUN_START,
        DagsterEventType.RUN_SUCCESS,
        DagsterEventType.STEP_SUCCESS,
        DagsterEventType.ASSET_CHECK_EVALUATION,
    }
    assert {e.value for e in expected} <= kinds  # stored under their legacy names (PIPELINE_START, ...)
    assert {'["raw_tracks"]', '["link_checks"]', '["track_link_status"]'} <= asset_keys
    # and the instance reads them back through the same storage
    record = prod_instance.get_latest_materialization_event(AssetKey("track_link_status"))
    assert record is not None and record.run_id == run_id


def test_launched_job_waits_in_the_postgres_queue(prod_instance, postgres: PgServer) -> None:
    """`dagster job launch` (the operator's path) enqueues the run (QUEUED, with its concurrency tag)
    instead of running it: with the prod profile only the daemon dequeues, within the limits."""
    import sys

    from dagster import DagsterEventType, DagsterRunStatus

    exe = Path(sys.executable).parent / "dagster"
    # recheck_links is partitioned by link shard: the operator names the shard to re-check
    out = subprocess.run(
        [
            str(exe),
            "job",
            "launch",
            "-w",
            str(REPO / "workspace.yaml"),
            "-j",
            "recheck_links",
            "--tags",
            '{"dagster/partition": "03"}',
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    from dagster import RunsFilter

    runs = prod_instance.get_runs(RunsFilter(job_name="recheck_links"))
    assert len(runs) == 1
    run = runs[0]
    assert run.status == DagsterRunStatus.QUEUED
    with postgres.connect() as con, con.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (run.run_id,))
        assert cur.fetchall() == [("QUEUED",)]
        cur.execute("SELECT key, value FROM run_tags WHERE run_id = %s", (run.run_id,))
        tags = cur.fetchall()
        assert ("moodscape/resource", "network") in tags and ("dagster/partition", "03") in tags
        cur.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
            (run.run_id, DagsterEventType.RUN_ENQUEUED.value),
        )
        enqueued_events = cur.fetchone()[0]
    con.close()
    assert enqueued_events == 1
    assert prod_instance.run_coordinator.cancel_run(run.run_id)
    assert prod_instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED
