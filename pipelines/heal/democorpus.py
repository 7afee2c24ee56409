"""The bundled demo crawl: real rows from the open datasets in ``data/``, in the crawl schema.

Sources (see ``data/NOTICE.md`` for licences):

- MusicCaps (``corpus/musiccaps.csv``): YouTube clips with a caption and an aspect list.
- MTG-Jamendo (``corpus/mtg_jamendo_tags.csv``): Jamendo tracks with genres, instruments, moods.
- EMOPIA (``emopia/labels.csv``): piano clips; only the YouTube id is metadata. The quadrant label
  is a training target and is never written into any metadata column.
- immich (``audio/immich/labels.csv``): generated instrumental tracks; only the generation style is
  carried over (as genre/tags). The mood folder is a label and is never written into metadata.
- librosa (``audio/librosa/*.ogg`` + ``.txt``): example recordings, music and non-music.

What a source lacks stays null: nothing is invented. Note that EMOPIA clip ids (``Q1_…``) and immich
file names (``calm_…``) encode their labels, so ``track_id`` and ``audio_path`` of those rows are
locators only and must never be turned into features.
"""

import ast
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from pipelines.heal.ingest import CRAWL_DTYPES
from pipelines.schema import (
    ARTIST,
    AUDIO_PATH,
    CRAWL_COLUMNS,
    DESCRIPTION,
    GENRE,
    PERMALINK_URL,
    SOURCE,
    TAGS,
    TITLE,
    TRACK_ID,
)

SOURCE_MUSICCAPS = "musiccaps"
SOURCE_JAMENDO = "mtg_jamendo"
SOURCE_EMOPIA = "emopia"
SOURCE_IMMICH = "immich"
SOURCE_LIBROSA = "librosa"



def label_free_id(*, prefix: str, key: str) -> str:
    """A stable track id that does not spell out a label.

    EMOPIA clip ids (``Q1_…``) and immich file stems (``calm_…``) encode the mood label, and track
    ids are shown to users and may leak into features; a hash of the key keeps ids stable without it.
    """
    import hashlib

    return f"{prefix}:{hashlib.sha1(key.encode('utf-8')).hexdigest()[:12]}"


def _frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    """Rows (dicts with any subset of the crawl columns) → a crawl-schema frame, missing = null."""
    return pl.DataFrame(
        {c: [r.get(c) for r in rows] for c in CRAWL_COLUMNS},
        schema=CRAWL_DTYPES,
    )


def _join_tags(items: list[str]) -> str | None:
    """Comma-separated tag string with duplicates (case-insensitive) dropped; None if empty."""
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        tag = item.replace(",", " ").strip()
        if tag and tag.casefold() not in seen:
            seen.add(tag.casefold())
            out.append(tag)
    return ", ".join(out) if out else None


# --- MusicCaps -----------------------------------------------------------------------------

def musiccaps_rows(*, data_dir: Path) -> pl.DataFrame:
    """MusicCaps → crawl rows (5,521): caption → description, aspect list → tags, YouTube permalink."""
    src = pl.read_csv(data_dir / "corpus" / "musiccaps.csv")
    rows = []
    for ytid, start_s, aspects, caption in src.select("ytid", "start_s", "aspect_list", "caption").iter_rows():
        parsed = ast.literal_eval(aspects) if aspects else []
        rows.append({
            TRACK_ID: f"musiccaps:{ytid}:{start_s}",
            DESCRIPTION: caption.strip() if caption and caption.strip() else None,
            TAGS: _join_tags([str(a) for a in parsed]),
            PERMALINK_URL: f"https://www.youtube.com/watch?v={ytid}&t={start_s}s",
            SOURCE: SOURCE_MUSICCAPS,
        })
    return _frame(rows)


# --- MTG-Jamendo ---------------------------------------------------------------------------

def _split_pipe(value: str | None) -> list[str]:
    return [v for v in (value or "").split("|") if v.strip()]


