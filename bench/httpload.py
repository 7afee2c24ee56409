"""A lean asyncio HTTP/1.1 client for load generation (``moodscape bench``).

Why not httpx: on a small machine the load generator shares the cores with the service under test,
and httpx's async client spends about as much CPU per request as the service does, which caps the
measured throughput. This client does only what a benchmark needs:

- plain ``http://host:port`` (no TLS, no proxies, no redirects, no cookies, no compression);
- a keep-alive pool of at most ``size`` connections, one request in flight per connection;
- ``GET`` and ``POST`` with a JSON body (``msgspec.json``);
- responses framed by ``Content-Length``, ``Transfer-Encoding: chunked``, or connection close;
  ``Connection: close`` (and HTTP/1.0 without keep-alive) retire the connection;
- a reused idle connection that the server closed before any byte of the response arrived is
  replaced and the request is sent once more (the usual keep-alive race; the request never
  reached the application, or was answered with nothing);
- a per-request timeout covering connect, send and the whole response (not the wait for a pool slot).

Errors: :class:`MalformedResponse` for anything that is not a well-formed HTTP/1.x response,
:class:`ConnectionClosed` when the server closes a connection before the response is complete,
``TimeoutError`` when a request exceeds its timeout, ``ValueError`` for an unsupported URL.
"""

import asyncio
import contextlib
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import msgspec

MAX_HEADERS = 100
_NO_BODY_STATUS = frozenset({204, 304})


class HttpLoadError(Exception):
    """Base of this module's protocol errors."""


class MalformedResponse(HttpLoadError):
    """The server's bytes are not a well-formed HTTP/1.x response."""


class ConnectionClosed(HttpLoadError):
    """The server closed the connection before the response was complete."""


