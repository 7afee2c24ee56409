"""Audio of results over real HTTP: the app under uvicorn on loopback, a temporary store holding real
audio files (bundled librosa clips), range requests, and paths that must never be read.

The published tracks carry ``audio_path`` / ``description`` / ``source`` (added to the version's
``tracks.parquet`` when the version writer does not keep them).
"""

import os
import shutil
from collections.abc import Iterator

import httpx
import numpy as np
import polars as pl
import pytest

from pipelines import schema as S
from pipelines import store
from pipelines.index.bundle import TRACKS_FILE
from pipelines.index.version import write_version
from pipelines.rank import recommender as ranking
from serving.app import create_app
from serving.cache import ResponseCache
from serving.settings import ServingSettings
from tests.helpers import uvicorn_on_loopback
from tests.serving.conftest import CHROMEDRIVER, CHROMIUM

LIBROSA = store.DATA_DIR / "audio" / "librosa"
WALTZ = LIBROSA / "147793__setuniman__sweet-waltz-0i-22mi.ogg"
RAGTIME = LIBROSA / "442789__lena-orsa__happy-music-pistachio-ice-cream-ragtime.ogg"

pytestmark = pytest.mark.skipif(not (WALTZ.exists() and RAGTIME.exists()), reason="bundled librosa clips absent")


def _row(track_id: str, **values) -> dict:
    base = {c: None for c in (S.TITLE, S.ARTIST, S.GENRE, S.PERMALINK_URL, S.MOOD_SOURCE, S.TEXT_DOC)}
    base.update({S.TRACK_ID: track_id, S.YEAR: None, S.TAGS: [], S.URL_STATUS: "UNKNOWN", S.PLAYBACK_COUNT: None,
                 S.VALENCE: 0.1, S.AROUSAL: -0.1, S.MOOD_CONFIDENCE: 0.5, S.AUDIO_SOURCE: "none",
                 S.AUDIO_PATH: None, S.DESCRIPTION: None, S.SOURCE: None})
    base.update(values)
    return base


@pytest.fixture(scope="module")
def audio_store(tmp_path_factory, bundle_dir, embed_cached) -> dict:
    """A store with one published version: tracks whose audio is in the store, in the bundled data,
    missing, or outside every allowed folder (absolute, ``..``, and a symlink out of the store)."""
    root = tmp_path_factory.mktemp("audio-store") / "store"
    layout = store.StoreLayout(root)
    clips = layout.audio("emopia")
    clips.mkdir(parents=True)
    in_store = clips / "Q1_clip_0.ogg"
    shutil.copyfile(WALTZ, in_store)
    outside = tmp_path_factory.mktemp("outside") / "secret.ogg"
    shutil.copyfile(RAGTIME, outside)
    link = clips / "link_out.ogg"
    os.symlink(outside, link)
    rows = [
        _row("emopia:aaa", **{S.AUDIO_PATH: str(in_store), S.SOURCE: "emopia", S.TEXT_DOC: ""}),
        _row("emopia:rel", **{S.AUDIO_PATH: "emopia/Q1_clip_0.ogg", S.SOURCE: "emopia", S.TEXT_DOC: ""}),
        _row("librosa:waltz", **{S.AUDIO_PATH: str(WALTZ), S.TITLE: "sweet waltz", S.ARTIST: "Setuniman",
                                 S.SOURCE: "librosa", S.TEXT_DOC: "sweet waltz by Setuniman."}),
        _row("musiccaps:abc:30", **{
            S.TAGS: ["sad piano", "slow tempo", "emotional", "rain"], S.SOURCE: "musiccaps",
            S.DESCRIPTION: "A slow sad piano piece plays over soft rain. The recording is mellow.",
            S.TEXT_DOC: "Tags: sad piano, slow tempo, emotional, rain. A slow sad piano piece plays over soft rain. "
                        "The recording is mellow."}),
        _row("jamendo:948", **{S.ARTIST: "artist_000087", S.GENRE: "chillout", S.TAGS: ["chillout", "lounge"],
                               S.TEXT_DOC: "Genre: chillout. Tags: chillout, lounge."}),
        _row("x:absolute", **{S.AUDIO_PATH: "/etc/passwd", S.TEXT_DOC: "x"}),
        _row("x:dotdot", **{S.AUDIO_PATH: f"emopia/../../../../{outside.parent.name}/secret.ogg", S.TEXT_DOC: "x"}),
        _row("x:symlink", **{S.AUDIO_PATH: str(link), S.TEXT_DOC: "x"}),
        _row("x:missing", **{S.AUDIO_PATH: str(clips / "gone.ogg"), S.TEXT_DOC: "x"}),
        _row("x:none", **{S.TEXT_DOC: "x"}),
    ]
    tracks = pl.DataFrame(rows, schema_overrides={
        S.TITLE: pl.String, S.ARTIST: pl.String, S.GENRE: pl.String, S.YEAR: pl.Int32, S.TAGS: pl.List(pl.String),
        S.PERMALINK_URL: pl.String, S.PLAYBACK_COUNT: pl.Int64, S.MOOD_SOURCE: pl.String, S.AUDIO_PATH: pl.String,
        S.DESCRIPTION: pl.String, S.SOURCE: pl.String, S.VALENCE: pl.Float32, S.AROUSAL: pl.Float32,
        S.MOOD_CONFIDENCE: pl.Float32,
    })
    docs = [d or t for d, t in zip(tracks[S.TEXT_DOC].to_list(), tracks[S.TRACK_ID].to_list())]
    folder = write_version(
        folder=layout.version_dir("audio-v1"), tracks=tracks, text_vectors=embed_cached(docs),
        audio_vectors=np.zeros((tracks.height, 0), np.float32), query_mood_model_path=bundle_dir / "query_mood.joblib",
    )
    published = pl.read_parquet(folder / TRACKS_FILE)
    missing = [c for c in (S.AUDIO_PATH, S.DESCRIPTION, S.SOURCE) if c not in published.columns]
    if missing:
        published.join(tracks.select(S.TRACK_ID, *missing), on=S.TRACK_ID, how="left",
                       maintain_order="left").write_parquet(folder / TRACKS_FILE)
    layout.publish("audio-v1")
    assert (layout.audio("") / f"emopia/../../../../{outside.parent.name}/secret.ogg").resolve() == outside
    return {"root": root, "in_store": in_store, "outside": outside}


