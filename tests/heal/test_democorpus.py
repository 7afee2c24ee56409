"""The demo crawl built from the bundled open data (``data/``)."""

import re
from pathlib import Path

import polars as pl
import pytest

from pipelines import schema as S
from pipelines.heal import democorpus
from pipelines.heal.democorpus import (
    build_demo_crawl,
    emopia_midi_items,
    emopia_youtube_id,
    parse_attribution_line,
)
from pipelines.store import DATA_DIR

pytestmark = pytest.mark.skipif(not (DATA_DIR / "corpus" / "musiccaps.csv").exists(),
                                reason="bundled data/ missing")

JAMENDO_LIMIT = 1500


@pytest.fixture(scope="module")
def crawl() -> pl.DataFrame:
    emopia_audio = {"Q1_0vLPYiPN7qY_0": "/tmp/rendered/Q1_0vLPYiPN7qY_0.ogg"}
    return build_demo_crawl(data_dir=DATA_DIR, jamendo_limit=JAMENDO_LIMIT, emopia_audio=emopia_audio)


def _src(crawl: pl.DataFrame, name: str) -> pl.DataFrame:
    return crawl.filter(pl.col(S.SOURCE) == name)


def test_schema_and_counts(crawl):
    assert crawl.columns == list(S.CRAWL_COLUMNS)
    assert crawl.schema[S.YEAR] == pl.Int32 and crawl.schema[S.PLAYBACK_COUNT] == pl.Int64
    counts = dict(crawl.group_by(S.SOURCE).len().iter_rows())
    assert counts == {"musiccaps": 5521, "mtg_jamendo": JAMENDO_LIMIT, "emopia": 990, "immich": 28, "librosa": 14}
    assert crawl[S.TRACK_ID].n_unique() == crawl.height


def test_musiccaps_rows(crawl):
    mc = _src(crawl, "musiccaps")
    row = mc.filter(pl.col(S.TRACK_ID) == "musiccaps:-0Gj8-vB1q4:30").row(0, named=True)
    assert row[S.PERMALINK_URL] == "https://www.youtube.com/watch?v=-0Gj8-vB1q4&t=30s"
    assert row[S.TAGS].split(", ")[:2] == ["low quality", "sustained strings melody"]
    assert row[S.DESCRIPTION].startswith("The low quality recording features a ballad song")
    # MusicCaps has no title, artist, year, genre, counts: they stay null.
    for col in (S.TITLE, S.ARTIST, S.YEAR, S.CREATED_AT, S.GENRE, S.PLAYBACK_COUNT, S.AUDIO_PATH, S.VIBE_TEXT):
        assert mc[col].null_count() == mc.height, col
    assert mc[S.PERMALINK_URL].str.contains(r"^https://www\.youtube\.com/watch\?v=[\w-]{11}&t=\d+s$").all()


def test_jamendo_subset_prefers_moods_and_is_deterministic(crawl):
    jm = _src(crawl, "mtg_jamendo")
    src = pl.read_csv(DATA_DIR / "corpus" / "mtg_jamendo_tags.csv")
    with_moods = src.filter(pl.col("moods").is_not_null())
    assert with_moods.height > JAMENDO_LIMIT  # so every chosen row must have a mood
    expected = sorted(with_moods["jamendo_track_id"].to_list())[:JAMENDO_LIMIT]
    assert jm[S.TRACK_ID].to_list() == [f"jamendo:{i}" for i in expected]
    row = jm.filter(pl.col(S.TRACK_ID) == "jamendo:948").row(0, named=True)
    assert row[S.GENRE] == "chillout"
    assert row[S.TAGS] == "chillout, downtempo, easylistening, electronic, lounge, synthesizer, background"
    assert row[S.ARTIST] == "artist_000087" and row[S.TITLE] is None
    assert row[S.PERMALINK_URL] == "https://www.jamendo.com/track/948"
    again = build_demo_crawl(data_dir=DATA_DIR, jamendo_limit=JAMENDO_LIMIT)
    assert _src(again, "mtg_jamendo").equals(jm)


def test_jamendo_limit_larger_than_mood_rows_fills_by_id():
    src = pl.read_csv(DATA_DIR / "corpus" / "mtg_jamendo_tags.csv")
    n_moods = src["moods"].is_not_null().sum()
    crawl = build_demo_crawl(data_dir=DATA_DIR, jamendo_limit=n_moods + 10)
    jm = _src(crawl, "mtg_jamendo")
    ids = {int(t.split(":")[1]) for t in jm[S.TRACK_ID]}
    no_mood = sorted(src.filter(pl.col("moods").is_null())["jamendo_track_id"].to_list())[:10]
    assert jm.height == n_moods + 10 and set(no_mood) <= ids


