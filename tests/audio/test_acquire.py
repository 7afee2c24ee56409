"""Which audio a run analyses and how fetch runs cover a crawl: candidates from the link status,
successive budgeted runs over real loopback pages, backoff of retryable failures, offline runs."""

from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl

from pipelines import schema as S
from pipelines.audio.acquire import acquire_audio, feature_cache_name, fetch_candidates, run_fetches
from pipelines.audio.fetch import FetchConfig
from pipelines.audio.plan import ATTEMPTS, NEXT_ATTEMPT_AT, PAGE_URL, PATH, PENDING, Backoff
from pipelines.net.policy import NetworkPolicy
from tests.audio.track_pages import html, loopback_hosts, small_clips
from tests.net.loopback import Route

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
HOSTS = ("127.0.0.2", "127.0.0.3")
POLICY = NetworkPolicy(allow_hosts=frozenset(HOSTS))
FAST = FetchConfig(connect_timeout_s=2.0, read_timeout_s=2.0, timeout_s=10.0, min_interval_s=0.0)


def _raw() -> pl.DataFrame:
    return pl.DataFrame(
        {
            S.TRACK_ID: ["local", "valid", "moved", "dead", "nourl", "unchecked"],
            S.AUDIO_PATH: ["/a.ogg", None, None, None, None, None],
            S.PERMALINK_URL: ["http://h/l", "http://h/v", "http://h/m", "http://h/d", None, "http://h/u"],
        }
    )


def _status() -> pl.DataFrame:
    return pl.DataFrame(
        {
            S.TRACK_ID: ["local", "valid", "moved", "dead", "nourl"],
            S.URL_STATUS: ["VALID", "VALID", "MOVED", "SUSPECT", "UNKNOWN"],
            S.FINAL_URL: [None, None, "http://h/m2", None, None],
            S.REASON: ["ok", "ok", "redirected", "http_404", "no_url"],
        }
    )


def test_fetch_candidates_are_tracks_without_local_audio_with_why_not_live() -> None:
    got = fetch_candidates(raw=_raw(), status=_status())
    assert got.rows() == [
        ("valid", "http://h/v", None), ("moved", "http://h/m2", None), ("dead", "http://h/d", "link_suspect:http_404"),
        ("nourl", None, "no_url"), ("unchecked", "http://h/u", "link_unknown"),
    ]
    assert got.columns == [S.TRACK_ID, PAGE_URL, PENDING]
    nothing_checked = fetch_candidates(raw=_raw(), status=None)
    assert nothing_checked.filter(pl.col(PENDING).is_null()).height == 0  # no link status yet: nothing is live


def test_acquire_uses_local_files_and_downloads_still_on_disk(tmp_path: Path) -> None:
    kept = tmp_path / "v.ogg"
    kept.write_bytes(b"OggS")
    table = pl.DataFrame({S.TRACK_ID: ["valid", "moved", "dead", "stranger"], S.REASON: ["ok", "ok", "http_404", "ok"],
                          PATH: [str(kept), str(tmp_path / "deleted.ogg"), None, str(kept)]})
    got = acquire_audio(raw=_raw(), fetch_table=table)
    assert got.items == [("local", "/a.ogg"), ("valid", str(kept))] and (got.local, got.fetched) == (1, 1)
    assert got.origin == {"local": "local", "valid": "fetched"}
    assert sorted(got.without_audio[S.TRACK_ID].to_list()) == ["dead", "moved"]  # "stranger" is not in the crawl


