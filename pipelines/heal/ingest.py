"""Read a user's crawl file (CSV, Parquet, JSON Lines) into the crawl schema, with a quarantine.

Every input row ends up in exactly one place: a track (possibly merged with its duplicates) or the
quarantine table, so ``rows_in == ingested + quarantined + duplicates_merged``.

Per row:

- Missing optional columns become null; unknown columns are ignored (listed in ``stats``).
- Coercion only where unambiguous: ``"1,234"`` / ``"1 234"`` / ``"1234.0"`` → 1234 plays; ISO 8601
  dates and SoundCloud's ``2013/03/25 18:13:52 +0000`` → a normalised ISO ``created_at`` (UTC ``…Z``
  when the input had an offset, date only when it had only a date); ``year`` is an integer in
  1900–2100, taken from ``created_at`` when missing. Anything else that does not parse
  (``"abc"`` plays, ``"1.234"`` plays, ``"05/01/2020"``) quarantines the row with its
  ``row_number`` (1-based data row), ``raw`` (JSON of the values as read) and ``reason``.
- A row needs an identity: ``track_id``, ``permalink_url``, or ``title`` + ``artist``.
- Relative ``audio_path`` values resolve against the crawl file's folder.

Duplicates: rows with the same ``track_id`` are one track. A row without a ``track_id`` joins the
track whose normalised permalink (lower-case scheme/host, default port, trailing slash, fragment and
``utm_*`` parameters dropped) it shares, else the other id-less rows with that permalink, else (no
permalink) those with the same title + artist + created_at. Two rows with *different* explicit
``track_id`` values are never merged, even when they share a permalink (clips of one video, a
playlist page): the crawler said they are different tracks. Merging keeps the richest values: the
longest text for title/artist/genre/description/vibe text, the union of tags, the largest
playback_count, the first non-null value elsewhere. A track without ``track_id`` gets a stable one:
``h:`` + sha1 (first 16 hex) of its normalised permalink, else of title|artist|created_at.
"""

import ast
import csv
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import charset_normalizer
import polars as pl
from tqdm.auto import tqdm

from pipelines.errors import IngestError
from pipelines.schema import (
    ARTIST, AUDIO_PATH, CRAWL_COLUMNS, CREATED_AT, DESCRIPTION, GENRE, PERMALINK_URL,
    PLAYBACK_COUNT, RAW, REASON, ROW_NUMBER, SOURCE, TAGS, TITLE, TRACK_ID, VIBE_TEXT, YEAR,
)

CRAWL_DTYPES: dict[str, pl.DataType] = {
    c: (pl.Int32() if c == YEAR else pl.Int64() if c == PLAYBACK_COUNT else pl.Utf8())
    for c in CRAWL_COLUMNS
}
QUARANTINE_DTYPES: dict[str, pl.DataType] = {ROW_NUMBER: pl.Int64(), RAW: pl.Utf8(), REASON: pl.Utf8()}

YEAR_MIN, YEAR_MAX = 1900, 2100
_NULL_TOKENS = frozenset({"", "nan", "NaN", "NAN", "null", "NULL", "None", "none"})
_LONGEST = (TITLE, ARTIST, GENRE, DESCRIPTION, VIBE_TEXT)
_CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}
_JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}


@dataclass(frozen=True)
class IngestResult:
    """``tracks``: (n, 13) crawl schema; ``quarantine``: (q, 3) row_number/raw/reason; ``stats``."""

    tracks: pl.DataFrame
    quarantine: pl.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


# --- value coercion ------------------------------------------------------------------------

