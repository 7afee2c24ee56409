"""The heal assets against real HTTP: a loopback server plays a music site (allowed explicitly)."""

import threading
from datetime import datetime, timedelta, timezone
from http.server import ThreadingHTTPServer

import polars as pl
import pytest

from pipelines import schema as S
from pipelines.heal import democorpus
from pipelines.store import DATA_DIR
from tests.helpers import LoopbackHandler

pytestmark = pytest.mark.integration


class _Site(LoopbackHandler):
    seen: list[str] = []  # every request path, in order (cleared per test by the fixture)

    def _answer(self) -> None:
        _Site.seen.append(self.path)
        if self.path.startswith("/moved/"):
            self.reply(301, headers={"Location": "/tracks/" + self.path.rsplit("/", 1)[-1]})
        elif self.path.startswith("/tracks/"):
            self.reply(200)
        else:
            self.reply(404)

    do_HEAD = _answer
    do_GET = _answer


@pytest.fixture()
def site():
    _Site.seen.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


WANTED = ("raw_tracks", "link_checks", "track_link_status", "audio_features", "music_tracks")


def _materialize(crawl, *, select=WANTED, shards=None):
    """Every link-check shard (or ``shards``) and the selected assets, the way `moodscape materialize` builds them."""
    from assets.build import materialize_all
    from assets.settings import MoodscapeSettings

    settings = MoodscapeSettings(crawl=str(crawl), link_allow_hosts="127.0.0.1")
    return materialize_all(resources={"settings": settings}, select=select, shards=shards, raise_on_error=False)


def _ok(results) -> bool:
    return bool(results) and all(r.success for r in results)


def _history():
    """The union of every shard's check history in the store."""
    from pipelines.heal.links.status import union_histories
    from pipelines.store import batch_table_paths

    return union_histories(histories=[pl.read_parquet(p) for p in batch_table_paths("link_history")])


def _meta(results, node: str):
    return [m.metadata for r in results for m in r.asset_materializations_for_node(node)]


