"""``GET /tracks/{track_id}/audio``: a track's audio file with HTTP range requests (RFC 9110 §14).

The file is the ``audio_path`` of the served version's row (never a path from the request), served
only when its real path lies inside an allowed audio folder (:class:`serving.display.DisplayTable`).
One ``bytes=`` range is answered 206 with ``Content-Range``; a range that cannot be satisfied or
cannot be parsed is 416 with ``Content-Range: bytes */size``; several ranges or another unit are
ignored (200, the whole file).
"""

import os
import re
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.response import Stream

from pipelines.errors import UnknownTrackError
from serving.display import audio_type

CHUNK = 64 * 1024
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class RangeNotSatisfiable(Exception):
    """The Range header asks for nothing the file holds (or cannot be parsed)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte of a single ``bytes=`` range, or None for the whole file.

    None: no header, another unit, or several ranges (all of which the server may ignore).
    RangeNotSatisfiable: a malformed ``bytes=`` range, a first byte at or past the end, a suffix
    of zero bytes, or last < first.
    """
    if header is None or not header.strip():
        return None
    unit = header.split("=", 1)[0].strip().lower()
    if unit != "bytes":
        return None
    if "," in header:
        return None
    m = _RANGE.match(header)
    if m is None:
        raise RangeNotSatisfiable(header)
    first, last = m.group(1), m.group(2)
    if not first and not last:
        raise RangeNotSatisfiable(header)
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - n), size - 1
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable(header)
    return start, end


def file_chunks(path: Path, start: int, end: int) -> Iterator[bytes]:
    """Bytes ``start..end`` (inclusive) of ``path`` in CHUNK-sized pieces."""
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start + 1
        while left > 0:
            data = f.read(min(CHUNK, left))
            if not data:
                return
            left -= len(data)
            yield data


@get("/tracks/{track_id:str}/audio", sync_to_thread=True, include_in_schema=True)
def track_audio(track_id: str, request: Request, state: State) -> Response:
    """The track's audio (``Range: bytes=…`` supported); 404 naming the track when it has no audio
    the service may serve, 416 for a range outside the file."""
    with state.holder.lease() as rec:
        row = int(rec.rows_of([track_id])[0])
        if row < 0:
            raise UnknownTrackError(track_id, field="track_id")
        path = state.displays.get(rec.bundle).audio_file(row)
    if path is None:
        raise NotFoundException(detail=f"track {track_id!r} has no audio in this store")
    stat = os.stat(path)
    size = stat.st_size
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{stat.st_mtime_ns:x}-{size:x}"',
        "Last-Modified": formatdate(stat.st_mtime, usegmt=True),
        "Cache-Control": "no-cache",
    }
    try:
        wanted = parse_range(request.headers.get("range"), size)
    except RangeNotSatisfiable:
        return Response(b"", status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"},
                        media_type=audio_type(path))
    if_range = request.headers.get("if-range")
    if wanted is not None and if_range is not None and if_range.strip() != headers["ETag"]:
        wanted = None  # the client's copy is another version: send the whole file
    start, end = wanted if wanted is not None else (0, size - 1)
    headers["Content-Length"] = str(max(0, end - start + 1))
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Stream(
        file_chunks(path, start, end) if size else iter(()),
        status_code=206 if wanted is not None else 200,
        media_type=audio_type(path),
        headers=headers,
    )