def _text(value: Any) -> str | None:
    """Any raw value → stripped string, or None for empty/NaN/null tokens. Lists join with ', '."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (list, tuple)):
        value = ", ".join(t for t in (_text(v) for v in value) if t)
    s = str(value).strip()
    return None if s in _NULL_TOKENS else s


_GROUPED_INT = re.compile(r"^\d{1,3}(?:([, _'\u00a0])\d{3})(?:\1\d{3})*$")
_PLAIN_INT = re.compile(r"^\+?\d+$")
_INTEGRAL_FLOAT = re.compile(r"^\+?(\d+)\.0*$")


INT64_MAX = 2**63 - 1


def _parse_int(value: Any) -> int | None:
    """Unambiguous non-negative integer that fits Int64, or raise ValueError. None stays None."""
    out = _parse_int_unbounded(value)
    if out is not None and out > INT64_MAX:
        raise ValueError
    return out


def _parse_int_unbounded(value: Any) -> int | None:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        if value < 0:
            raise ValueError
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value < 0 or not value.is_integer():
            raise ValueError
        return int(value)
    s = _text(value)
    if s is None:
        return None
    if _PLAIN_INT.match(s):
        return int(s.lstrip("+"))
    if _GROUPED_INT.match(s):
        return int(re.sub(r"\D", "", s))
    m = _INTEGRAL_FLOAT.match(s)
    if m:
        return int(m.group(1))
    raise ValueError


_SOUNDCLOUD_DT = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}$")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _parse_created_at(value: Any) -> tuple[str, int] | None:
    """(normalised ISO string, year) or None for null; raise ValueError when not unambiguous."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        return value.isoformat(), value.year
    else:
        s = _text(value)
        if s is None:
            return None
        if _DATE_ONLY.match(s):
            d = date.fromisoformat(s)
            return d.isoformat(), d.year
        if _SOUNDCLOUD_DT.match(s):
            dt = datetime.strptime(s, "%Y/%m/%d %H:%M:%S %z")
        elif re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", s):
            dt = datetime.fromisoformat(s)
        else:
            raise ValueError
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc)
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ"), dt.year
    return dt.strftime("%Y-%m-%dT%H:%M:%S"), dt.year


def _tags(value: Any) -> str | None:
    """Tags → one comma-separated string (a list, or a list literal in a string, is joined)."""
    if isinstance(value, str) and value.strip().startswith("[") and value.strip().endswith("]"):
        try:
            parsed = json.loads(value)
        except ValueError:
            try:
                parsed = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                parsed = None
        if isinstance(parsed, list):
            value = parsed
    s = _text(value)
    if s is None:
        return None
    items = [t.strip() for t in s.split(",")]
    return ", ".join(t for t in items if t) or None


def normalise_url(*, url: str) -> str:
    """Identity form of a URL: lower-case scheme and host, default port, trailing slash, fragment
    and ``utm_*`` query parameters dropped (other parameters kept in order)."""
    u = url.strip()
    parts = urlsplit(u)
    if not parts.scheme or not parts.netloc:
        return u.rstrip("/")
    scheme = parts.scheme.lower()
    host = parts.netloc.lower()
    if (scheme, host.rsplit(":", 1)[-1]) in {("http", "80"), ("https", "443")}:
        host = host.rsplit(":", 1)[0]
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if not k.lower().startswith("utm_")])
    return urlunsplit((scheme, host, parts.path.rstrip("/"), query, ""))


def _sha(text: str) -> str:
    return "h:" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _fold(text: str | None) -> str:
    return " ".join((text or "").casefold().split())


# --- one row -------------------------------------------------------------------------------

