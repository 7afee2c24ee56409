"""Display identity of results: caption words, tags, source ids; nothing invented, null stays null."""

import polars as pl

from pipelines import schema as S
from pipelines.heal.textdoc import build_text_doc
from pipelines.index.bundle import load_bundle
from serving.display import DisplayTable, audio_type, caption_from_doc, headline, opening_words, source_of


def test_opening_words_cut_at_the_first_sentence_and_word_budget() -> None:
    assert opening_words("Soft piano. Then strings.") == "Soft piano."
    long = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    assert opening_words(long) == "one two three four five six seven eight nine ten eleven twelve…"
    assert opening_words("   ") is None and opening_words(None) is None


def test_headline_drops_content_free_openings_only() -> None:
    assert headline("The low quality recording features a crumpling bag sound effect…") == (
        "A crumpling bag sound effect…")
    assert headline("This is the recording of a harmonica solo.") == "A harmonica solo."
    assert headline("The song is a movie soundtrack.") == "A movie soundtrack."
    assert headline("A female singer sings this soulful song.") == "A female singer sings this soulful song."
    assert headline("This music is instrumental.") == "This music is instrumental."  # one word would be left


def test_caption_is_what_follows_the_rebuilt_head_of_the_doc() -> None:
    tags = ["sad piano", "rain"]
    doc = build_text_doc(title=None, artist="artist_000012", genre="ambient", tags=", ".join(tags),
                         description="A slow piano over rain.", vibe=None)
    assert caption_from_doc(doc=doc, title=None, artist="artist_000012", genre="ambient", tags=tags) == (
        "A slow piano over rain.")
    no_caption = build_text_doc(title=None, artist=None, genre="rock", tags="loud", description=None, vibe=None)
    assert caption_from_doc(doc=no_caption, title=None, artist=None, genre="rock", tags=["loud"]) is None
    # a doc that does not start with the rebuilt head yields nothing rather than a guess
    assert caption_from_doc(doc="Something else. Tags: x.", title=None, artist=None, genre=None, tags=["x"]) is None


def test_sources_and_content_types() -> None:
    assert source_of("musiccaps:abc:30") == ("MusicCaps", "abc:30")
    assert source_of("jamendo:948", "mtg_jamendo") == ("MTG-Jamendo", "948")
    assert source_of("track_0000214") == ("catalogue", "track_0000214")
    from pathlib import Path

    assert audio_type(Path("a.OGG")) == "audio/ogg" and audio_type(Path("a.opus")) == "audio/ogg"
    assert audio_type(Path("a.mp3")) == "audio/mpeg" and audio_type(Path("a.bin")) == "application/octet-stream"


def test_every_row_of_a_real_bundle_is_named_and_nothing_is_written(bundle_dir) -> None:
    before = pl.read_parquet(bundle_dir / "tracks.parquet")
    table = DisplayTable.from_bundle(load_bundle(bundle_dir))
    shown = [table.display(i) for i in range(before.height)]
    assert all(d.title.strip() and d.title != "Untitled" for d in shown)
    titled = before[S.TITLE].is_not_null().to_list()
    assert all(d.title_from != "title" for d, has in zip(shown, titled) if not has)
    # MusicCaps rows are named by their tags' strongest entries; MTG rows by tags or genre
    caps = [d for d, tid in zip(shown, before[S.TRACK_ID].to_list()) if tid.startswith("musiccaps:")]
    assert caps and all(d.title_from in {"caption", "tags"} and d.source == "MusicCaps" for d in caps)
    assert all(table.audio_file(i) is None for i in range(before.height))  # no audio roots, no audio
    assert pl.read_parquet(bundle_dir / "tracks.parquet").equals(before)
