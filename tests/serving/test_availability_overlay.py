"""Availability without a rebuild: the real ``recheck_links`` job checks links on a loopback site and
publishes the availability overlay; the running service (uvicorn on loopback) stops serving a
track whose link died and serves it again once it recovers, without a new store version."""

import shutil
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import polars as pl
import pytest

from pipelines import schema as S
from pipelines import store
from pipelines.heal.links.status import HISTORY_SCHEMA, shard_of
from pipelines.index import bundle as B
from pipelines.rank.recommender import Recommender
from serving.app import create_app
from serving.cache import ResponseCache
from serving.settings import ServingSettings
from tests.helpers import LoopbackHandler, http_on_loopback, uvicorn_on_loopback

pytestmark = pytest.mark.integration

WAIT_S = 60.0  # deadline of each wait for the service to catch up (polled, never asserted as a duration)


class _Site(LoopbackHandler):
    """A music site: ``/t/<row>`` answers ``codes[path]`` (200 unless set)."""

    codes: dict[str, int] = {}

    def _answer(self) -> None:
        self.reply(_Site.codes.get(self.path, 200), body=b"track")

    do_HEAD = _answer
    do_GET = _answer


@pytest.fixture()
def site():
    _Site.codes = {}
    with http_on_loopback(_Site) as base:
        yield base


def _publish(*, bundle_dir: Path, layout: store.StoreLayout, site: str) -> pl.DataFrame:
    """The test bundle published as version ``v1`` with its links on ``site``; its tracks."""
    folder = layout.version_dir("v1")
    shutil.copytree(bundle_dir, folder)
    tracks = pl.read_parquet(folder / B.TRACKS_FILE)
    tracks = tracks.with_columns(pl.format(f"{site}/t/{{}}", pl.int_range(pl.len())).alias(S.PERMALINK_URL))
    tracks.write_parquet(folder / B.TRACKS_FILE)
    layout.publish("v1")
    return tracks


def _run_recheck(*, home: Path, shard: str) -> None:
    """The real ``recheck_links`` job, in-process, for one shard of the store under ``home``."""
    from dagster import Definitions

    from assets.build import all_assets, all_checks
    from assets.jobs import link_recheck_job
    from assets.resources import resources_for
    from assets.settings import MoodscapeSettings

    defs = Definitions(
        assets=all_assets, asset_checks=all_checks, jobs=[link_recheck_job],
        resources=resources_for("test", home_dir=home, settings=MoodscapeSettings(link_allow_hosts="127.0.0.1")),
    )
    result = defs.resolve_job_def(link_recheck_job.name).execute_in_process(partition_key=shard)
    assert result.success


def _age_history(layout: store.StoreLayout, *, days: float) -> None:
    """Move every recorded check ``days`` into the past (as if that much time had gone by)."""
    for path in layout.batch_tables("link_history"):
        h = pl.read_parquet(path)
        then = (pl.col(S.CHECKED_AT).str.to_datetime(time_zone="UTC") - timedelta(days=days)).dt.strftime(
            "%Y-%m-%dT%H:%M:%S+00:00")
        store.write_table(h.with_columns(then.alias(S.CHECKED_AT)).cast(HISTORY_SCHEMA), path)


