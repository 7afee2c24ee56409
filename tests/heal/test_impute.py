"""Description fallback: vibe text, else a flagged synthetic line; never invented from nothing."""

import polars as pl

from pipelines import schema as S
from pipelines.heal.impute import fill_descriptions


def test_fill_descriptions_order_and_flags() -> None:
    tracks = pl.DataFrame({
        S.TRACK_ID: ["a", "b", "c", "d", "e"],
        S.DESCRIPTION: ["Real words.", None, None, None, None],
        S.VIBE_TEXT: [None, "late night drive", None, None, None],
        S.GENRE: ["rock", "pop", "jazz", None, None],
        S.ARTIST: [None, None, "Nina Simone", "artist_000014", None],
        S.YEAR: [None, None, 1965, None, None],
    }, schema_overrides={S.YEAR: pl.Int32})
    out = fill_descriptions(tracks=tracks)
    assert out[S.DESCRIPTION].to_list() == [
        "Real words.", "late night drive", "A jazz track by Nina Simone from 1965.", None, None]
    assert out[S.DESCRIPTION_SOURCE].to_list() == ["observed", "vibe_text", "synthetic", None, None]