def _crawl(servers, n: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``n`` tracks per server, each link a page of that server; every link VALID."""
    ids = [f"{i}-{j}" for i in range(len(servers)) for j in range(n)]
    urls = [f"{srv.base}/t/{j}" for srv in servers for j in range(n)]
    raw = pl.DataFrame({S.TRACK_ID: ids, S.AUDIO_PATH: [None] * len(ids), S.PERMALINK_URL: urls},
                       schema_overrides={S.AUDIO_PATH: pl.Utf8})
    status = pl.DataFrame({S.TRACK_ID: ids, S.URL_STATUS: ["VALID"] * len(ids), S.FINAL_URL: [None] * len(ids),
                           S.REASON: ["ok"] * len(ids)}, schema_overrides={S.FINAL_URL: pl.Utf8})
    return raw, status


def _pages(clip: Path, n: int) -> dict[str, Route]:
    data = clip.read_bytes()
    routes: dict[str, Route] = {}
    for j in range(n):
        routes[f"/t/{j}"] = lambda h, j=j: h.reply(200, body=html(body=f'<audio src="/a/{j}.ogg"></audio>'),
                                                   ctype="text/html")
        routes[f"/a/{j}.ogg"] = lambda h: h.reply(200, body=data, ctype="audio/ogg")
    routes["/t/2"] = lambda h: h.reply(200, body=html(body="no audio here"), ctype="text/html")
    return routes


def test_budgeted_runs_cover_the_crawl_and_then_ask_nothing(tmp_path: Path) -> None:
    with loopback_hosts(*HOSTS, routes=_pages(small_clips(1)[0], 3)) as servers:
        raw, status = _crawl(servers, 3)
        kw = dict(raw=raw, status=status, dest=tmp_path, policy=POLICY, config=FAST, budget=4, deadline_s=None)
        first = run_fetches(table=None, now=NOW, **kw)
        asked_first = [u for _, u in first.plan.todo]
        assert len(asked_first) == 4 and len(first.resolutions) == 4
        # hosts interleaved: both servers are asked in the first run
        assert {srv.base for srv in servers} == {u.rsplit("/t/", 1)[0] for u in asked_first}
        assert first.table.filter(pl.col(S.REASON) == "not_tried_yet").height == 2
        second = run_fetches(table=first.table, now=NOW + timedelta(minutes=5), **kw)
        asked_second = [u for _, u in second.plan.todo]
        assert sorted(asked_first + asked_second) == sorted(raw[S.PERMALINK_URL].to_list())  # the whole crawl, once
        table = second.table
        reasons = dict(zip(table[S.TRACK_ID].to_list(), table[S.REASON].to_list()))
        assert reasons == {tid: "page_without_audio" if tid.endswith("-2") else "ok" for tid in raw[S.TRACK_ID]}
        assert table.filter(pl.col(PATH).is_not_null())[ATTEMPTS].to_list() == [1] * 4
        # a third run, much later: downloads are kept, pages without audio are not asked again
        hits = [srv.paths() for srv in servers]
        third = run_fetches(table=table, now=NOW + timedelta(days=60), **kw)
        assert third.plan.todo == [] and [srv.paths() for srv in servers] == hits
        assert third.table.equals(table)
        got = acquire_audio(raw=raw, fetch_table=third.table)
        assert got.fetched == 4 and all(Path(p).read_bytes() == small_clips(1)[0].read_bytes() for _, p in got.items)


def test_retryable_failures_back_off_and_then_succeed(tmp_path: Path) -> None:
    clip = small_clips(1)[0]
    state = {"up": False}

    def flaky(h) -> None:
        if state["up"]:
            h.reply(200, body=html(body='<audio src="/a.ogg"></audio>'), ctype="text/html")
        else:
            h.reply(503, body=b"busy")

    routes = {"/t/flaky": flaky, "/t/gone": lambda h: h.reply(404),
              "/a.ogg": lambda h: h.reply(200, body=clip.read_bytes(), ctype="audio/ogg")}
    with loopback_hosts(HOSTS[0], routes=routes) as (srv,):
        raw = pl.DataFrame({S.TRACK_ID: ["flaky", "gone"], S.AUDIO_PATH: [None, None],
                            S.PERMALINK_URL: [f"{srv.base}/t/flaky", f"{srv.base}/t/gone"]},
                           schema_overrides={S.AUDIO_PATH: pl.Utf8})
        status = pl.DataFrame({S.TRACK_ID: ["flaky", "gone"], S.URL_STATUS: ["VALID", "VALID"],
                               S.FINAL_URL: [None, None], S.REASON: ["ok", "ok"]},
                              schema_overrides={S.FINAL_URL: pl.Utf8})
        backoff = Backoff(base_s=3600, cap_s=86400)
        kw = dict(raw=raw, status=status, dest=tmp_path, policy=POLICY, config=FAST, budget=10, deadline_s=None,
                  backoff=backoff)

        def row(table: pl.DataFrame, tid: str) -> dict:
            return table.filter(pl.col(S.TRACK_ID) == tid).row(0, named=True)

        t1 = run_fetches(table=None, now=NOW, **kw).table
        assert (row(t1, "flaky")[S.REASON], row(t1, "flaky")[ATTEMPTS]) == ("http_503", 1)
        assert datetime.fromisoformat(row(t1, "flaky")[NEXT_ATTEMPT_AT]) == NOW + timedelta(hours=1)
        assert (row(t1, "gone")[S.REASON], row(t1, "gone")[NEXT_ATTEMPT_AT]) == ("http_404", None)
        assert srv.paths() == ["/t/flaky", "/t/gone"] or srv.paths() == ["/t/gone", "/t/flaky"]
        t2 = run_fetches(table=t1, now=NOW + timedelta(minutes=30), **kw).table  # backoff not over: no request
        assert t2.equals(t1) and len(srv.paths()) == 2
        t3 = run_fetches(table=t2, now=NOW + timedelta(hours=1), **kw).table  # due again, still failing
        assert row(t3, "flaky")[ATTEMPTS] == 2 and srv.paths()[2:] == ["/t/flaky"]
        assert datetime.fromisoformat(row(t3, "flaky")[NEXT_ATTEMPT_AT]) == NOW + timedelta(hours=3)  # 1 h + 2 h
        state["up"] = True
        t4 = run_fetches(table=t3, now=NOW + timedelta(hours=3), **kw).table
        assert (row(t4, "flaky")[S.REASON], row(t4, "flaky")[ATTEMPTS], row(t4, "flaky")[NEXT_ATTEMPT_AT]) == (
            "ok", 3, None)
        assert srv.paths()[3:] == ["/t/flaky", "/a.ogg"]  # the 404 page was never asked again
        assert Path(row(t4, "flaky")[PATH]).read_bytes() == clip.read_bytes()


def test_offline_run_sends_nothing_and_says_why(tmp_path: Path) -> None:
    with loopback_hosts(HOSTS[0], routes=_pages(small_clips(1)[0], 2)) as (srv,):
        raw, status = _crawl([srv], 2)
        run = run_fetches(raw=raw, status=status, table=None, dest=tmp_path, policy=POLICY,
                          config=FetchConfig(offline=True), budget=10, deadline_s=None, now=NOW)
        assert srv.hits == [] and run.resolutions == {}
        assert run.table[S.REASON].to_list() == ["offline", "offline"] and run.table[ATTEMPTS].to_list() == [0, 0]


def test_feature_cache_is_one_table_per_offset() -> None:
    assert feature_cache_name(0.0) == "audio_feature_cache"
    assert feature_cache_name(30.0) == "audio_feature_cache_offset_30s" != feature_cache_name(12.5)