def test_link_status_and_moved_urls_flow_into_music_tracks(site, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MOODSCAPE_HOME", str(tmp_path / "home"))
    rows = democorpus.musiccaps_rows(data_dir=DATA_DIR).head(3)
    urls = [f"{site}/tracks/a", f"{site}/moved/b", f"{site}/gone/c"]
    rows.with_columns(pl.Series(S.PERMALINK_URL, urls)).write_csv(tmp_path / "crawl.csv")
    results = _materialize(tmp_path / "crawl.csv")
    assert _ok(results)
    from pipelines.store import table_path

    music = pl.read_parquet(table_path("music_tracks")).sort("permalink_url_original")
    by_url = {r["permalink_url_original"]: r for r in music.iter_rows(named=True)}
    assert by_url[urls[0]][S.URL_STATUS] == "VALID" and by_url[urls[0]][S.PERMALINK_URL] == urls[0]
    assert by_url[urls[1]][S.URL_STATUS] == "MOVED" and by_url[urls[1]][S.PERMALINK_URL] == f"{site}/tracks/b"
    # one 404 is SUSPECT: still served, with its reason
    assert by_url[urls[2]][S.URL_STATUS] == "SUSPECT" and by_url[urls[2]][S.PERMALINK_URL] == urls[2]
    checks = [c for r in results for c in r.get_asset_check_evaluations()]
    assert len(checks) == 8 and {c.check_name for c in checks} == {"link_check_error_rate"}
    assert all(c.passed for c in checks)  # every request got an HTTP answer: no network errors
    shard_meta = _meta(results, "link_checks")
    assert sum(m["checks_made"].value for m in shard_meta) == 3 and all(
        m["errors_fraction"].value == 0.0 for m in shard_meta
    )
    (meta,) = _meta(results, "track_link_status")
    assert "| SUSPECT | http_404 | 1 |" in meta["reasons"].value and meta["suspect"].value == 1


def test_confirmed_dead_link_is_resolved_from_the_catalogue(site, tmp_path, monkeypatch) -> None:
    """A dead re-upload of a real track (same title and artist as a live row) gets the live URL once
    its death is confirmed by a second check a day after an earlier 404."""
    from pipelines.heal.links.status import HISTORY_SCHEMA
    from pipelines.store import batch_table_paths, table_path, write_table

    monkeypatch.setenv("MOODSCAPE_HOME", str(tmp_path / "home"))
    lib = democorpus.librosa_rows(data_dir=DATA_DIR).filter(pl.col(S.TITLE).is_in(["Vibe Ace", "Choice"]))
    if lib.height != 2:
        pytest.skip("librosa example rows not available")
    lib = lib.sort(S.TITLE).with_columns(
        pl.lit(None, dtype=pl.Utf8).alias(S.AUDIO_PATH), pl.lit(None, dtype=pl.Utf8).alias(S.TRACK_ID)
    )
    live_url, dead_url, lone_dead = f"{site}/tracks/vibe", f"{site}/gone/vibe", f"{site}/gone/choice"
    crawl = pl.concat(
        [
            lib.filter(pl.col(S.TITLE) == "Vibe Ace").with_columns(pl.lit(live_url).alias(S.PERMALINK_URL)),
            lib.filter(pl.col(S.TITLE) == "Vibe Ace").with_columns(pl.lit(dead_url).alias(S.PERMALINK_URL)),
            lib.filter(pl.col(S.TITLE) == "Choice").with_columns(pl.lit(lone_dead).alias(S.PERMALINK_URL)),
        ]
    )
    crawl.write_csv(tmp_path / "crawl.csv")
    assert _ok(_materialize(tmp_path / "crawl.csv"))
    raw = pl.read_parquet(table_path("raw_tracks"))
    id_of = dict(zip(raw[S.PERMALINK_URL].to_list(), raw[S.TRACK_ID].to_list()))
    status = pl.read_parquet(table_path("track_link_status"))
    assert dict(zip(status["url"].to_list(), status[S.URL_STATUS].to_list())) == {
        live_url: "VALID",
        dead_url: "SUSPECT",
        lone_dead: "SUSPECT",
    }
    # move the first 404s two days back (as if this run were then), so the next run confirms them
    hist = _history()
    then = (datetime.now(timezone.utc) - timedelta(days=2)).isoformat(timespec="seconds")
    for path in batch_table_paths("link_history"):
        shard = pl.read_parquet(path)
        write_table(shard.with_columns(pl.lit(then).alias(S.CHECKED_AT)).cast(HISTORY_SCHEMA), path)
    assert _ok(_materialize(tmp_path / "crawl.csv"))
    music = pl.read_parquet(table_path("music_tracks"))
    by_id = {r[S.TRACK_ID]: r for r in music.iter_rows(named=True)}
    reup = by_id[id_of[dead_url]]
    assert reup[S.PERMALINK_URL] == live_url and reup[S.URL_ORIGINAL] == dead_url
    assert reup[S.URL_RESOLUTION_SOURCE] == "catalogue" and reup[S.URL_RESOLUTION_SCORE] == 1.0
    assert reup[S.URL_RESOLVED_FROM] == id_of[live_url] and reup[S.URL_STATUS] == "VALID"
    lone = by_id[id_of[lone_dead]]
    assert lone[S.URL_STATUS] == "DEAD" and lone[S.PERMALINK_URL] == lone_dead and lone[S.URL_RESOLUTION_SOURCE] is None
    hist2 = _history()
    assert hist2.height == hist.height + 2  # append-only: the two SUSPECT links were re-checked, VALID was fresh


def test_shards_check_only_their_tracks_and_status_unions_them(site, tmp_path, monkeypatch) -> None:
    """Two shard partitions materialized on their own: each requests only its own tracks' URLs and
    appends to its own history; track_link_status unions them (and a pre-sharding history file)."""
    from pipelines.heal.links.status import HISTORY_SCHEMA, shard_of
    from pipelines.store import table_path, write_table

    monkeypatch.setenv("MOODSCAPE_HOME", str(tmp_path / "home"))
    rows = democorpus.musiccaps_rows(data_dir=DATA_DIR).head(24)
    urls = [f"{site}/tracks/{i}" if i % 3 else f"{site}/gone/{i}" for i in range(rows.height)]
    rows.with_columns(pl.Series(S.PERMALINK_URL, urls)).write_csv(tmp_path / "crawl.csv")
    assert _ok(_materialize(tmp_path / "crawl.csv", select=["raw_tracks"]))
    raw = pl.read_parquet(table_path("raw_tracks"))
    shard_by_id = {t: shard_of(track_id=t) for t in raw[S.TRACK_ID].to_list()}
    by_shard: dict[str, set[str]] = {}
    for t, k in shard_by_id.items():
        by_shard.setdefault(k, set()).add(t)
    two = sorted(by_shard, key=lambda k: (-len(by_shard[k]), k))[:2]
    assert all(by_shard[k] for k in two)
    # a store from before sharding: one track of a third shard was checked (VALID) yesterday
    third = next(k for k in sorted(by_shard) if k not in two)
    legacy_id = sorted(by_shard[third])[0]
    legacy_url = raw.filter(pl.col(S.TRACK_ID) == legacy_id)[S.PERMALINK_URL][0]
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat(timespec="seconds")
    write_table(
        pl.DataFrame(
            [
                {
                    S.TRACK_ID: legacy_id,
                    "url": legacy_url,
                    S.URL_STATUS: "VALID",
                    S.HTTP_CODE: 200,
                    S.FINAL_URL: None,
                    S.REASON: None,
                    S.CHECKED_AT: yesterday,
                }
            ],
            schema=HISTORY_SCHEMA,
        ),
        table_path("link_status_history"),
    )

    assert not _Site.seen  # ingest alone sends nothing
    results = _materialize(tmp_path / "crawl.csv", select=["link_checks", "track_link_status"], shards=two)
    assert _ok(results) and len(results) == 3  # two shard runs, then the status
    url_of = dict(zip(raw[S.TRACK_ID].to_list(), raw[S.PERMALINK_URL].to_list()))
    wanted_paths = {url_of[t].removeprefix(site) for k in two for t in by_shard[k]}
    assert set(_Site.seen) == wanted_paths  # the server saw exactly the two shards' links
    for k, meta in zip(two, _meta(results, "link_checks")):
        own = pl.read_parquet(table_path("link_history", k))
        assert set(own[S.TRACK_ID].to_list()) == by_shard[k]  # exactly its own tracks, each checked once
        assert own.height == len(by_shard[k]) and meta["shard"].value == k and meta["checks_made"].value == own.height
        assert pl.read_parquet(table_path("link_check_last_run", k)).height == own.height
    assert sorted(p.stem for p in (table_path("link_history", "x").parent).glob("*.parquet")) == sorted(two)
    status = pl.read_parquet(table_path("track_link_status"))
    got = dict(zip(status[S.TRACK_ID].to_list(), status[S.URL_STATUS].to_list()))
    checked = by_shard[two[0]] | by_shard[two[1]]
    for t, s in got.items():
        url = raw.filter(pl.col(S.TRACK_ID) == t)[S.PERMALINK_URL][0]
        if t in checked:
            assert s == ("SUSPECT" if "/gone/" in url else "VALID")
        elif t == legacy_id:
            assert s == "VALID"  # the legacy history still counts
        else:
            assert s == "UNKNOWN"  # its shard has not run yet
    (meta,) = _meta(results, "track_link_status")
    assert meta["history_rows"].value == len(checked) + 1 and meta["shards_with_history"].value == sorted(two)

    # the legacy row keeps its track fresh: its shard's run does not re-check it
    third_run = _materialize(tmp_path / "crawl.csv", select=["link_checks"], shards=[third])
    assert _ok(third_run)
    assert set(pl.read_parquet(table_path("link_history", third))[S.TRACK_ID].to_list()) == by_shard[third] - {
        legacy_id
    }
