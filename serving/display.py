"""What identifies a result for a person, and where its audio is: read-only views of one loaded bundle.

A track without a title is named by what the data does hold, in this order: the caption's opening
words (description / vibe text), its strongest tags, its genre, its source and source id. Nothing
is made up and nothing is written back: ``title`` stays null in the data and the API; these are
display-only fields. Audio comes only from the ``audio_path`` the published version holds, and only
when its real path lies inside one of the allowed audio folders.
"""

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import polars as pl

from pipelines import schema as S
from pipelines.heal.textdoc import build_text_doc
from pipelines.index.bundle import Bundle

CAPTION_WORDS = 12  # opening words of a caption used as a display title
CAPTION_CHARS = 90
TOP_TAGS = 3
SOURCE_NAMES = {
    "musiccaps": "MusicCaps", "jamendo": "MTG-Jamendo", "mtg_jamendo": "MTG-Jamendo", "emopia": "EMOPIA",
    "immich": "immich", "librosa": "librosa example",
}
AUDIO_TYPES = {
    ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg", ".mp3": "audio/mpeg", ".wav": "audio/wav",
    ".flac": "audio/flac", ".m4a": "audio/mp4", ".mp4": "audio/mp4", ".aac": "audio/aac", ".webm": "audio/webm",
}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
# Caption openings that say nothing about the track ("The low quality recording features …").
_BOILERPLATE = re.compile(
    r"^this\s+is\s+(?:(?:a|an|the)\s+recording\s+of\s+)?(?=\S)"
    r"|^(?:the|this)\s+(?:(?:low|poor|bad|high)\s+quality\s+|amateur\s+|live\s+)?"
    r"(?:recording|audio(?:\s+clip)?|clip|song|music|track|excerpt|piece|video)\s+"
    r"(?:features|contains|includes|has|is)\s+(?:(?:a|an|the)\s+(?=recording\s+of\s+))?(?:recording\s+of\s+)?",
    re.IGNORECASE,
)


def headline(caption: str | None) -> str | None:
    """``caption`` without a content-free opening ("This is a …" → "A …"); None stays None."""
    if not caption:
        return caption
    rest = _BOILERPLATE.sub("", caption, count=1)
    if len(rest.rstrip(".…").split()) < 2:  # nothing informative left: keep the caption as it was
        return caption
    return rest[0].upper() + rest[1:]


def opening_words(text: str | None, *, words: int = CAPTION_WORDS, chars: int = CAPTION_CHARS) -> str | None:
    """The first sentence of ``text`` cut to ``words`` words / ``chars`` characters ("…" when cut)."""
    if not text or not text.strip():
        return None
    first = _SENTENCE_END.split(text.strip(), maxsplit=1)[0].strip()
    tokens = first.split()
    cut = " ".join(tokens[:words])
    if len(cut) > chars:
        cut = cut[:chars].rsplit(" ", 1)[0] or cut[:chars]
    cut = cut.rstrip(" ,;:")
    if cut != first:
        cut = cut.rstrip(".") + "…"
    return cut


def caption_from_doc(
    *, doc: str | None, title: str | None, artist: str | None, genre: str | None, tags: Sequence[str] | None
) -> str | None:
    """The description / vibe text part of a published ``text_doc`` (what follows its title, genre
    and tag sentences, rebuilt exactly by :func:`build_text_doc`); None when there is none."""
    if not doc:
        return None
    head = build_text_doc(title=title, artist=artist, genre=genre, tags=", ".join(tags or []),
                          description=None, vibe=None)
    if not doc.startswith(head):
        return None
    rest = doc[len(head):].strip()
    return rest or None


def source_of(track_id: str, source: str | None = None) -> tuple[str, str]:
    """(readable source name, id within the source) of a track: ``source`` when the bundle has it,
    else the ``name:`` prefix of the id; ids without a prefix are their own source id."""
    prefix, sep, rest = track_id.partition(":")
    key = (source or (prefix if sep else "")).strip().lower()
    name = SOURCE_NAMES.get(key, source or (prefix if sep else "catalogue"))
    return name, (rest if sep else track_id)


class Display(msgspec.Struct, kw_only=True):
    """Display-only identity of one result (the data's own fields are left as they are)."""

    title: str  # the title, else caption opening words (content-free opening dropped), else top tags /
    # genre, else source + id
    title_from: str  # "title" | "caption" | "tags" | "genre" | "source"
    artist: str | None  # the artist as stored (catalogue ids such as "artist_000087" included)
    source: str  # readable source name ("MusicCaps", "MTG-Jamendo", …)
    source_id: str  # the id within that source
    caption: str | None  # opening words of the description / vibe text
    top_tags: list[str]


