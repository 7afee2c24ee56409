"""Version dedup keys: canonical titles (version markers stripped, real titles kept), keys per
(artist, canonical title), their integer codes, and the real Deezer titles (dev-eval, when present)."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.rank import dedup

DEEZER = Path("/work/shared/data/dev-eval/deezer_mood")

SAME_SONG = [
    "Song", "Song (Live)", "Song - Remastered 2011", "Song (2011 Remaster)", "Song [Radio Edit]",
    "Song - Live at Wembley", "Song (feat. X)", "Song feat. X", "Song ft. Someone Else", "Song (Featuring Y & Z)",
    "SONG", "  song  ", "Song!", "Song (Live) [Remastered]", "Song - Live - Remastered", "Song – Live",
    "Song (Single Edit)", "Song (Album Edit)", "Song (Edit)", "Song (Mono)", "Song - Stereo Version",
    "Song (Stereo Mix)", "Song (Deluxe Edition)", "Song (Demo)", "Song (Album Version)", "Song (Original Mix)",
    "Song (Remastered & Expanded Version )", "Song (Live in Toronto)", "Song [Live 1986]", "Song (2008 Remastered)",
    "Song (1999 Digital Remaster)", "Song (Explicit)", "Song (Bonus Track)", "Song (Acoustic Version)",
]
DISTINCT = {
    "Song (X Remix)": "song x remix",
    "Song - X Remix": "song x remix",
    "Song (Live Remix)": "song live remix",
    "Song (Club Mix)": "song club mix",
    "Song (Cover)": "song cover",
    "Song (Instrumental)": "song instrumental",
    "Song (Karaoke Version)": "song karaoke version",
    "Song (Reprise)": "song reprise",
    "Song (Interlude)": "song interlude",
    "Song, Part 2": "song part 2",
    "Song - Part 2": "song part 2",
    "Dancing With Myself": "dancing with myself",
    "Left": "left",
    "Live Forever": "live forever",
    "Live": "live",  # a title that is only a marker keeps it
    "(Live)": "live",
    "Café del Mar (Remastered)": "café del mar",
}


@pytest.mark.parametrize("title", SAME_SONG)
def test_versions_share_one_canonical_title(title) -> None:
    assert dedup.canonical_title(title) == "song"


@pytest.mark.parametrize(("title", "expected"), sorted(DISTINCT.items()))
def test_remixes_covers_and_real_titles_stay_distinct(title, expected) -> None:
    assert dedup.canonical_title(title) == expected


def test_missing_titles_and_keys() -> None:
    assert dedup.canonical_title(None) is None and dedup.canonical_title("") is None
    assert dedup.canonical_title(" ... ") is None
    keys = dedup.canonical_keys(["The Band", " the  band", None, "Other", "The Band"],
                                ["Song (Live)", "Song - Remastered 2011", "Song", None, "Song (X Remix)"])
    assert keys.dtype == object and keys.shape == (5,)
    assert keys[0] == keys[1] == f"the band{dedup.KEY_SEP}song"
    assert keys[2] is None and keys[3] is None and keys[4] != keys[0]
    codes = dedup.key_codes(keys)
    assert codes[0] == codes[1] >= 0 and codes[2] == codes[3] == -1 and codes[4] not in (-1, codes[0])
    assert dedup.canonical_keys([], []).shape == (0,)
    # the vectorised keys agree with the scalar function on the whole table
    titles = SAME_SONG + list(DISTINCT)
    ks = dedup.canonical_keys(["a"] * len(titles), titles)
    assert [k.split(dedup.KEY_SEP)[1] for k in ks] == [dedup.canonical_title(t) for t in titles]


def test_real_titles_lose_version_markers_only() -> None:
    if not DEEZER.exists():
        pytest.skip(f"{DEEZER} (dev-eval) not available")
    df = pl.concat([pl.read_csv(DEEZER / f) for f in ("train.csv", "validation.csv")])
    titles = df["track_name"].cast(pl.String)
    canon = pl.Series(dedup.canonical_keys(df["artist_name"], titles).tolist(), dtype=pl.String).str.split(
        dedup.KEY_SEP).list.get(1, null_on_oob=True)
    low = titles.str.to_lowercase()
    marked = low.str.contains(r"[\(\[][^\)\]]*\b(live|remaster|remastered)\b[^\)\]]*[\)\]]") & ~low.str.contains(
        r"remix|mix\b|cover|instrumental")
    assert marked.sum() >= 50  # the real catalogue has many such versions
    assert not canon.filter(marked).str.contains(r"\b(remaster|remastered)\b").any()
    assert not canon.filter(marked).str.contains(r"\blive\b$").any()
    remixes = low.str.contains(r"\bremix\b")
    assert canon.filter(remixes).str.contains("remix").all()
    # titles without any marker word only lose case and punctuation
    plain = ~low.str.contains(r"[\(\[\-]|feat|ft\.")
    norm = low.filter(plain).str.replace_all(r"[^\p{L}\p{N}]+", " ").str.strip_chars()
    assert (canon.filter(plain).fill_null("") == norm).all()


def test_keys_from_polars_series_equal_keys_from_lists() -> None:
    artists = ["A", "a ", None, "B", "B", "B"]
    titles = ["Song (Live)", "song", "Song", "Other - Remastered 2011", "Other", "Other (Club Mix)"]
    from_lists = dedup.canonical_keys(artists, titles)
    from_series = dedup.canonical_keys(pl.Series(artists, dtype=pl.String), pl.Series(titles, dtype=pl.String))
    assert from_lists.tolist() == from_series.tolist()
    codes = dedup.key_codes(from_series)
    assert codes[0] == codes[1] >= 0 and codes[2] == -1
    assert codes[3] == codes[4] >= 0 and codes[5] not in (-1, codes[3], codes[0])
    assert codes.dtype == np.int64


def test_artist_case_and_spacing_do_not_split_keys_but_different_artists_do() -> None:
    keys = dedup.canonical_keys(["The Band", "THE  BAND ", "Another Band"], ["Song", "Song (Live)", "Song"])
    assert keys[0] == keys[1] and keys[0] != keys[2]
