"""The whole asset graph materialized in-process on a tiny real crawl, then served over HTTP.

The crawl's links are track pages on loopback hosts (one per resolver kind, one without audio, a
dead one): the one build runs online with only those links, so its link checks and audio fetches
talk to the loopback servers and nothing else.
"""

import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl
import pytest

from pipelines import schema as S
from pipelines.heal import democorpus
from pipelines.store import DATA_DIR
from tests.audio.track_pages import KINDS, loopback_hosts, music_clips, page_routes
from tests.net.loopback import LoopbackServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HOSTS = ("127.0.0.2", "127.0.0.3")
DEAD, NO_AUDIO = "/t/dead", "/t/no-audio"
PAGE_PATHS = (*KINDS, DEAD, NO_AUDIO)


class Built(NamedTuple):
    home: Path
    crawl: pl.DataFrame
    results: list
    pages: dict[str, str]  # page path → track id of the crawl row linking to it
    servers: list[LoopbackServer]


def _tiny_crawl(path, *, bases: list[str]) -> tuple[pl.DataFrame, dict[str, str]]:
    """Demo rows without their public links, plus MTG-Jamendo rows linking to track pages on ``bases``."""
    parts = [
        democorpus.musiccaps_rows(data_dir=DATA_DIR).head(60),
        democorpus.jamendo_rows(data_dir=DATA_DIR, limit=60),
        democorpus.immich_rows(data_dir=DATA_DIR).head(12),
        democorpus.librosa_rows(data_dir=DATA_DIR),
    ]
    demo = pl.concat(parts, how="vertical").with_columns(pl.lit(None, pl.String).alias(S.PERMALINK_URL))
    more = democorpus.jamendo_rows(data_dir=DATA_DIR, limit=60 + len(PAGE_PATHS))
    paged = more.filter(~pl.col(S.TRACK_ID).is_in(demo.get_column(S.TRACK_ID).to_list()))
    assert paged.height == len(PAGE_PATHS) and paged.get_column(S.AUDIO_PATH).is_null().all()
    urls = [f"{bases[i % len(bases)]}{p}" for i, p in enumerate(PAGE_PATHS)]  # pages spread over the hosts
    paged = paged.with_columns(pl.Series(S.PERMALINK_URL, urls))
    crawl = pl.concat([demo, paged], how="vertical")
    crawl.write_csv(path)
    return crawl, dict(zip(PAGE_PATHS, paged.get_column(S.TRACK_ID).to_list()))