def _clean_row(raw: dict[str, Any], *, base_dir: Path | None, source_name: str) -> tuple[dict[str, Any], list[str]]:
    """Raw crawl-column values → (typed crawl row, problems). Problems non-empty = quarantine."""
    problems: list[str] = []
    row: dict[str, Any] = {c: None for c in CRAWL_COLUMNS}
    for col in (TRACK_ID, TITLE, ARTIST, GENRE, DESCRIPTION, PERMALINK_URL, VIBE_TEXT, AUDIO_PATH, SOURCE):
        row[col] = _text(raw.get(col))
    row[TAGS] = _tags(raw.get(TAGS))

    try:
        row[PLAYBACK_COUNT] = _parse_int(raw.get(PLAYBACK_COUNT))
    except ValueError:
        problems.append(f"bad playback_count: {_text(raw.get(PLAYBACK_COUNT))!r}")

    created_year = None
    try:
        parsed = _parse_created_at(raw.get(CREATED_AT))
        if parsed is not None:
            row[CREATED_AT], created_year = parsed
            if not YEAR_MIN <= created_year <= YEAR_MAX:
                problems.append(f"bad created_at: {_text(raw.get(CREATED_AT))!r} (year outside {YEAR_MIN}-{YEAR_MAX})")
    except ValueError:
        problems.append(f"bad created_at: {_text(raw.get(CREATED_AT))!r} (not an ISO 8601 date)")

    try:
        year = _parse_int(raw.get(YEAR))
        if year is not None and not YEAR_MIN <= year <= YEAR_MAX:
            raise ValueError
        row[YEAR] = year if year is not None else created_year
    except ValueError:
        problems.append(f"bad year: {_text(raw.get(YEAR))!r} (must be an integer {YEAR_MIN}-{YEAR_MAX})")
    if row[YEAR] is not None and not YEAR_MIN <= row[YEAR] <= YEAR_MAX:
        row[YEAR] = None

    if row[AUDIO_PATH] and "://" not in row[AUDIO_PATH] and base_dir is not None:
        p = Path(row[AUDIO_PATH]).expanduser()
        row[AUDIO_PATH] = str(p if p.is_absolute() else (base_dir / p).resolve())
    if row[SOURCE] is None:
        row[SOURCE] = source_name
    if not (row[TRACK_ID] or row[PERMALINK_URL] or (row[TITLE] and row[ARTIST])):
        problems.append("no identity: needs track_id, permalink_url or title+artist")
    return row, problems


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


