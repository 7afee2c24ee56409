"""The fetch job through the real Dagster materialize path: a crawl whose links are track pages on two
loopback hosts (one per resolver kind, a dead one, one without audio) ends with audio features for
every live track and a reason for every track without."""

from pathlib import Path

import polars as pl
import pytest

from pipelines import schema as S
from pipelines.heal import democorpus
from pipelines.store import DATA_DIR
from tests.audio.track_pages import KINDS, clip_of, loopback_hosts, page_routes, small_clips

pytestmark = pytest.mark.integration
HOSTS = ("127.0.0.2", "127.0.0.3")
WANTED = {"raw_tracks", "link_checks", "track_link_status", "audio_fetch", "audio_features"}


def _node_meta(results, node: str) -> list[dict]:
    return [m.metadata for r in results for m in r.asset_materializations_for_node(node)]


def test_materialize_fetches_track_pages_then_extracts_their_audio(tmp_path: Path, monkeypatch) -> None:
    from assets.build import materialize_all
    from assets.settings import MoodscapeSettings
    from pipelines.audio.plan import PATH, RESOLVER
    from pipelines.store import batch_table_paths, table_path

    clips = small_clips(6)
    monkeypatch.setenv("MOODSCAPE_HOME", str(tmp_path / "home"))
    with loopback_hosts(*HOSTS, routes=page_routes(clips)) as servers:
        paths = [*KINDS, "/t/dead", "/t/no-audio"]
        urls = [f"{servers[i % 2].base}{p}" for i, p in enumerate(paths)]  # pages spread over both hosts
        local = democorpus.librosa_rows(data_dir=DATA_DIR).filter(pl.col(S.AUDIO_PATH).str.contains("Vibe_Ace"))
        crawl = pl.concat([
            democorpus.musiccaps_rows(data_dir=DATA_DIR).head(len(urls)).with_columns(pl.Series(S.PERMALINK_URL, urls)),
            local.head(1),
        ], how="diagonal_relaxed")
        crawl.write_csv(tmp_path / "crawl.csv")
        settings = MoodscapeSettings(crawl=str(tmp_path / "crawl.csv"), link_allow_hosts=",".join(HOSTS), workers=1,
                                     audio_fetch_host_interval_s=0.0)
        runs = materialize_all(resources={"settings": settings}, select=WANTED)
        assert runs and all(r.success for r in runs) and len(runs) == 1 + 8 + 1  # each shard: links, then fetch
        raw = pl.read_parquet(table_path("raw_tracks"))
        tid = dict(zip(raw[S.PERMALINK_URL].to_list(), raw[S.TRACK_ID].to_list()))
        fetch = pl.concat([pl.read_parquet(p) for p in batch_table_paths("audio_fetch")])
        rows = {r[S.TRACK_ID]: r for r in fetch.iter_rows(named=True)}
        assert set(rows) == {tid[u] for u in urls}  # every track without local audio, once
        for url, path in zip(urls, paths):
            row = rows[tid[url]]
            if path in KINDS:
                assert (row[S.REASON], row[RESOLVER]) == ("ok", KINDS[path]), row
                assert Path(row[PATH]).read_bytes() == clip_of(clips)[path].read_bytes()
        assert rows[tid[urls[-2]]][S.REASON] == "link_suspect:http_404"  # the link checker saw a 404: not asked
        assert rows[tid[urls[-1]]][S.REASON] == "page_without_audio"
        assert not [h for srv in servers for h in srv.hits if h[1] == "/t/dead" and h[0] == "GET"]
        feats = pl.read_parquet(table_path("audio_features"))
        by_id = {r[S.TRACK_ID]: r for r in feats.iter_rows(named=True)}
        live = {tid[u] for u, p in zip(urls, paths) if p in KINDS}
        local_id = raw.filter(pl.col(S.AUDIO_PATH).is_not_null())[S.TRACK_ID][0]
        assert set(by_id) == live | {local_id}
        assert all(by_id[t][S.AUDIO_ERROR] is None and by_id[t]["audio_origin"] == "fetched" for t in live)
        assert by_id[local_id]["audio_origin"] == "local"
        (meta,) = _node_meta(runs, "audio_features")
        assert (meta["tracks_with_fetched_audio"].value, meta["tracks_with_local_audio"].value) == (6, 1)
        reasons = meta["without_audio_reasons"].value
        assert "| link_suspect:http_404 | 1 |" in reasons and "| page_without_audio | 1 |" in reasons
        shard_meta = _node_meta(runs, "audio_fetch")
        assert len(shard_meta) == 8 and sum(m["downloaded"].value for m in shard_meta) == 6

        # again (fetch shards and features only): nothing is downloaded or decoded again, no request sent
        hits = [list(srv.hits) for srv in servers]
        again = materialize_all(resources={"settings": settings}, select={"audio_fetch", "audio_features"})
        assert all(r.success for r in again) and [srv.hits for srv in servers] == hits
        (meta2,) = _node_meta(again, "audio_features")
        assert (meta2["tracks_with_fetched_audio"].value, meta2["cache_hits"].value) == (6, 7)


def test_offline_materialize_sends_nothing(tmp_path: Path, monkeypatch) -> None:
    from assets.build import materialize_all
    from assets.settings import MoodscapeSettings
    from pipelines.store import batch_table_paths

    monkeypatch.setenv("MOODSCAPE_HOME", str(tmp_path / "home"))
    with loopback_hosts(HOSTS[0], routes=page_routes(small_clips(6))) as (srv,):
        urls = [f"{srv.base}{p}" for p in KINDS]
        crawl = democorpus.musiccaps_rows(data_dir=DATA_DIR).head(len(urls)).with_columns(
            pl.Series(S.PERMALINK_URL, urls))
        crawl.write_csv(tmp_path / "crawl.csv")
        settings = MoodscapeSettings(crawl=str(tmp_path / "crawl.csv"), link_allow_hosts=HOSTS[0], offline=True,
                                     workers=1)
        runs = materialize_all(resources={"settings": settings}, select=WANTED)
        assert all(r.success for r in runs) and srv.hits == []
        fetch = pl.concat([pl.read_parquet(p) for p in batch_table_paths("audio_fetch")])
        assert fetch.height == len(urls) and set(fetch[S.REASON].to_list()) == {"link_unknown:offline"}