def jamendo_rows(*, data_dir: Path, limit: int | None = None) -> pl.DataFrame:
    """MTG-Jamendo → crawl rows. ``limit`` keeps a deterministic subset: rows with moods first,
    then the rest, each in ``jamendo_track_id`` order. No titles exist (title stays null)."""
    src = pl.read_csv(data_dir / "corpus" / "mtg_jamendo_tags.csv",
                      schema_overrides={"genres": pl.Utf8, "instruments": pl.Utf8, "moods": pl.Utf8})
    if limit is not None:
        src = (
            src.with_columns(
                (pl.col("moods").is_null() | (pl.col("moods").str.strip_chars() == "")).alias("_no_mood")
            )
            .sort(["_no_mood", "jamendo_track_id"])
            .head(max(limit, 0))
            .sort("jamendo_track_id")
        )
    rows = []
    for jid, artist_id, genres, instruments, moods in src.select(
        "jamendo_track_id", "artist_id", "genres", "instruments", "moods"
    ).iter_rows():
        g = _split_pipe(genres)
        rows.append({
            TRACK_ID: f"jamendo:{jid}",
            ARTIST: artist_id,
            GENRE: g[0] if g else None,
            TAGS: _join_tags(g + _split_pipe(instruments) + _split_pipe(moods)),
            PERMALINK_URL: f"https://www.jamendo.com/track/{jid}",
            SOURCE: SOURCE_JAMENDO,
        })
    return _frame(rows)


# --- EMOPIA --------------------------------------------------------------------------------

def emopia_youtube_id(*, clip_id: str) -> str:
    """``Q1_0vLPYiPN7qY_0`` → ``0vLPYiPN7qY`` (between the first and the last ``_``; ids may hold ``_``)."""
    first, last = clip_id.find("_"), clip_id.rfind("_")
    if first < 0 or last <= first:
        raise ValueError(f"not an EMOPIA clip id: {clip_id!r}")
    return clip_id[first + 1:last]


def emopia_midi_items(*, data_dir: Path) -> list[tuple[str, Path]]:
    """(clip_id, MIDI path) for every clip in ``emopia/labels.csv`` (all splits), sorted by clip id."""
    labels = pl.read_csv(data_dir / "emopia" / "labels.csv")
    midis = data_dir / "emopia" / "midis"
    items = []
    for clip_id in sorted(labels["clip_id"].to_list()):
        path = midis / f"{clip_id}.mid"
        if not path.exists():
            raise FileNotFoundError(f"EMOPIA MIDI missing for {clip_id}: {path}")
        items.append((clip_id, path))
    return items


def emopia_rows(*, data_dir: Path, emopia_audio: Mapping[str, str] | None = None) -> pl.DataFrame:
    """EMOPIA clips → crawl rows: only the YouTube permalink (and rendered audio, if given).
    The quadrant, split and annotator are labels/bookkeeping and are not carried over."""
    labels = pl.read_csv(data_dir / "emopia" / "labels.csv")
    audio = emopia_audio or {}
    rows = []
    for clip_id in sorted(labels["clip_id"].to_list()):
        rows.append({
            TRACK_ID: label_free_id(prefix="emopia", key=clip_id),
            PERMALINK_URL: f"https://www.youtube.com/watch?v={emopia_youtube_id(clip_id=clip_id)}",
            AUDIO_PATH: audio.get(clip_id),
            SOURCE: SOURCE_EMOPIA,
        })
    return _frame(rows)


# --- immich --------------------------------------------------------------------------------

def immich_rows(*, data_dir: Path) -> pl.DataFrame:
    """immich generated tracks → crawl rows: audio path and generation style (genre, tags).
    Title is left null because the file stems (``calm_acoustic_1``) spell the mood label."""
    base = data_dir / "audio" / "immich"
    labels = pl.read_csv(base / "labels.csv")
    rows = []
    for rel, style in labels.select("path", "style").iter_rows():
        path = (base / rel).resolve()
        if not path.exists():
            raise FileNotFoundError(f"immich track missing: {path}")
        rows.append({
            TRACK_ID: label_free_id(prefix="immich", key=path.stem),
            GENRE: style or None,
            TAGS: _join_tags([style]) if style else None,
            AUDIO_PATH: str(path),
            SOURCE: SOURCE_IMMICH,
        })
    return _frame(rows)


# --- librosa -------------------------------------------------------------------------------

_LICENCE_TAIL = re.compile(
    r"\s+(?:is licensed under\b|is in the public domain\b|\(c\)|licensed under\b).*$", re.IGNORECASE
)
_SPOKEN = re.compile(r"\b(?:read|narrated)\s+by\b", re.IGNORECASE)
_PART_OF = re.compile(r'^part of\s+"([^"]+)"\s+by\s+(.+)$', re.IGNORECASE)
_URL = re.compile(r"https?://\S+")
_AUDIO_EXT = re.compile(r"\.(?:wav|flac|mp3|ogg|aiff?)$", re.IGNORECASE)