def _process(
    records: list[tuple[int, dict[str, Any], dict[str, Any] | None, str | None]],
    *, base_dir: Path | None, source_name: str, progress: bool,
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """records: (row_number, raw values for the JSON, crawl-column values or None, read error)."""
    good: list[tuple[int, dict[str, Any]]] = []
    quarantine: list[tuple[int, str, str]] = []
    for row_number, raw, values, read_error in tqdm(records, desc="ingest", unit="row", disable=not progress):
        raw_json = json.dumps(raw, ensure_ascii=False, default=str)
        if read_error is not None or values is None:
            quarantine.append((row_number, raw_json, read_error or "unreadable row"))
            continue
        row, problems = _clean_row(values, base_dir=base_dir, source_name=source_name)
        if problems:
            quarantine.append((row_number, raw_json, "; ".join(problems)))
        else:
            good.append((row_number, row))

    # group duplicates: explicit ids first, then id-less rows by permalink, then by title+artist+date
    groups: dict[str, list[dict[str, Any]]] = {}
    url_owner: dict[str, str] = {}
    for _, row in good:
        if row[TRACK_ID]:
            key = "id:" + row[TRACK_ID]
            groups.setdefault(key, []).append(row)
            if row[PERMALINK_URL]:
                url_owner.setdefault(normalise_url(url=row[PERMALINK_URL]), key)
    for _, row in good:
        if row[TRACK_ID]:
            continue
        if row[PERMALINK_URL]:
            url = normalise_url(url=row[PERMALINK_URL])
            key = url_owner.setdefault(url, "url:" + url)
        else:
            key = "ta:" + "\x1f".join((_fold(row[TITLE]), _fold(row[ARTIST]), row[CREATED_AT] or ""))
        groups.setdefault(key, []).append(row)

    order = {id(row): n for n, row in good}
    tracks = []
    for key, rows in sorted(groups.items(), key=lambda kv: min(order[id(r)] for r in kv[1])):
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


# --- columns -------------------------------------------------------------------------------

def _column_map(columns: list[str], *, what: str) -> tuple[dict[str, str], list[str], list[str]]:
    """Input column → crawl column (case/space-insensitive); plus (missing, ignored) lists."""
    mapping: dict[str, str] = {}
    ignored: list[str] = []
    for col in columns:
        key = re.sub(r"[\s\-]+", "_", str(col).replace("\ufeff", "").strip().lower())
        if key in CRAWL_COLUMNS:
            if key in mapping.values():
                raise IngestError(f"{what}: column {key!r} appears twice")
            mapping[col] = key
        else:
            ignored.append(str(col))
    if not mapping:
        raise IngestError(f"{what}: no crawl columns found (got {columns[:10]}); expected some of {list(CRAWL_COLUMNS)}")
    missing = [c for c in CRAWL_COLUMNS if c not in mapping.values()]
    return mapping, missing, ignored


def _stats(*, rows_in: int, tracks: pl.DataFrame, quarantine: pl.DataFrame, duplicates: int,
           encoding: str | None, note: str, missing: list[str], ignored: list[str]) -> dict[str, Any]:
    stats = {
        "rows_in": rows_in, "ingested": tracks.height, "quarantined": quarantine.height,
        "duplicates_merged": duplicates, "encoding": encoding, "encoding_note": note,
        "columns_missing": missing, "columns_ignored": ignored,
    }
    assert rows_in == stats["ingested"] + stats["quarantined"] + duplicates, stats
    return stats


# --- frames --------------------------------------------------------------------------------

def ingest_frame(*, df: pl.DataFrame, source_name: str, base_dir: Path | None = None,
                 progress: bool = False) -> IngestResult:
    """An in-memory crawl frame (any dtypes) → IngestResult. ``source_name`` fills a null ``source``;
    relative audio paths resolve against ``base_dir`` when given."""
    mapping, missing, ignored = _column_map(df.columns, what=source_name)
    records = []
    for n, raw in enumerate(df.to_dicts(), start=1):
        records.append((n, raw, {mapping[k]: v for k, v in raw.items() if k in mapping}, None))
    tracks, quarantine, dups = _process(records, base_dir=base_dir, source_name=source_name, progress=progress)
    stats = _stats(rows_in=df.height, tracks=tracks, quarantine=quarantine, duplicates=dups,
                   encoding=None, note="in-memory frame", missing=missing, ignored=ignored)
    return IngestResult(tracks=tracks, quarantine=quarantine, stats=stats)


# --- files ---------------------------------------------------------------------------------

_WESTERN = "cp1252"


def decode_bytes(*, data: bytes) -> tuple[str, str, str]:
    """Bytes → (text, encoding, note). UTF-8 (with or without BOM) when valid; otherwise
    charset-normalizer's guess, preferring cp1252 when it ranks cp1252 (or an encoding that decodes
    these bytes identically) as coherent as its best guess (mostly-ASCII Western crawls otherwise
    get e.g. cp852); latin-1 (every byte maps) when it finds nothing, with the reason recorded."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict"), "utf-8-sig", "UTF-8 with byte-order mark"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16", "UTF-16 byte-order mark"
        except UnicodeDecodeError as exc:
            raise IngestError(f"file starts with a UTF-16 byte-order mark but is not valid UTF-16: {exc}") from exc
    try:
        return data.decode("utf-8"), "utf-8", "valid UTF-8"
    except UnicodeDecodeError as exc:
        why = f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
    results = list(charset_normalizer.from_bytes(data))
    if results:
        best = results[0]
        for r in results:
            if (_WESTERN in r.could_be_from_charset and r.chaos <= best.chaos + 1e-9
                    and r.coherence >= best.coherence - 0.05):
                try:
                    return data.decode(_WESTERN), _WESTERN, f"{why}; charset-normalizer ranks {_WESTERN} (as {r.encoding}) as likely as its best guess {best.encoding}"
                except UnicodeDecodeError:
                    break
        try:
            return data.decode(best.encoding), best.encoding, f"{why}; charset-normalizer detected {best.encoding}"
        except (UnicodeDecodeError, LookupError):
            pass
    return data.decode("latin-1"), "latin-1", f"{why}; charset-normalizer found no encoding; decoded as latin-1 (every byte maps; accented characters may be wrong)"


def _decode_file(path: Path, data: bytes) -> tuple[str, str, str]:
    try:
        return decode_bytes(data=data)
    except IngestError as exc:
        raise IngestError(f"{path}: {exc}") from exc


def _csv_records(path: Path) -> tuple[list[tuple[int, dict, dict | None, str | None]], list[str], list[str], str, str]:
    data = path.read_bytes()
    if not data.strip():
        raise IngestError(f"{path}: file is empty")
    text, encoding, note = _decode_file(path, data)
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if (path.suffix.lower() == ".tsv" or ("\t" in first_line and "," not in first_line)) else ","
    csv.field_size_limit(2**31 - 1)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = next(reader)
        mapping, missing, ignored = _column_map(header, what=str(path))
        records = []
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue  # blank line: not a row
            raw = dict(zip(header, fields))
            if len(fields) != len(header):
                raw = {"_fields": fields}
                records.append((len(records) + 1, raw, None,
                                f"wrong number of fields: {len(fields)} (header has {len(header)})"))
                continue
            values = {mapping[h]: v for h, v in zip(header, fields) if h in mapping}
            records.append((len(records) + 1, raw, values, None))
    except csv.Error as exc:
        raise IngestError(f"{path}: not a readable CSV ({exc})") from exc
    return records, missing, ignored, encoding, note


def _jsonl_records(path: Path) -> tuple[list[tuple[int, dict, dict | None, str | None]], list[str], list[str], str, str]:
    text, encoding, note = _decode_file(path, path.read_bytes())
    records: list[tuple[int, dict, dict | None, str | None]] = []
    seen_cols: dict[str, None] = {}
    parsed_rows: list[tuple[int, Any, str | None, str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        n = len(parsed_rows) + 1
        try:
            obj = json.loads(line)
        except ValueError as exc:
            parsed_rows.append((n, None, f"invalid JSON: {exc.msg} at column {exc.colno}", line))
            continue
        if not isinstance(obj, dict):
            parsed_rows.append((n, None, f"not a JSON object: {type(obj).__name__}", line))
            continue
        seen_cols.update(dict.fromkeys(obj))
        parsed_rows.append((n, obj, None, line))
    if not parsed_rows:
        raise IngestError(f"{path}: no JSON lines")
    if not seen_cols:
        raise IngestError(f"{path}: no line is a JSON object")
    mapping, missing, ignored = _column_map(list(seen_cols), what=str(path))
    for n, obj, err, line in parsed_rows:
        if obj is None:
            records.append((n, {"_line": line}, None, err))
        else:
            records.append((n, obj, {mapping[k]: v for k, v in obj.items() if k in mapping}, None))
    return records, missing, ignored, encoding, note


def ingest(*, path: Path, progress: bool = False) -> IngestResult:
    """A crawl file (.csv/.tsv, .parquet, .jsonl/.ndjson/.json lines) → IngestResult.

    ``tracks``: (n, 13) in ``CRAWL_COLUMNS`` order, ``year`` Int32, ``playback_count`` Int64, the rest
    Utf8; ``quarantine``: (q, 3) ``row_number`` Int64, ``raw`` Utf8 (JSON), ``reason`` Utf8; ``stats``:
    rows_in, ingested, quarantined, duplicates_merged, encoding, encoding_note, columns_missing,
    columns_ignored. Raises IngestError when the file cannot be read at all.
    """
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"crawl file not found: {path}")
    suffix = path.suffix.lower()
    base_dir = path.resolve().parent
    if suffix in _PARQUET_SUFFIXES:
        try:
            df = pl.read_parquet(path)
        except Exception as exc:  # polars raises several error types for corrupt files
            raise IngestError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from exc
        result = ingest_frame(df=df, source_name=path.name, base_dir=base_dir, progress=progress)
        result.stats.update(encoding=None, encoding_note="parquet (typed, no text encoding)")
        return result
    if suffix in _CSV_SUFFIXES:
        records, missing, ignored, encoding, note = _csv_records(path)
    elif suffix in _JSONL_SUFFIXES:
        records, missing, ignored, encoding, note = _jsonl_records(path)
    else:
        raise IngestError(f"{path}: unsupported crawl format {suffix!r} (use .csv, .tsv, .parquet or .jsonl)")
    tracks, quarantine, dups = _process(records, base_dir=base_dir, source_name=path.name, progress=progress)
    stats = _stats(rows_in=len(records), tracks=tracks, quarantine=quarantine, duplicates=dups,
                   encoding=encoding, note=note, missing=missing, ignored=ignored)
    return IngestResult(tracks=tracks, quarantine=quarantine, stats=stats)


__all__ = ["IngestError", "IngestResult", "ingest", "ingest_frame", "normalise_url", "decode_bytes",
           "CRAWL_DTYPES", "QUARANTINE_DTYPES"]