@pytest.fixture(scope="module")
def base_url(audio_store, mood_adapter) -> Iterator[str]:
    app = create_app(
        store_root=audio_store["root"], settings=ServingSettings(reload_interval_s=0), cache=ResponseCache(capacity=0),
        recommender_factory=lambda b: ranking.Recommender(b, query_mood=mood_adapter),
    )
    with uvicorn_on_loopback(app) as url:
        yield url


@pytest.fixture(scope="module")
def http(base_url) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30, trust_env=False) as c:
        yield c


def test_whole_file_with_content_type_and_accept_ranges(http, audio_store) -> None:
    data = audio_store["in_store"].read_bytes()
    r = http.get("/tracks/emopia:aaa/audio")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("audio/ogg")
    assert r.headers["accept-ranges"] == "bytes"
    assert int(r.headers["content-length"]) == len(data) and r.content == data
    assert r.content[:4] == b"OggS"


@pytest.mark.parametrize(("header", "first", "last"), [
    ("bytes=0-99", 0, 99),
    ("bytes=100-", 100, None),
    ("bytes=-500", -500, None),
    ("bytes=1000-999999999", 1000, None),
])
def test_range_requests_are_206_with_content_range(http, audio_store, header, first, last) -> None:
    data = audio_store["in_store"].read_bytes()
    size = len(data)
    r = http.get("/tracks/emopia:aaa/audio", headers={"Range": header})
    assert r.status_code == 206, r.text
    start = first if first >= 0 else size + first
    end = size - 1 if last is None else last
    assert r.content == data[start:end + 1]
    assert r.headers["content-range"] == f"bytes {start}-{end}/{size}"
    assert int(r.headers["content-length"]) == end - start + 1


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=50-10", "bytes=-0", "bytes=abc", "bytes=-"])
def test_unsatisfiable_or_malformed_ranges_are_416(http, audio_store, header) -> None:
    size = audio_store["in_store"].stat().st_size
    r = http.get("/tracks/emopia:aaa/audio", headers={"Range": header})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{size}"


def test_several_ranges_or_other_units_get_the_whole_file(http, audio_store) -> None:
    data = audio_store["in_store"].read_bytes()
    for header in ("bytes=0-1,5-6", "items=0-3"):
        r = http.get("/tracks/emopia:aaa/audio", headers={"Range": header})
        assert r.status_code == 200 and r.content == data


