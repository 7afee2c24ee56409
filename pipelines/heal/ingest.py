"""Ingest a user's crawl file (CSV, Parquet, JSON Lines) into the crawl schema, with a quarantine.

Every input row ends up in exactly one place: a track (possibly merged with its duplicates) or the
quarantine table, so ``rows_in == ingested + quarantined + duplicates_merged``.

Per row (cells read by `crawlvalues`, files by `crawlfiles`):

- Missing optional columns become null; unknown columns are ignored (listed in ``stats``).
- ``year`` is an integer in 1900–2100, taken from ``created_at`` when missing. A cell that does not
  parse unambiguously (``"abc"`` plays, ``"1.234"`` plays, ``"05/01/2020"``) quarantines the row
  with its ``row_number`` (1-based data row), ``raw`` (JSON of the values as read) and ``reason``.
- A row needs an identity: ``track_id``, ``permalink_url``, or ``title`` + ``artist``.
- Relative ``audio_path`` values resolve against the crawl file's folder.

Duplicates: rows with the same ``track_id`` are one track. A row without a ``track_id`` joins the
track whose normalised permalink (`crawlvalues.normalise_url`) it shares, else the other id-less
rows with that permalink, else (no permalink) those with the same title + artist + created_at. Two
rows with *different* explicit ``track_id`` values are never merged, even when they share a
permalink (clips of one video, a playlist page): the crawler said they are different tracks.
Merging keeps the richest values: the longest text for title/artist/genre/description/vibe text,
the union of tags, the largest playback_count, the first non-null value elsewhere. A track without
``track_id`` gets a stable one: ``h:`` + sha1 (first 16 hex) of its normalised permalink, else of
title|artist|created_at.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from pipelines.errors import IngestError
from pipelines.heal.crawlfiles import (
    CSV_SUFFIXES,
    JSONL_SUFFIXES,
    PARQUET_SUFFIXES,
    Record,
    column_map,
    csv_records,
    jsonl_records,
)
from pipelines.heal.crawlvalues import (
    YEAR_MAX,
    YEAR_MIN,
    normalise_url,
    parse_created_at,
    parse_int,
    tags_value,
    text_value,
)
from pipelines.schema import (
    ARTIST,
    AUDIO_PATH,
    CRAWL_COLUMNS,
    CREATED_AT,
    DESCRIPTION,
    GENRE,
    PERMALINK_URL,
    PLAYBACK_COUNT,
    RAW,
    REASON,
    ROW_NUMBER,
    SOURCE,
    TAGS,
    TITLE,
    TRACK_ID,
    VIBE_TEXT,
    YEAR,
)

CRAWL_DTYPES: dict[str, pl.DataType] = {
    c: (pl.Int32() if c == YEAR else pl.Int64() if c == PLAYBACK_COUNT else pl.Utf8())
    for c in CRAWL_COLUMNS
}
QUARANTINE_DTYPES: dict[str, pl.DataType] = {ROW_NUMBER: pl.Int64(), RAW: pl.Utf8(), REASON: pl.Utf8()}

_TEXT_COLUMNS = (TRACK_ID, TITLE, ARTIST, GENRE, DESCRIPTION, PERMALINK_URL, VIBE_TEXT, AUDIO_PATH, SOURCE)
_LONGEST = (TITLE, ARTIST, GENRE, DESCRIPTION, VIBE_TEXT)


@dataclass(frozen=True)
class IngestResult:
    """``tracks``: (n, 13) crawl schema; ``quarantine``: (q, 3) row_number/raw/reason; ``stats``."""

    tracks: pl.DataFrame
    quarantine: pl.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


def _sha(text: str) -> str:
    return "h:" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _fold(text: str | None) -> str:
    return " ".join((text or "").casefold().split())


# --- one row -------------------------------------------------------------------------------

def _dates(raw: dict[str, Any], row: dict[str, Any], problems: list[str]) -> None:
    """Fill ``created_at`` and ``year`` of ``row`` from ``raw``; append what does not parse."""
    created_year = None
    try:
        parsed = parse_created_at(raw.get(CREATED_AT))
        if parsed is not None:
            row[CREATED_AT], created_year = parsed
            if not YEAR_MIN <= created_year <= YEAR_MAX:
                problems.append(
                    f"bad created_at: {text_value(raw.get(CREATED_AT))!r} (year outside {YEAR_MIN}-{YEAR_MAX})")
    except ValueError:
        problems.append(f"bad created_at: {text_value(raw.get(CREATED_AT))!r} (not an ISO 8601 date)")

    try:
        year = parse_int(raw.get(YEAR))
        if year is not None and not YEAR_MIN <= year <= YEAR_MAX:
            raise ValueError
        row[YEAR] = year if year is not None else created_year
    except ValueError:
        problems.append(f"bad year: {text_value(raw.get(YEAR))!r} (must be an integer {YEAR_MIN}-{YEAR_MAX})")
    if row[YEAR] is not None and not YEAR_MIN <= row[YEAR] <= YEAR_MAX:
        row[YEAR] = None


def _clean_row(raw: dict[str, Any], *, base_dir: Path | None, source_name: str) -> tuple[dict[str, Any], list[str]]:
    """Raw crawl-column values → (typed crawl row, problems). Problems non-empty = quarantine."""
    problems: list[str] = []
    row: dict[str, Any] = dict.fromkeys(CRAWL_COLUMNS)
    for col in _TEXT_COLUMNS:
        row[col] = text_value(raw.get(col))
    row[TAGS] = tags_value(raw.get(TAGS))
    try:
        row[PLAYBACK_COUNT] = parse_int(raw.get(PLAYBACK_COUNT))
    except ValueError:
        problems.append(f"bad playback_count: {text_value(raw.get(PLAYBACK_COUNT))!r}")
    _dates(raw, row, problems)
    if row[AUDIO_PATH] and "://" not in row[AUDIO_PATH] and base_dir is not None:
        p = Path(row[AUDIO_PATH]).expanduser()
        row[AUDIO_PATH] = str(p if p.is_absolute() else (base_dir / p).resolve())
    if row[SOURCE] is None:
        row[SOURCE] = source_name
    if not (row[TRACK_ID] or row[PERMALINK_URL] or (row[TITLE] and row[ARTIST])):
        problems.append("no identity: needs track_id, permalink_url or title+artist")
    return row, problems


# --- duplicates ----------------------------------------------------------------------------

def _merge(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Duplicates of one track → one row with the richest values (see module docstring)."""
    if len(rows) == 1:
        return dict(rows[0])
    out: dict[str, Any] = {}
    for col in CRAWL_COLUMNS:
        values = [r[col] for r in rows if r[col] is not None]
        if not values:
            out[col] = None
        elif col in _LONGEST:
            out[col] = max(values, key=len)  # first of the longest
        elif col == PLAYBACK_COUNT:
            out[col] = max(values)
        elif col == TAGS:  # case-insensitive union, first spelling and order kept
            seen: dict[str, str] = {}
            for t in (t for v in values for t in v.split(", ")):
                seen.setdefault(t.casefold(), t)
            out[col] = ", ".join(seen.values())
        else:
            out[col] = values[0]
    return out