def test_emopia_rows_carry_no_label(crawl):
    em = _src(crawl, "emopia")
    labels = pl.read_csv(DATA_DIR / "emopia" / "labels.csv")
    expected = sorted(democorpus.label_free_id(prefix="emopia", key=c) for c in labels["clip_id"])
    assert sorted(em[S.TRACK_ID].to_list()) == expected
    clip = democorpus.label_free_id(prefix="emopia", key="Q1_0vLPYiPN7qY_0")
    row = em.filter(pl.col(S.TRACK_ID) == clip).row(0, named=True)
    assert row[S.PERMALINK_URL] == "https://www.youtube.com/watch?v=0vLPYiPN7qY"
    assert row[S.AUDIO_PATH] == "/tmp/rendered/Q1_0vLPYiPN7qY_0.ogg"
    assert em[S.AUDIO_PATH].null_count() == em.height - 1
    for col in (S.TITLE, S.ARTIST, S.GENRE, S.TAGS, S.DESCRIPTION, S.YEAR, S.VIBE_TEXT):
        assert em[col].null_count() == em.height, col
    # every permalink names an 11-character YouTube id (some contain '_' or '-')
    assert em[S.PERMALINK_URL].str.contains(r"^https://www\.youtube\.com/watch\?v=[\w-]{11}$").all()


def test_emopia_youtube_id_with_underscore():
    assert emopia_youtube_id(clip_id="Q3_egYSmNuIFGk_1") == "egYSmNuIFGk"
    assert emopia_youtube_id(clip_id="Q2_a_b-cdefghi_12") == "a_b-cdefghi"
    with pytest.raises(ValueError):
        emopia_youtube_id(clip_id="nounderscore")
    ids = [c for c in pl.read_csv(DATA_DIR / "emopia" / "labels.csv")["clip_id"]
           if "_" in emopia_youtube_id(clip_id=c)]
    assert all(len(emopia_youtube_id(clip_id=c)) == 11 for c in ids)


LABEL_WORDS = re.compile(r"\b(?:Q[1-4]|quadrant|calm|energetic|happy|nostalgic|tender)\b", re.IGNORECASE)


def test_no_label_leakage_into_metadata(crawl):
    """Label words appear in no metadata column of EMOPIA/immich rows (ids and paths are locators)."""
    rows = crawl.filter(pl.col(S.SOURCE).is_in(["emopia", "immich"]))
    metadata = [c for c in S.CRAWL_COLUMNS if c != S.AUDIO_PATH]  # paths are locators
    for row in rows.select([S.AUDIO_PATH, *metadata]).iter_rows(named=True):
        path = row.pop(S.AUDIO_PATH)
        stem = Path(path).stem if path else None  # Q1_xxx_0 / calm_acoustic_1 spell the label
        for col, value in row.items():
            assert value is None or not LABEL_WORDS.search(str(value)), (col, value)
            assert value is None or stem is None or stem not in str(value), (col, value)


def test_immich_rows(crawl):
    im = _src(crawl, "immich")
    assert set(im[S.GENRE].unique()) == {"acoustic", "electronic"}
    assert im[S.TITLE].null_count() == im.height
    assert all(Path(p).exists() and p.endswith(".opus") for p in im[S.AUDIO_PATH])
    assert im[S.PERMALINK_URL].null_count() == im.height


def test_librosa_rows_keep_non_music(crawl):
    lb = _src(crawl, "librosa")
    by_id = {r[S.TRACK_ID]: r for r in lb.iter_rows(named=True)}
    for stem in ("198-209-0000", "3436-172162-0000", "5703-47212-0000", "glacier-bay-humpback",
                 "pibble", "456440__inspectorj__bird-whistling-robin-single-13"):
        assert f"librosa:{stem}" in by_id
    assert all(Path(p).exists() for p in lb[S.AUDIO_PATH])
    vibe = by_id["librosa:Kevin_MacLeod_-_Vibe_Ace"]
    assert (vibe[S.TITLE], vibe[S.ARTIST]) == ("Vibe Ace", "Kevin MacLeod")
    speech = by_id["librosa:198-209-0000"]
    assert speech[S.TITLE] is None and speech[S.ARTIST] is None and "Read by" in speech[S.DESCRIPTION]
    # LibriSpeech's collection page is shared by three clips: not a permalink of any one of them
    assert speech[S.PERMALINK_URL] is None
    choice = by_id["librosa:admiralbob77_-_Choice_-_Drum-bass"]
    assert (choice[S.TITLE], choice[S.ARTIST]) == ("Choice", "Admiral Bob")
    assert choice[S.PERMALINK_URL] == "http://dig.ccmixter.org/files/admiralbob77/61638"


def test_parse_attribution_line():
    assert parse_attribution_line(
        line="Hungarian Dance number 5 by Johannes Brahms / US Army Strings is in the Public Domain. "
    ) == ("Hungarian Dance number 5", "Johannes Brahms / US Army Strings")
    assert parse_attribution_line(line="The sound of a pibble howling in her sleep") == (None, None)
    assert parse_attribution_line(
        line="Ashiel Mystery - A Detective Story, chapter 2, narrated by Garth Comira") == (None, None)
    assert parse_attribution_line(line="Bird Whistling, Robin, Single, 13.wav / InspectorJ") == (
        "Bird Whistling, Robin, Single, 13", "InspectorJ")


def test_emopia_midi_items():
    items = emopia_midi_items(data_dir=DATA_DIR)
    assert len(items) == 990
    assert all(p.exists() and p.suffix == ".mid" and p.stem == c for c, p in items)
