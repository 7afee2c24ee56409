"""Reading one crawl cell: text, unambiguous integers, dates, tag lists and identity URLs.

Coercion only where unambiguous: ``"1,234"`` / ``"1 234"`` / ``"1234.0"`` → 1234; ISO 8601 dates
and SoundCloud's ``2013/03/25 18:13:52 +0000`` → a normalised ISO string (UTC ``…Z`` when the input
had an offset, date only when it had only a date). Anything else raises ValueError.
"""

import ast
import json
import math
import re
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

YEAR_MIN, YEAR_MAX = 1900, 2100
INT64_MAX = 2**63 - 1
_NULL_TOKENS = frozenset({"", "nan", "NaN", "NAN", "null", "NULL", "None", "none"})
_GROUPED_INT = re.compile(r"^\d{1,3}(?:([, _'\u00a0])\d{3})(?:\1\d{3})*$")
_PLAIN_INT = re.compile(r"^\+?\d+$")
_INTEGRAL_FLOAT = re.compile(r"^\+?(\d+)\.0*$")
_SOUNDCLOUD_DT = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}$")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def text_value(value: Any) -> str | None:
    """Any raw value → stripped string, or None for empty/NaN/null tokens. Lists join with ', '."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (list, tuple)):
        value = ", ".join(t for t in (text_value(v) for v in value) if t)
    s = str(value).strip()
    return None if s in _NULL_TOKENS else s


def parse_int(value: Any) -> int | None:
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
    s = text_value(value)
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


def parse_created_at(value: Any) -> tuple[str, int] | None:
    """(normalised ISO string, year) or None for null; raise ValueError when not unambiguous."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        return value.isoformat(), value.year
    else:
        s = text_value(value)
        if s is None:
            return None
        if _DATE_ONLY.match(s):
            d = date.fromisoformat(s)
            return d.isoformat(), d.year
        if _SOUNDCLOUD_DT.match(s):
            dt = datetime.strptime(s, "%Y/%m/%d %H:%M:%S %z")
        elif _ISO_DATETIME.match(s):
            dt = datetime.fromisoformat(s)
        else:
            raise ValueError
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc)
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ"), dt.year
    return dt.strftime("%Y-%m-%dT%H:%M:%S"), dt.year


def tags_value(value: Any) -> str | None:
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
    s = text_value(value)
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