def _group_duplicates(good: list[tuple[int, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Clean rows → groups of one track: explicit ids first, then id-less rows by permalink, then
    by title+artist+created_at. Keys: ``id:``/``url:``/``ta:`` + the identity they share.
    O(n) time and memory (hashed keys; URLs normalised only when id-less rows need them)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    idless: list[dict[str, Any]] = []
    for _, row in good:
        if row[TRACK_ID]:
            groups.setdefault("id:" + row[TRACK_ID], []).append(row)
        else:
            idless.append(row)
    url_owner: dict[str, str] = {}
    if any(row[PERMALINK_URL] for row in idless):  # permalinks of identified rows matter only then
        for _, row in good:
            if row[TRACK_ID] and row[PERMALINK_URL]:
                url_owner.setdefault(normalise_url(url=row[PERMALINK_URL]), "id:" + row[TRACK_ID])
    for row in idless:
        if row[PERMALINK_URL]:
            url = normalise_url(url=row[PERMALINK_URL])
            key = url_owner.setdefault(url, "url:" + url)
        else:
            key = "ta:" + "\x1f".join((_fold(row[TITLE]), _fold(row[ARTIST]), row[CREATED_AT] or ""))
        groups.setdefault(key, []).append(row)
    return groups


def _process(
    records: list[Record], *, base_dir: Path | None, source_name: str, progress: bool,
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Records → (tracks frame, quarantine frame, duplicates merged). O(n) time and memory: one
    Python pass per row (cell parsing), hashed duplicate groups, one sort of the groups."""
    good: list[tuple[int, dict[str, Any]]] = []
    quarantine: list[tuple[int, str, str]] = []
    for row_number, raw, values, read_error in tqdm(records, desc="ingest", unit="row", disable=not progress):
        if read_error is not None or values is None:
            quarantine.append((row_number, json.dumps(raw, ensure_ascii=False, default=str),
                               read_error or "unreadable row"))
            continue
        row, problems = _clean_row(values, base_dir=base_dir, source_name=source_name)
        if problems:
            quarantine.append((row_number, json.dumps(raw, ensure_ascii=False, default=str), "; ".join(problems)))
        else:
            good.append((row_number, row))

    order = {id(row): n for n, row in good}
    tracks = []
    for key, rows in sorted(_group_duplicates(good).items(), key=lambda kv: min(order[id(r)] for r in kv[1])):
        merged = _merge(rows)
        if not merged[TRACK_ID]:
            merged[TRACK_ID] = _sha(key.split(":", 1)[1])
        tracks.append(merged)
    duplicates = len(good) - len(tracks)
    tracks_df = pl.DataFrame({c: [t[c] for t in tracks] for c in CRAWL_COLUMNS}, schema=CRAWL_DTYPES)
    q_df = pl.DataFrame(
        {ROW_NUMBER: [q[0] for q in quarantine], RAW: [q[1] for q in quarantine], REASON: [q[2] for q in quarantine]},
        schema=QUARANTINE_DTYPES,
    )
    return tracks_df, q_df, duplicates


def _stats(*, rows_in: int, tracks: pl.DataFrame, quarantine: pl.DataFrame, duplicates: int,
           encoding: str | None, note: str, missing: list[str], ignored: list[str]) -> dict[str, Any]:
    stats = {
        "rows_in": rows_in, "ingested": tracks.height, "quarantined": quarantine.height,
        "duplicates_merged": duplicates, "encoding": encoding, "encoding_note": note,
        "columns_missing": missing, "columns_ignored": ignored,
    }
    assert rows_in == stats["ingested"] + stats["quarantined"] + duplicates, stats
    return stats


# --- entry points --------------------------------------------------------------------------

def ingest_frame(*, df: pl.DataFrame, source_name: str, base_dir: Path | None = None,
                 progress: bool = False) -> IngestResult:
    """An in-memory crawl frame (any dtypes) → IngestResult. ``source_name`` fills a null ``source``;
    relative audio paths resolve against ``base_dir`` when given. O(n) time and memory."""
    mapping, missing, ignored = column_map(df.columns, what=source_name)
    records: list[Record] = []
    for n, raw in enumerate(df.to_dicts(), start=1):
        records.append((n, raw, {mapping[k]: v for k, v in raw.items() if k in mapping}, None))
    tracks, quarantine, dups = _process(records, base_dir=base_dir, source_name=source_name, progress=progress)
    stats = _stats(rows_in=df.height, tracks=tracks, quarantine=quarantine, duplicates=dups,
                   encoding=None, note="in-memory frame", missing=missing, ignored=ignored)
    return IngestResult(tracks=tracks, quarantine=quarantine, stats=stats)


def ingest(*, path: Path, progress: bool = False) -> IngestResult:
    """A crawl file (.csv/.tsv, .parquet, .jsonl/.ndjson/.json lines) → IngestResult.

    ``tracks``: (n, 13) in ``CRAWL_COLUMNS`` order, ``year`` Int32, ``playback_count`` Int64, the rest
    Utf8; ``quarantine``: (q, 3) ``row_number`` Int64, ``raw`` Utf8 (JSON), ``reason`` Utf8; ``stats``:
    rows_in, ingested, quarantined, duplicates_merged, encoding, encoding_note, columns_missing,
    columns_ignored. Raises IngestError when the file cannot be read at all. O(n) time and memory.
    """
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"crawl file not found: {path}")
    suffix = path.suffix.lower()
    base_dir = path.resolve().parent
    if suffix in PARQUET_SUFFIXES:
        try:
            df = pl.read_parquet(path)
        except Exception as exc:  # polars raises several error types for corrupt files
            raise IngestError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from exc
        result = ingest_frame(df=df, source_name=path.name, base_dir=base_dir, progress=progress)
        result.stats.update(encoding=None, encoding_note="parquet (typed, no text encoding)")
        return result
    if suffix in CSV_SUFFIXES:
        records, missing, ignored, encoding, note = csv_records(path)
    elif suffix in JSONL_SUFFIXES:
        records, missing, ignored, encoding, note = jsonl_records(path)
    else:
        raise IngestError(f"{path}: unsupported crawl format {suffix!r} (use .csv, .tsv, .parquet or .jsonl)")
    tracks, quarantine, dups = _process(records, base_dir=base_dir, source_name=path.name, progress=progress)
    stats = _stats(rows_in=len(records), tracks=tracks, quarantine=quarantine, duplicates=dups,
                   encoding=encoding, note=note, missing=missing, ignored=ignored)
    return IngestResult(tracks=tracks, quarantine=quarantine, stats=stats)
