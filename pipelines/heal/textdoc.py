"""The text a track is known by: one document per track built from its observed metadata, and the
one splitter of a ``tags`` cell."""

import re

import polars as pl

from pipelines import schema as S

_OPAQUE_ID = re.compile(r"^(artist|album|track)_\d+$")
_CLEAN_TAG_SPLIT = re.compile(r"[,|;]")
_AS_WRITTEN_TAG_SPLIT = re.compile(r"[,|]")


def split_tags(value: str | None, *, clean: bool = True) -> list[str]:
    """A ``tags`` cell (comma-separated; MTG-style ``|`` also accepted) → its tags in order.

    ``clean=True`` (text documents, imputation, publishing): ``;`` also separates, surrounding
    quotes are stripped, tags lower-cased and duplicates dropped.
    ``clean=False`` (tag-mood scoring): split on ``,`` and ``|`` only, each tag as written
    (whitespace-stripped), duplicates kept.
    """
    if not value:
        return []
    if not clean:
        return [t.strip() for t in _AS_WRITTEN_TAG_SPLIT.split(value) if t.strip()]
    seen: dict[str, None] = {}
    for raw in _CLEAN_TAG_SPLIT.split(value):
        tag = raw.strip().strip("'\"").strip()
        if tag and tag.lower() not in seen:
            seen[tag.lower()] = None
    return list(seen)


def _readable_artist(artist: str | None) -> str | None:
    # Opaque catalogue ids (MTG-Jamendo's "artist_000014") carry no meaning for a text encoder.
    if not artist or _OPAQUE_ID.match(artist.strip()):
        return None
    return artist.strip()


def build_text_doc(
    *, title: str | None, artist: str | None, genre: str | None, tags: str | None,
    description: str | None, vibe: str | None,
) -> str:
    """One readable sentence-ish document; empty string when the track has no usable text."""
    parts: list[str] = []
    head = (title or "").strip()
    readable = _readable_artist(artist)
    if head and readable:
        parts.append(f"{head} by {readable}.")
    elif head:
        parts.append(f"{head}.")
    elif readable:
        parts.append(f"By {readable}.")
    if genre:
        parts.append(f"Genre: {genre}.")
    tag_list = split_tags(tags)
    if tag_list:
        parts.append("Tags: " + ", ".join(tag_list[:24]) + ".")
    if description:
        parts.append(description.strip())
    if vibe:
        parts.append(vibe.strip())
    return " ".join(parts).strip()


def add_text_docs(tracks: pl.DataFrame) -> pl.DataFrame:
    """Return ``tracks`` with a ``text_doc`` column (see :func:`build_text_doc`)."""
    cols = [S.TITLE, S.ARTIST, S.GENRE, S.TAGS, S.DESCRIPTION, S.VIBE_TEXT]
    docs = [
        build_text_doc(title=t, artist=a, genre=g, tags=tg, description=d, vibe=v)
        for t, a, g, tg, d, v in zip(*(tracks.get_column(c).to_list() for c in cols))
    ]
    return tracks.with_columns(pl.Series(S.TEXT_DOC, docs, dtype=pl.Utf8))
