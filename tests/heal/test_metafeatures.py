"""Metadata features on the real demo crawl (MusicCaps, MTG-Jamendo, EMOPIA, immich, librosa).

The demo sources carry no years or play counts, so those features must stay null there. The year /
popularity arithmetic is checked on a handful of explicit inputs (test inputs, not data).
"""

import math

import polars as pl
import pytest

from pipelines import schema as S
from pipelines.heal.democorpus import build_demo_crawl
from pipelines.heal.ingest import CRAWL_DTYPES
from pipelines.heal.metafeatures import (
    FEATURE_COLUMNS,
    PROLIFIC_MIN_TRACKS,
    RICHNESS_FIELDS,
    metadata_features,
    null_rate_table,
)
from pipelines.store import DATA_DIR

pytestmark = pytest.mark.skipif(not (DATA_DIR / "corpus" / "mtg_jamendo_tags.csv").exists(),
                                reason="bundled data/ missing")


@pytest.fixture(scope="module")
def crawl() -> pl.DataFrame:
    return build_demo_crawl(data_dir=DATA_DIR, jamendo_limit=4000)


@pytest.fixture(scope="module")
def feats(crawl) -> pl.DataFrame:
    return metadata_features(tracks=crawl, now_year=2025)


def test_shape_and_order(crawl, feats):
    assert feats.columns == [S.TRACK_ID, *FEATURE_COLUMNS]
    assert feats[S.TRACK_ID].to_list() == crawl[S.TRACK_ID].to_list()


def test_unknown_stays_null_on_real_rows(crawl, feats):
    # No demo source has a year, created_at or play count: nothing may be invented.
    assert crawl[S.YEAR].null_count() == crawl.height and crawl[S.PLAYBACK_COUNT].null_count() == crawl.height
    for col in ("release_year", "era", "recency_score", "log_popularity", "popularity_tier",
                "engagement_rate", "artist_avg_playback"):
        assert feats[col].null_count() == feats.height, col


def test_artist_stats_match_jamendo_counts(crawl, feats):
    joined = crawl.select(S.TRACK_ID, S.ARTIST).join(feats, on=S.TRACK_ID)
    expected = crawl.filter(pl.col(S.ARTIST).is_not_null()).group_by(S.ARTIST).len()
    got = joined.filter(pl.col(S.ARTIST).is_not_null()).group_by(S.ARTIST).agg(
        pl.col("artist_track_count").first(), pl.col("artist_is_prolific").first()
    ).join(expected, on=S.ARTIST)
    assert got.height == expected.height > 100  # real Jamendo artists repeat
    assert (got["artist_track_count"] == got["len"]).all()
    assert (got["artist_is_prolific"] == (got["len"] >= PROLIFIC_MIN_TRACKS)).all()
    assert got["artist_is_prolific"].any() and not got["artist_is_prolific"].all()
    no_artist = joined.filter(pl.col(S.ARTIST).is_null())
    assert no_artist["artist_track_count"].null_count() == no_artist.height > 0


def test_richness_and_text_length_by_row(crawl, feats):
    rows = crawl.join(feats, on=S.TRACK_ID).iter_rows(named=True)
    checked = 0
    for r in rows:
        fields = [r[f] if f != "release_year" else r["release_year"] for f in RICHNESS_FIELDS]
        present = sum(1 for v in fields if v is not None and str(v).strip())
        assert math.isclose(r["metadata_richness"], present / len(RICHNESS_FIELDS))
        length = sum(len(r[f].strip()) for f in (S.TITLE, S.TAGS, S.DESCRIPTION, S.VIBE_TEXT) if r[f])
        assert r["text_length"] == length
        checked += 1
    assert checked == crawl.height
    by_source = crawl.join(feats, on=S.TRACK_ID).group_by(S.SOURCE).agg(pl.col("metadata_richness").mean())
    rich = dict(by_source.iter_rows())
    # Jamendo has artist + genre + tags (3/7); EMOPIA has no metadata at all.
    assert rich["mtg_jamendo"] > rich["emopia"] == 0.0


def test_year_popularity_arithmetic():
    rows = {
        S.TRACK_ID: ["a", "b", "c", "d", "e", "f"],
        S.ARTIST: ["X", "x ", "Y", None, "Y", "Z"],
        S.YEAR: [2015, None, 1850, None, 2025, None],
        S.CREATED_AT: [None, "2019-05-01T10:00:00Z", "2001-01-01T00:00:00Z", "not a date", None, None],
        S.PLAYBACK_COUNT: [0, 10, 99, None, 99, 100_000],
    }
    frame = pl.DataFrame({c: rows.get(c) for c in CRAWL_DTYPES}, schema=CRAWL_DTYPES)
    f = {r[S.TRACK_ID]: r for r in metadata_features(tracks=frame, now_year=2025).iter_rows(named=True)}
    assert [f[t]["release_year"] for t in "abcdef"] == [2015, 2019, 2001, None, 2025, None]
    assert [f[t]["era"] for t in "abcdef"] == ["2010s", "2010s", "2000s", None, "2020s", None]
    assert f["a"]["recency_score"] == pytest.approx(0.5) and f["e"]["recency_score"] == pytest.approx(1.0)
    assert f["d"]["recency_score"] is None
    assert f["f"]["log_popularity"] == pytest.approx(1.0) and f["a"]["log_popularity"] == 0.0
    assert f["b"]["log_popularity"] == pytest.approx(math.log1p(10) / math.log1p(100_000))
    assert f["d"]["log_popularity"] is None and f["d"]["popularity_tier"] is None
    # 5 known counts: 0, 10 → low (pct 0.2, 0.4); tied 99s (pct 0.7) → mid; 100k (pct 1.0) → viral.
    assert [f[t]["popularity_tier"] for t in "abcef"] == ["low", "low", "mid", "mid", "viral"]
    assert f["a"]["artist_track_count"] == 2 and f["a"]["artist_avg_playback"] == pytest.approx(5.0)
    assert f["c"]["artist_avg_playback"] == pytest.approx(99.0) and f["d"]["artist_track_count"] is None


def test_null_rate_table_on_real_crawl(crawl):
    after = crawl.with_columns(pl.col(S.GENRE).fill_null("Unknown"))
    table = null_rate_table(before=crawl, after=after, columns=[S.GENRE, S.TITLE, "not_a_column"])
    r = {row["column"]: row for row in table.iter_rows(named=True)}
    expected = crawl[S.GENRE].null_count() / crawl.height
    assert r[S.GENRE]["null_rate_before"] == pytest.approx(expected) and 0 < expected < 1
    assert r[S.GENRE]["null_rate_after"] == 0.0 and r[S.GENRE]["delta"] == pytest.approx(-expected)
    assert r[S.TITLE]["delta"] == 0.0
    assert r["not_a_column"]["null_rate_before"] == 1.0