def test_if_range_with_another_etag_gets_the_whole_file(http, audio_store) -> None:
    data = audio_store["in_store"].read_bytes()
    etag = http.get("/tracks/emopia:aaa/audio", headers={"Range": "bytes=0-0"}).headers["etag"]
    same = http.get("/tracks/emopia:aaa/audio", headers={"Range": "bytes=0-9", "If-Range": etag})
    assert same.status_code == 206 and same.content == data[:10]
    other = http.get("/tracks/emopia:aaa/audio", headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert other.status_code == 200 and other.content == data


def test_relative_paths_and_bundled_data_are_served(http) -> None:
    rel = http.get("/tracks/emopia:rel/audio", headers={"Range": "bytes=0-3"})
    assert rel.status_code == 206 and rel.content == b"OggS"
    bundled = http.get("/tracks/librosa:waltz/audio")
    assert bundled.status_code == 200 and bundled.content == WALTZ.read_bytes()


@pytest.mark.parametrize("track_id", ["x:absolute", "x:dotdot", "x:symlink", "x:missing", "x:none"])
def test_audio_outside_the_store_or_absent_is_404_naming_the_track(http, audio_store, track_id) -> None:
    r = http.get(f"/tracks/{track_id}/audio")
    assert r.status_code == 404
    assert track_id in r.json()["detail"]
    assert audio_store["outside"].read_bytes()[:64] not in r.content


def test_request_paths_never_name_a_file(http) -> None:
    for path in ("/tracks/..%2F..%2Fetc%2Fpasswd/audio", "/tracks/%2Fetc%2Fpasswd/audio", "/tracks/unknown/audio"):
        r = http.get(path)
        assert r.status_code == 404, path
        assert b"root:" not in r.content


def test_results_carry_audio_url_and_display_identity(http, audio_store) -> None:
    r = http.post("/recommend", json={"query": "sad piano in the rain", "top_k": 10, "diversity": 0.0})
    assert r.status_code == 200, r.text
    by_id = {t["track_id"]: t for t in r.json()["results"]}
    assert by_id["emopia:aaa"]["audio_url"] == "/tracks/emopia%3Aaaa/audio"
    assert by_id["librosa:waltz"]["audio_url"] is not None
    for tid in ("x:absolute", "x:dotdot", "x:symlink", "x:missing", "x:none", "musiccaps:abc:30"):
        if tid in by_id:
            assert by_id[tid]["audio_url"] is None, tid
    # the advertised URL serves the file
    got = http.get(by_id["emopia:aaa"]["audio_url"])
    assert got.status_code == 200 and got.content == audio_store["in_store"].read_bytes()

    caps = http.get("/tracks/musiccaps:abc:30").json()
    assert caps["title"] is None  # null stays null
    assert caps["display"]["title"] == "A slow sad piano piece plays over soft rain."
    assert caps["display"]["title_from"] == "caption"
    assert caps["display"]["source"] == "MusicCaps" and caps["display"]["source_id"] == "abc:30"
    assert caps["display"]["top_tags"] == ["sad piano", "slow tempo", "emotional"]
    jam = http.get("/tracks/jamendo:948").json()
    assert jam["title"] is None and jam["artist"] == "artist_000087"
    assert jam["display"]["title"] == "chillout, lounge" and jam["display"]["title_from"] == "tags"
    assert jam["display"]["source"] == "MTG-Jamendo"
    clip = http.get("/tracks/emopia:aaa").json()
    assert clip["display"]["title"] == "EMOPIA aaa" and clip["display"]["title_from"] == "source"
    waltz = http.get("/tracks/librosa:waltz").json()
    assert waltz["display"]["title"] == "sweet waltz" and waltz["display"]["title_from"] == "title"



@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()), reason="chromium / chromedriver not installed")
def test_the_page_plays_results_that_have_audio(base_url, driver) -> None:
    """The page in headless Chromium: a player per result with audio, and only there."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base_url + "/")
    driver.find_element(By.ID, "q").send_keys("sad piano in the rain")
    WebDriverWait(driver, 60).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results > li[data-track-id]")) >= 8
    )
    items = {li.get_attribute("data-track-id"): li for li in driver.find_elements(By.CSS_SELECTOR, "#results > li")}
    players = {tid: li.find_elements(By.TAG_NAME, "audio") for tid, li in items.items()}
    clip = players["emopia:aaa"]
    assert len(clip) == 1 and clip[0].get_attribute("preload") == "none"
    assert clip[0].get_attribute("controls") is not None
    assert clip[0].get_attribute("src").endswith("/tracks/emopia%3Aaaa/audio")
    for tid in ("x:absolute", "x:symlink", "x:none", "musiccaps:abc:30"):
        if tid in players:
            assert players[tid] == [], tid
    # the browser itself fetches the advertised audio (same origin, allowed by the page's CSP)
    got = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {headers: {Range: 'bytes=0-3'}})"
        ".then(r => r.arrayBuffer().then(b => done([r.status, b.byteLength])));",
        clip[0].get_attribute("src"),
    )
    assert got == [206, 4]
    titles = [li.find_element(By.CSS_SELECTOR, ".result-title").text for li in items.values()]
    assert all(t.strip() and "Untitled" not in t for t in titles)