def audio_type(path: Path) -> str:
    """The Content-Type of an audio file, by extension (``application/octet-stream`` if unknown)."""
    return AUDIO_TYPES.get(path.suffix.lower(), "application/octet-stream")


def inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


@dataclass(frozen=True)
class DisplayTable:
    """Display identity and audio files of the rows of one bundle (looked up per result row)."""

    tracks: pl.DataFrame
    audio_roots: tuple[Path, ...]  # resolved; audio outside these is never served

    @classmethod
    def from_bundle(cls, bundle: Bundle, *, audio_roots: Sequence[Path] = ()) -> "DisplayTable":
        roots = []
        for r in audio_roots:
            try:
                roots.append(Path(r).resolve(strict=True))
            except OSError:
                continue  # a folder that does not exist holds nothing to serve
        return cls(tracks=bundle.tracks, audio_roots=tuple(roots))

    def _row(self, row: int) -> dict[str, object]:
        return self.tracks.row(int(row), named=True)

    def caption(self, row: int, values: dict[str, object] | None = None) -> str | None:
        r = self._row(row) if values is None else values
        for col in (S.DESCRIPTION, S.VIBE_TEXT):
            text = r.get(col)
            if isinstance(text, str) and text.strip():
                return opening_words(text)
        tags = r.get(S.TAGS)
        return opening_words(caption_from_doc(
            doc=r.get(S.TEXT_DOC), title=r.get(S.TITLE), artist=r.get(S.ARTIST), genre=r.get(S.GENRE),
            tags=list(tags) if tags is not None else None,
        ))

    def display(self, row: int) -> Display:
        r = self._row(row)
        track_id = str(r.get(S.TRACK_ID))
        source, source_id = source_of(track_id, r.get(S.SOURCE))
        tags_value = r.get(S.TAGS)
        tags = [t for t in (list(tags_value) if tags_value is not None else []) if t and t.strip()]
        title, artist, genre = r.get(S.TITLE), r.get(S.ARTIST), r.get(S.GENRE)
        caption = self.caption(row, r)
        if isinstance(title, str) and title.strip():
            shown, origin = title.strip(), "title"
        elif caption:
            shown, origin = headline(caption) or caption, "caption"
        elif tags:
            shown, origin = ", ".join(tags[:TOP_TAGS]), "tags"
        elif isinstance(genre, str) and genre.strip():
            shown, origin = genre.strip(), "genre"
        else:
            shown, origin = f"{source} {source_id}", "source"
        return Display(
            title=shown, title_from=origin, artist=artist if isinstance(artist, str) and artist.strip() else None,
            source=source, source_id=source_id, caption=caption, top_tags=tags[:TOP_TAGS],
        )

    def title(self, row: int) -> str:
        return self.display(row).title

    def audio_file(self, row: int) -> Path | None:
        """The real path of the row's audio when it is a file inside an allowed audio folder, else None.

        Relative paths are read against the first allowed folder (the store's own audio folder).
        """
        if S.AUDIO_PATH not in self.tracks.columns or not self.audio_roots:
            return None
        raw = self.tracks[S.AUDIO_PATH][int(row)]
        if not isinstance(raw, str) or not raw.strip():
            return None
        path = Path(raw.strip())
        if not path.is_absolute():
            path = self.audio_roots[0] / path
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        return real if real.is_file() and inside(real, self.audio_roots) else None


class DisplayTables:
    """One :class:`DisplayTable` per loaded bundle (keyed by identity, version and build time; the
    last few kept), all with the same allowed audio folders."""

    def __init__(self, *, audio_roots: Sequence[Path] = (), maxsize: int = 4) -> None:
        self.audio_roots = tuple(audio_roots)
        self._items: OrderedDict[tuple[object, ...], DisplayTable] = OrderedDict()
        self._lock = threading.Lock()
        self._maxsize = maxsize

    def get(self, bundle: Bundle) -> DisplayTable:
        key = (id(bundle), str(bundle.folder), bundle.version, str(bundle.manifest.get("created_at")))
        with self._lock:
            table = self._items.get(key)
            if table is None:
                table = DisplayTable.from_bundle(bundle, audio_roots=self.audio_roots)
                self._items[key] = table
                while len(self._items) > self._maxsize:
                    self._items.popitem(last=False)
            else:
                self._items.move_to_end(key)
            return table