@pytest.fixture(scope="module")
def built_store(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    crawl_path = home / "crawl.csv"
    mp = pytest.MonkeyPatch()
    mp.setenv("MOODSCAPE_HOME", str(home))
    from assets.build import materialize_all
    from assets.settings import MoodscapeSettings

    with loopback_hosts(*HOSTS, routes=page_routes(music_clips(len(KINDS)))) as servers:
        crawl, pages = _tiny_crawl(crawl_path, bases=[srv.base for srv in servers])
        # Online, but the only links in the crawl are the loopback pages (allowed by name): nothing
        # else is asked. No pause between a host's requests: the servers are ours.
        settings = MoodscapeSettings(
            crawl=str(crawl_path), offline=False, link_allow_hosts=",".join(HOSTS), audio_fetch_host_interval_s=0.0,
            emopia_limit=16, workers=2, query_mood_train_limit=1500,
        )
        # evaluation_report is exercised by tests/test_evaluate_cli.py (it builds stores of its own)
        results = materialize_all(
            resources={"settings": settings}, exclude={"evaluation_report"}, raise_on_error=False
        )
        assert results and all(r.success for r in results)
        yield Built(home=home, crawl=crawl, results=results, pages=pages, servers=servers)
    mp.undo()


def test_graph_materializes_and_publishes(built_store) -> None:
    crawl, results, pages = built_store.crawl, built_store.results, built_store.pages
    from pipelines import store
    from pipelines.index.bundle import load_bundle

    version = store.read_current_version()
    assert version is not None
    bundle = load_bundle(store.current_version_dir())
    tracks = bundle.tracks
    ids = set(tracks.get_column(S.TRACK_ID).to_list())
    # speech, whale, bird and dog recordings are filtered out as non-music
    non_music = pl.read_parquet(store.table_path("non_music"))
    assert non_music.height >= 4
    assert not (ids & set(non_music.get_column(S.TRACK_ID).to_list()))
    assert tracks.height == len(crawl) - non_music.height
    va = tracks.select(S.VALENCE, S.AROUSAL).to_numpy()
    assert np.isfinite(va).all() and (np.abs(va) <= 1).all()
    sources = set(tracks.get_column(S.MOOD_SOURCE).unique().to_list())
    assert sources <= {"audio", "text", "imputed", "genre", "artist", "fused"}
    # the pages answered (VALID, with or without audio); one 404 makes the dead link SUSPECT, still served;
    # the other tracks have no link and were never asked
    status = dict(zip(tracks.get_column(S.TRACK_ID).to_list(), tracks.get_column(S.URL_STATUS).to_list()))
    assert {p: status[t] for p, t in pages.items()} == {p: S.LINK_SUSPECT if p == DEAD else S.VALID for p in pages}
    assert all(status[t] == S.UNKNOWN for t in ids - set(pages.values()))
    link = pl.read_parquet(store.table_path("track_link_status"))
    assert set(link.filter(~pl.col(S.TRACK_ID).is_in(list(pages.values())))[S.REASON].to_list()) == {"no_url"}
    # audio-bearing tracks got extracted features; others imputed, and say so
    sources = dict(zip(tracks.get_column(S.TRACK_ID).to_list(), tracks.get_column(S.AUDIO_SOURCE).to_list()))
    assert all(sources[t] == "extracted" for t in ids if t.startswith("immich:"))
    assert all(sources[t] != "extracted" for t in ids if t.startswith("musiccaps:"))
    manifest = json.loads((store.current_version_dir() / "manifest.json").read_text())
    assert manifest["counts"]["tracks"] == tracks.height
    assert manifest["indices"]["text"]["dims"] == 384
    # ingest, then one run per shard (link checks, then audio fetches; every track recorded once), then the rest
    assert len(results) == 1 + 8 + 1
    shard_meta = [m.metadata for r in results for m in r.asset_materializations_for_node("link_checks")]
    assert sorted(m["shard"].value for m in shard_meta) == [f"{i:02d}" for i in range(8)]
    assert sum(m["checks_made"].value for m in shard_meta) == len(crawl)
    assert sum(m["tracks_in_shard"].value for m in shard_meta) == len(crawl)
    assert len(store.batch_table_paths("link_history")) == 8
    checks = [e for r in results for e in r.get_asset_check_evaluations()]
    assert {c.check_name for c in checks} == {
        "text_index_recall",
        "audio_index_recall",
        "mood_index_recall",
        "link_check_error_rate",
    }
    assert all(c.passed for c in checks)


def test_every_live_page_track_has_audio_features_and_a_mood_from_its_recording(built_store) -> None:
    """Each resolver kind's page led to its recording: librosa and backbone features, and a mood with
    audio evidence from that recording. The page without audio and the dead link say why they have no
    audio in ``audio_fetch`` and still get a mood from their other evidence (text, imputed audio)."""
    from pipelines import store
    from pipelines.audio.acquire import AUDIO_ORIGIN, FETCHED
    from pipelines.audio.backbone import BACKBONE_COLUMNS, EMBED_DIM, MSD_TAGS, MTT_TAGS
    from pipelines.audio.plan import RESOLVER

    pages = built_store.pages
    fetch = pl.concat([pl.read_parquet(p) for p in store.batch_table_paths("audio_fetch")])
    fetched = {r[S.TRACK_ID]: r for r in fetch.iter_rows(named=True)}
    feats = {r[S.TRACK_ID]: r for r in pl.read_parquet(store.table_path("audio_features")).iter_rows(named=True)}
    imputed = pl.read_parquet(store.table_path("audio_features_imputed"))
    audio_source = dict(zip(imputed[S.TRACK_ID].to_list(), imputed[S.AUDIO_SOURCE].to_list()))
    moods = {r[S.TRACK_ID]: r for r in pl.read_parquet(store.table_path("track_moods")).iter_rows(named=True)}
    sizes = {"msd_tags": len(MSD_TAGS), "mtt_tags": len(MTT_TAGS), "msd_embedding": EMBED_DIM,
             "mtt_embedding": EMBED_DIM}
    for path, resolver in KINDS.items():
        tid = pages[path]
        assert (fetched[tid][S.REASON], fetched[tid][RESOLVER]) == ("ok", resolver), fetched[tid]
        row = feats[tid]
        assert row[S.AUDIO_ERROR] is None and row[AUDIO_ORIGIN] == FETCHED, row
        for col in BACKBONE_COLUMNS:
            vec = np.asarray(row[col], dtype=np.float64)
            assert vec.shape == (sizes[col],) and np.isfinite(vec).all(), (path, col)
        assert audio_source[tid] == "extracted"  # the mood's audio evidence is the recording, not imputed
        assert moods[tid][S.MOOD_SOURCE] in {"audio", "fused"} and moods[tid][S.MOOD_CONFIDENCE] > 0, moods[tid]
    assert fetched[pages[DEAD]][S.REASON] == "link_suspect:http_404"  # the link checker saw the 404: not asked
    assert fetched[pages[NO_AUDIO]][S.REASON] == "page_without_audio"
    for path in (DEAD, NO_AUDIO):
        tid = pages[path]
        assert tid not in feats and audio_source[tid] != "extracted"
        assert moods[tid][S.MOOD_SOURCE] in {"text", "fused", "imputed"}
        assert -1 <= moods[tid][S.VALENCE] <= 1 and -1 <= moods[tid][S.AROUSAL] <= 1
    # every track without local audio has a fetch row; the others have no link, and say so
    crawl = built_store.crawl
    assert set(fetched) == set(crawl.filter(pl.col(S.AUDIO_PATH).is_null())[S.TRACK_ID].to_list())
    assert {r[S.REASON] for t, r in fetched.items() if t not in pages.values()} == {"no_url"}
    assert not [h for srv in built_store.servers for h in srv.hits if h[1] == DEAD and h[0] == "GET"]  # only checked


def test_served_api_answers_from_the_published_store(built_store) -> None:
    from litestar.testing import TestClient

    from serving.app import create_app

    with TestClient(app=create_app()) as client:
        r = client.post("/recommend", json={"query": "i miss my ex"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["results"]) >= 10
        for item in body["results"]:
            assert -1 <= item["mood"]["valence"] <= 1 and -1 <= item["mood"]["arousal"] <= 1
            assert item["mood"]["source"] in {"audio", "text", "imputed", "fused"}
        assert set(body["metadata"]["stages"]) == {
            "query_understanding",
            "retrieval",
            "scoring",
            "reranking",
            "postprocessing",
        }
        assert -1 <= body["mood_detected"]["valence"] <= 1 and 0 <= body["mood_detected"]["confidence"] <= 1
        bad = client.post("/recommend", json={"query": ""})
        assert bad.status_code == 400 and "query" in bad.text
        health = client.get("/health").json()
        assert health["store_version"]


def test_evaluate_command_on_a_tiny_corpus_with_audio(built_store, tmp_path) -> None:
    """`moodscape evaluate` end to end: EMOPIA val clips rendered to audio (sign labels from their
    quadrant), a few MusicCaps rows, EmoBank dev sentences as queries; models from the built store."""
    from moodscape.cli import main
    from pipelines.audio.render import render_many

    labels_src = pl.read_csv(DATA_DIR / "emopia" / "labels.csv").filter(pl.col("split") == "val").sort("clip_id")
    picked = labels_src.group_by("quadrant", maintain_order=True).head(2)
    audio_dir = tmp_path / "audio"
    rendered = render_many(
        items=[(c, DATA_DIR / "emopia" / "midis" / f"{c}.mid") for c in picked.get_column("clip_id")],
        out_dir=audio_dir,
        workers=2,
    ).filter(pl.col("render_error").is_null())
    signs = {1: (1.0, 1.0), 2: (-1.0, 1.0), 3: (-1.0, -1.0), 4: (1.0, -1.0)}
    quadrant = dict(zip(picked.get_column("clip_id"), picked.get_column("quadrant")))
    corpus = pl.concat(
        [
            pl.DataFrame(
                {
                    S.TRACK_ID: [f"clip{i}" for i in range(rendered.height)],
                    S.AUDIO_PATH: [f"audio/{p.split('/')[-1]}" for p in rendered.get_column("audio_path")],  # relative
                }
            ),
            democorpus.musiccaps_rows(data_dir=DATA_DIR).head(20).select(S.TRACK_ID, S.DESCRIPTION, S.TAGS),
        ],
        how="diagonal_relaxed",
    )
    corpus.write_csv(tmp_path / "corpus.csv")
    pl.DataFrame(
        {
            S.TRACK_ID: [f"clip{i}" for i in range(rendered.height)],
            S.VALENCE: [signs[quadrant[c]][0] for c in rendered.get_column("clip_id")],
            S.AROUSAL: [signs[quadrant[c]][1] for c in rendered.get_column("clip_id")],
        }
    ).write_csv(tmp_path / "labels.csv")
    eb = pl.read_csv(DATA_DIR / "text" / "emobank_train_dev.csv").filter(pl.col("split") == "dev").head(6)
    eb.select(
        pl.col("text").alias("query"),
        ((pl.col("V") - 3) / 2).alias("valence"),
        ((pl.col("A") - 3) / 2).alias("arousal"),
    ).write_csv(tmp_path / "queries.csv")

    out = tmp_path / "report"
    code = main(
        [
            "evaluate",
            "--corpus",
            str(tmp_path / "corpus.csv"),
            "--labels",
            str(tmp_path / "labels.csv"),
            "--queries",
            str(tmp_path / "queries.csv"),
            "--out",
            str(out),
            "--offline",
            "--json",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n_tracks"] == corpus.height and report["n_queries"] == 6
    assert set(report["ranking"]) == {"full", "baseline_sbert"}
    assert set(report["ranking"]["full"]) == {
        "precision@10",
        "recall@50",
        "ndcg@20",
        "mood_alignment@10",
        "artist_diversity@50",
        "ild@50",
    }
    assert report["track_mood"]["n"] == rendered.height
    assert "audio" in report["track_mood"]["by_source"]  # the clips' moods came from their audio
    assert report["latency_ms"]["full"]["p50"] > 0
    assert (out / "report.md").exists() and any(out.glob("*.png"))


def test_a_crawl_with_audio_but_no_text_still_publishes(built_store, tmp_path) -> None:
    """Nothing to put in the text index (no title, tags, description…): the empty index passes
    its recall check, the store publishes, and moods come from the audio alone."""
    from assets.evalstore import build_store_from_corpus
    from pipelines import store
    from pipelines.measure.handle import BundleStoreHandle

    home = built_store.home
    main_version = store.read_current_version()
    immich = democorpus.immich_rows(data_dir=DATA_DIR).head(6)
    corpus = immich.select(S.TRACK_ID, S.AUDIO_PATH)  # audio only
    folder = build_store_from_corpus(corpus=corpus, workdir=tmp_path / "w", offline=True, source_home=home)
    # built under its work folder through the store resource: the main store and MOODSCAPE_HOME are untouched
    assert folder.is_relative_to((tmp_path / "w").resolve())
    assert os.environ["MOODSCAPE_HOME"] == str(home) and store.read_current_version() == main_version
    handle = BundleStoreHandle(folder)
    try:
        moods = handle.track_moods()
        assert moods.height == 6 and set(moods[S.MOOD_SOURCE].to_list()) == {"audio"}
        ranked = handle.recommend(query="calm and peaceful", mode="full", top_k=5)
        assert 1 <= len(ranked) <= 5 and set(ranked) <= set(corpus[S.TRACK_ID].to_list())
        handle.recommend(query="calm and peaceful", mode="baseline", top_k=5)  # must not fail
    finally:
        handle.close()