def _wait(what: str, ok: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not ok():
        assert time.monotonic() < deadline, f"the service never {what}"
        time.sleep(0.05)


def test_dead_link_leaves_and_recovered_link_returns_without_a_rebuild(
    site, tmp_path, monkeypatch, bundle_dir, mood_adapter
) -> None:
    monkeypatch.setenv("MOODSCAPE_DEAD_CONFIRM_HOURS", "0")  # one 404 confirms a death here
    home = tmp_path / "home"
    layout = store.StoreLayout.under_home(home)
    tracks = _publish(bundle_dir=bundle_dir, layout=layout, site=site)
    rows = tracks.with_row_index("row").with_columns(
        pl.col(S.TRACK_ID).map_elements(lambda t: shard_of(track_id=t), return_dtype=pl.Utf8).alias("shard")
    )
    shard = rows.filter(pl.col(S.URL_STATUS) == S.DEAD)["shard"][0]
    crawl = rows.filter(pl.col("shard") == shard).head(12)  # one shard of the crawl, a dozen links
    dead_at_publish = crawl.filter(pl.col(S.URL_STATUS) == S.DEAD).row(0, named=True)  # its link is fine
    live = crawl.filter(pl.col(S.URL_STATUS) != S.DEAD).row(0, named=True)  # its link will die
    n_dead = crawl.filter(pl.col(S.URL_STATUS) == S.DEAD).height  # each answers 200: back in the overlay
    store.write_table(crawl.select(S.TRACK_ID, S.PERMALINK_URL), layout.table("raw_tracks"))

    app = create_app(
        store_root=layout.root, settings=ServingSettings(reload_interval_s=0.1), cache=ResponseCache(capacity=256),
        recommender_factory=lambda b: Recommender(b, query_mood=mood_adapter),
    )
    with uvicorn_on_loopback(app) as base, httpx.Client(base_url=base, timeout=60) as http:

        def seen(track: dict, *, filtered: bool = False) -> tuple[bool, bool]:
            """(its own text recommends the track, its page answers), the response cache on."""
            body = {"query": track[S.TEXT_DOC], "top_k": 20}
            if filtered:  # a filtered request takes the allow-list's SQL path
                body["filters"] = {"exclude_artists": ["nobody at all"]}
            r = http.post("/recommend", json=body)
            assert r.status_code == 200, r.text
            page = http.get(f"/tracks/{track[S.TRACK_ID]}")
            assert page.status_code in (200, 404), page.text
            return track[S.TRACK_ID] in {t["track_id"] for t in r.json()["results"]}, page.status_code == 200

        def served(track: dict, *, filtered: bool = False) -> bool:
            """Whether the track is recommended and its page answers (both or neither)."""
            listed, page = seen(track, filtered=filtered)
            assert listed == page, (track[S.TRACK_ID], listed, page)
            return listed

        def overlay_version() -> str | None:
            info = http.get("/health").json()["availability"]
            return None if info is None else info["version"]

        assert served(live) and served(live, filtered=True)
        assert not served(dead_at_publish) and not served(dead_at_publish, filtered=True)
        asked = http.get(f"/tracks/{dead_at_publish[S.TRACK_ID]}", params={"include_unavailable": True})
        assert asked.status_code == 200 and asked.json()["url_status"] == S.DEAD
        assert overlay_version() is None

        # the live track's link dies; the published-DEAD one answers: one re-check run, no rebuild
        _Site.codes[live[S.PERMALINK_URL].removeprefix(site)] = 404
        _run_recheck(home=home, shard=shard)
        _wait("dropped the dead link", lambda: seen(live) == (False, False))
        assert not served(live, filtered=True)
        assert served(dead_at_publish) and served(dead_at_publish, filtered=True)
        gone = http.get(f"/tracks/{live[S.TRACK_ID]}", params={"include_unavailable": True}).json()
        assert gone["url_status"] == S.DEAD
        health = http.get("/health").json()
        first = health["availability"]
        assert health["store_version"] == "test-v1" and layout.current_version() == "v1"  # the same version
        assert first["base_version"] == "v1" and first["tracks"] == n_dead + 1 and first["dead"] == 1
        assert first["error"] is None and first["age_s"] >= 0

        # a month later the link is back: the next re-check brings the track back
        _Site.codes.clear()
        _age_history(layout, days=31)
        _run_recheck(home=home, shard=shard)
        _wait("served the recovered link again", lambda: seen(live) == (True, True))
        assert served(live, filtered=True) and served(dead_at_publish)
        second = http.get("/health").json()["availability"]
        assert second["version"] > first["version"] and second["tracks"] == n_dead and second["dead"] == 0

        # a torn overlay file, then none at all: the last good overlay keeps serving
        layout.availability_overlay.write_bytes(b"not parquet")
        _wait("reported the unreadable overlay", lambda: http.get("/health").json()["availability"]["error"])
        assert overlay_version() == second["version"] and served(live) and served(dead_at_publish)
        layout.availability_overlay.unlink()
        _wait("reported the missing overlay",
              lambda: "missing" in (http.get("/health").json()["availability"]["error"] or ""))
        assert overlay_version() == second["version"] and served(dead_at_publish)
    assert datetime.fromisoformat(second["version"]).tzinfo is not None


def test_overlay_applies_at_startup_and_to_each_new_version(tmp_path, bundle_dir, mood_adapter) -> None:
    """An overlay already in the store is applied before the first request, and again to a version
    published later (until a re-check replaces it)."""
    from litestar.testing import TestClient

    from pipelines.heal.links.overlay import write_overlay

    layout = store.StoreLayout.under_home(tmp_path / "home")
    tracks = _publish(bundle_dir=bundle_dir, layout=layout, site="http://127.0.0.1:9")
    live = tracks.filter(pl.col(S.URL_STATUS) != S.DEAD).row(0, named=True)
    checked = "2026-01-01T00:00:00+00:00"
    table = pl.DataFrame({S.TRACK_ID: [live[S.TRACK_ID]], S.URL_STATUS: [S.DEAD], S.CHECKED_AT: [checked]})
    overlay = write_overlay(table, layout.availability_overlay, base_version="v1")
    app = create_app(
        store_root=layout.root, settings=ServingSettings(reload_interval_s=0.1), cache=ResponseCache(capacity=256),
        recommender_factory=lambda b: Recommender(b, query_mood=mood_adapter),
    )
    body = {"query": live[S.TEXT_DOC], "top_k": 20}
    with TestClient(app=app) as client:
        ids = {t["track_id"] for t in client.post("/recommend", json=body).json()["results"]}
        assert live[S.TRACK_ID] not in ids and client.get(f"/tracks/{live[S.TRACK_ID]}").status_code == 404
        assert client.get("/health").json()["availability"]["version"] == overlay.written_at
        shutil.copytree(layout.version_dir("v1"), layout.version_dir("v2"))
        layout.publish("v2")
        _wait("swapped to v2", lambda: app.state.holder.current.pointer == "v2")
        ids = {t["track_id"] for t in client.post("/recommend", json=body).json()["results"]}
        assert live[S.TRACK_ID] not in ids and client.get(f"/tracks/{live[S.TRACK_ID]}").status_code == 404
        # without the overlay the same version serves it (the query does find it)
        write_overlay(table.head(0), layout.availability_overlay, base_version="v2")
        _wait("applied the empty overlay", lambda: client.get(f"/tracks/{live[S.TRACK_ID]}").status_code == 200)
        ids = {t["track_id"] for t in client.post("/recommend", json=body).json()["results"]}
        assert live[S.TRACK_ID] in ids
