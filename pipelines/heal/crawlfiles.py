"""Reading a crawl file's rows: text decoding, header mapping, CSV and JSON Lines records.

A record is ``(row_number, raw values, crawl-column values or None, read error or None)``:
``row_number`` is the 1-based data row, ``raw`` what the JSON of a quarantined row shows.
"""

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import charset_normalizer

from pipelines.errors import IngestError
from pipelines.schema import CRAWL_COLUMNS

Record = tuple[int, dict[str, Any], dict[str, Any] | None, str | None]
# records, columns missing, columns ignored, encoding, how the encoding was chosen
FileRecords = tuple[list[Record], list[str], list[str], str, str]

CSV_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
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
                    return data.decode(_WESTERN), _WESTERN, (
                        f"{why}; charset-normalizer ranks {_WESTERN} (as {r.encoding}) as likely as its best "
                        f"guess {best.encoding}")
                except UnicodeDecodeError:
                    break
        try:
            return data.decode(best.encoding), best.encoding, f"{why}; charset-normalizer detected {best.encoding}"
        except (UnicodeDecodeError, LookupError):
            pass
    return data.decode("latin-1"), "latin-1", (
        f"{why}; charset-normalizer found no encoding; decoded as latin-1 (every byte maps; accented "
        "characters may be wrong)")


def _decode_file(path: Path, data: bytes) -> tuple[str, str, str]:
    try:
        return decode_bytes(data=data)
    except IngestError as exc:
        raise IngestError(f"{path}: {exc}") from exc


def column_map(columns: list[str], *, what: str) -> tuple[dict[str, str], list[str], list[str]]:
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
        raise IngestError(
            f"{what}: no crawl columns found (got {columns[:10]}); expected some of {list(CRAWL_COLUMNS)}")
    missing = [c for c in CRAWL_COLUMNS if c not in mapping.values()]
    return mapping, missing, ignored


def csv_records(path: Path) -> FileRecords:
    """A CSV/TSV crawl file's records (blank lines skipped; a row of the wrong width is a read error)."""
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
        mapping, missing, ignored = column_map(header, what=str(path))
        records: list[Record] = []
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue  # blank line: not a row
            raw: dict[str, Any] = dict(zip(header, fields))
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


def jsonl_records(path: Path) -> FileRecords:
    """A JSON Lines crawl file's records (columns: the union of the objects' keys; a line that is
    not a JSON object is a read error)."""
    text, encoding, note = _decode_file(path, path.read_bytes())
    records: list[Record] = []
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
    mapping, missing, ignored = column_map(list(seen_cols), what=str(path))
    for n, obj, err, line in parsed_rows:
        if obj is None:
            records.append((n, {"_line": line}, None, err))
        else:
            records.append((n, obj, {mapping[k]: v for k, v in obj.items() if k in mapping}, None))
    return records, missing, ignored, encoding, note