def parse_attribution_line(*, line: str) -> tuple[str | None, str | None]:
    """(title, artist) from an attribution first line where the pattern is clear, else (None, None).

    Clear patterns: ``<title> by <artist>`` (licence tail stripped), ``Part of "<title>" by <artist>``,
    ``<title> / <artist>``. Readings ("Read by", "narrated by") and free descriptions give nothing.
    """
    text = _LICENCE_TAIL.sub("", line.strip()).strip().rstrip(".").strip()
    if not text or _SPOKEN.search(text):
        return None, None
    m = _PART_OF.match(text)
    if m:
        return m.group(1).strip(), m.group(2).strip()
    if " by " in text:
        title, artist = text.rsplit(" by ", 1)
        if title.strip() and artist.strip():
            return title.strip(), artist.strip()
    parts = [p.strip() for p in text.split(" / ")]
    if len(parts) == 2 and all(parts):
        return _AUDIO_EXT.sub("", parts[0]).strip(), parts[1]
    return None, None


def librosa_rows(*, data_dir: Path) -> pl.DataFrame:
    """librosa example clips → crawl rows: audio path, attribution first line as description,
    title/artist where the first line is clear, permalink = the clip's own page when its attribution
    names one (a page shared by several clips, e.g. the LibriSpeech collection, is not a permalink)."""
    base = data_dir / "audio" / "librosa"
    items = []
    for audio in sorted(base.glob("*.ogg")):
        txt = audio.with_suffix(".txt")
        if not txt.exists():
            raise FileNotFoundError(f"librosa clip without attribution: {txt}")
        lines = [ln.strip() for ln in txt.read_text(encoding="utf-8").splitlines() if ln.strip()]
        first = lines[0] if lines else ""
        urls = [u.rstrip(".,)") for ln in lines for u in _URL.findall(ln)]
        page = next((u for u in urls if "creativecommons.org" not in u and "disclaimer" not in u), None)
        items.append((audio, first, page))
    page_counts = Counter(p for _, _, p in items if p)
    rows = []
    for audio, first, page in items:
        title, artist = parse_attribution_line(line=first)
        rows.append({
            TRACK_ID: f"librosa:{audio.stem}",
            TITLE: title,
            ARTIST: artist,
            DESCRIPTION: first or None,
            PERMALINK_URL: page if page and page_counts[page] == 1 else None,
            AUDIO_PATH: str(audio.resolve()),
            SOURCE: SOURCE_LIBROSA,
        })
    return _frame(rows)


# --- the whole demo crawl ------------------------------------------------------------------

def build_demo_crawl(
    *,
    data_dir: Path,
    jamendo_limit: int | None = None,
    emopia_audio: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """The demo crawl: MusicCaps + MTG-Jamendo (``jamendo_limit`` rows, None = all 55,525) + EMOPIA
    (990) + immich (28) + librosa (14), one row per track, in ``CRAWL_COLUMNS`` order.

    Returns a frame of shape (n, 13): ``year`` Int32, ``playback_count`` Int64, the rest Utf8.
    ``emopia_audio`` maps EMOPIA clip id → rendered audio file (rendering happens elsewhere).
    """
    data_dir = Path(data_dir)
    parts = [
        musiccaps_rows(data_dir=data_dir),
        jamendo_rows(data_dir=data_dir, limit=jamendo_limit),
        emopia_rows(data_dir=data_dir, emopia_audio=emopia_audio),
        immich_rows(data_dir=data_dir),
        librosa_rows(data_dir=data_dir),
    ]
    crawl = pl.concat(parts, how="vertical")
    dupes = crawl.filter(pl.col(TRACK_ID).is_duplicated())
    if dupes.height:
        raise ValueError(f"demo crawl has duplicate track ids: {dupes[TRACK_ID].unique().to_list()[:5]}")
    return crawl.select(CRAWL_COLUMNS)


__all__ = [
    "build_demo_crawl", "emopia_midi_items", "emopia_youtube_id", "parse_attribution_line",
    "musiccaps_rows", "jamendo_rows", "emopia_rows", "immich_rows", "librosa_rows",
]