class _Conn:
    """One TCP connection: a stream pair plus whether any response bytes have been read on it yet."""

    __slots__ = ("reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = False  # True once a request was answered on it (i.e. it came from the idle pool)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _EmptyReply(Exception):
    """Internal: EOF/reset before the first byte of the status line (retryable on a reused connection)."""


def parse_base_url(base_url: str) -> tuple[str, int]:
    """``http://host[:port]`` → (host, port); raises ``ValueError`` for other schemes or a path/query."""
    parts = urlsplit(base_url)
    if parts.scheme == "https":
        raise ValueError(f"https is not supported by the load generator (plain http:// only): {base_url!r}")
    if parts.scheme != "http":
        raise ValueError(f"base_url must start with http://, got {base_url!r}")
    if not parts.hostname:
        raise ValueError(f"base_url has no host: {base_url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"base_url must be just http://host[:port], got {base_url!r}")
    return parts.hostname, parts.port or 80


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, int, dict[str, str]]:
    """Status line + header block → (version, status, headers with lower-cased names; repeats joined by ",")."""
    try:
        line = await reader.readline()
    except (ConnectionResetError, BrokenPipeError) as exc:
        raise _EmptyReply from exc
    if not line:
        raise _EmptyReply
    if not line.endswith(b"\n"):
        raise ConnectionClosed(f"connection closed inside the status line: {line[:80]!r}")
    parts = line.rstrip(b"\r\n").split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or len(parts[1]) != 3 or not parts[1].isdigit():
        raise MalformedResponse(f"malformed status line: {line[:80]!r}")
    version, status = parts[0].decode(), int(parts[1])
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        raw = await reader.readline()
        if not raw.endswith(b"\n"):
            raise ConnectionClosed("connection closed inside the response headers")
        if raw in (b"\r\n", b"\n"):
            return version, status, headers
        name, sep, value = raw.partition(b":")
        if not sep or not name or name != name.strip():
            raise MalformedResponse(f"malformed header line: {raw[:80]!r}")
        key = name.decode("latin-1").lower()
        val = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]},{val}" if key in headers else val
    raise MalformedResponse(f"more than {MAX_HEADERS} response headers")


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A ``Transfer-Encoding: chunked`` body (chunk extensions ignored, trailers read and dropped)."""
    out = bytearray()
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise ConnectionClosed("connection closed inside a chunked body")
        size_s = line.split(b";", 1)[0].strip()
        try:
            size = int(size_s, 16)
        except ValueError:
            raise MalformedResponse(f"malformed chunk size line: {line[:80]!r}") from None
        if size < 0 or not size_s.isalnum():
            raise MalformedResponse(f"malformed chunk size line: {line[:80]!r}")
        if size == 0:
            break
        out += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise MalformedResponse("chunk data not followed by CRLF")
    for _ in range(MAX_HEADERS + 1):  # trailer section
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise ConnectionClosed("connection closed inside the chunked trailer")
        if line in (b"\r\n", b"\n"):
            return bytes(out)
    raise MalformedResponse("too many chunked trailer lines")


class HttpPool:
    """A keep-alive pool of HTTP/1.1 connections to one ``http://host:port``.

    ``size`` bounds the open connections (and so the requests in flight); extra requests wait for a
    free connection. ``timeout_s`` bounds each request's connect + send + full response read.
    ``connects`` counts TCP connections opened so far (a keep-alive check for callers and tests).
    Use as ``async with HttpPool(...) as pool:`` or call :meth:`aclose`.
    """

    def __init__(self, *, base_url: str, size: int, timeout_s: float) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.host, self.port = parse_base_url(base_url)
        self.size = size
        self.timeout_s = float(timeout_s)
        self.connects = 0
        self._host_header = self.host if self.port == 80 else f"{self.host}:{self.port}"
        if ":" in self.host:  # IPv6 literal
            self._host_header = f"[{self.host}]" + ("" if self.port == 80 else f":{self.port}")
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Conn] = []
        self._closed = False

    # ------------------------------------------------------------------ public API
    async def post_json(self, path: str, body: Any) -> tuple[int, bytes]:
        """``POST path`` with ``body`` encoded by ``msgspec.json`` → (status, response body bytes)."""
        data = msgspec.json.encode(body)
        return await self.request(method="POST", path=path, body=data, content_type="application/json")

    async def get(self, path: str) -> tuple[int, bytes]:
        """``GET path`` → (status, response body bytes)."""
        return await self.request(method="GET", path=path)

    async def request(
        self, *, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
    ) -> tuple[int, bytes]:
        """Send one request on a pooled connection → (status, body bytes); see the module docstring for errors."""
        if self._closed:
            raise RuntimeError("HttpPool is closed")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        head = [f"{method} {path} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        if content_type:
            head.append(f"Content-Type: {content_type}\r\n")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body or b'')}\r\n")
        head.append("\r\n")
        payload = "".join(head).encode("latin-1") + (body or b"")
        async with self._slots:
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await self._exchange(payload=payload, head_only=method == "HEAD")
            except TimeoutError:
                raise TimeoutError(f"{method} {path} took longer than {self.timeout_s:g} s") from None

    async def aclose(self) -> None:
        """Close idle connections; connections in use are closed when their request finishes."""
        self._closed = True
        idle, self._idle = self._idle, []
        for c in idle:
            c.close()
        for c in idle:
            with contextlib.suppress(Exception):
                await c.writer.wait_closed()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ internals
    async def _connect(self) -> _Conn:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.connects += 1
        return _Conn(reader, writer)

    async def _send_and_head(self, conn: _Conn, payload: bytes) -> tuple[str, int, dict[str, str]]:
        """Write the request and read the final response head; a dead connection shows as ``_EmptyReply``."""
        try:
            conn.writer.write(payload)
            await conn.writer.drain()
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise _EmptyReply from exc
        return await self._read_final_head(conn)

    async def _exchange(self, *, payload: bytes, head_only: bool) -> tuple[int, bytes]:
        conn = None
        while self._idle:  # skip idle connections whose EOF has already been seen
            conn = self._idle.pop()
            if not conn.reader.at_eof():
                break
            conn.close()
            conn = None
        if conn is None:
            conn = await self._connect()
        keep = False
        try:
            try:
                version, status, headers = await self._send_and_head(conn, payload)
            except _EmptyReply:
                if not conn.used:
                    raise ConnectionClosed("server closed a new connection without responding") from None
                conn.close()  # stale keep-alive connection: retry once on a fresh one
                conn = await self._connect()
                try:
                    version, status, headers = await self._send_and_head(conn, payload)
                except _EmptyReply:
                    raise ConnectionClosed("server closed a new connection without responding") from None
            body, keep = await self._read_body(conn, version, status, headers, head_only)
            conn.used = True
            return status, body
        except asyncio.IncompleteReadError as exc:
            raise ConnectionClosed(f"connection closed mid-response ({len(exc.partial)} of "
                                   f"{exc.expected} bytes read)") from None
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise ConnectionClosed(f"connection reset mid-response: {exc!r}") from None
        except ValueError as exc:  # StreamReader.readline raises ValueError on a line over the stream limit
            raise MalformedResponse(f"unreadable response: {exc}") from None
        finally:
            if keep and not self._closed:
                self._idle.append(conn)
            else:
                conn.close()

    async def _read_final_head(self, conn: _Conn) -> tuple[str, int, dict[str, str]]:
        """The first non-1xx response head (interim 100/102/103 responses are skipped)."""
        first = True
        while True:
            try:
                version, status, headers = await _read_head(conn.reader)
            except _EmptyReply:
                if first:
                    raise
                raise ConnectionClosed("connection closed after an interim 1xx response") from None
            if not 100 <= status < 200 or status == 101:
                return version, status, headers
            first = False

    async def _read_body(
        self, conn: _Conn, version: str, status: int, headers: dict[str, str], head_only: bool,
    ) -> tuple[bytes, bool]:
        """(body, whether the connection may be reused)."""
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
        if status == 101:
            raise MalformedResponse("unexpected 101 Switching Protocols")
        if head_only or status in _NO_BODY_STATUS:
            return b"", keep
        te = headers.get("transfer-encoding")
        if te is not None:
            codings = [c.strip().lower() for c in te.split(",") if c.strip()]
            if codings and codings[-1] == "chunked":
                if codings != ["chunked"]:
                    raise MalformedResponse(f"unsupported transfer-encoding {te!r}")
                return await _read_chunked(conn.reader), keep
            return await conn.reader.read(), False  # close-delimited
        cl = headers.get("content-length")
        if cl is not None:
            values = {v.strip() for v in cl.split(",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise MalformedResponse(f"bad Content-Length {cl!r}")
            n = int(next(iter(values)))
            return (await conn.reader.readexactly(n) if n else b""), keep
        return await conn.reader.read(), False  # no framing: the body runs to EOF
