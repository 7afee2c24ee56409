"""The bench's lean HTTP/1.1 client against real loopback servers.

A threaded ``http.server`` (via ``tests.helpers.LoopbackHandler``) covers the ordinary keep-alive
JSON path; tiny asyncio servers written here produce the edge cases a stock server will not
(chunked bodies, closing idle connections, garbage status lines, stalls).
"""

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from http.server import ThreadingHTTPServer

import msgspec
import pytest

from bench.httpload import ConnectionClosed, HttpPool, MalformedResponse
from tests.helpers import LoopbackHandler


# ------------------------------------------------------------------ threaded http.server (keep-alive)
class _EchoHandler(LoopbackHandler):
    """POST /echo → the JSON body back, with the client port (one per TCP connection)."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        out = {"echo": body, "port": self.client_address[1], "ctype": self.headers["Content-Type"]}
        self.reply(200, body=json.dumps(out).encode(), ctype="application/json")

    def do_GET(self) -> None:
        self.reply(404 if self.path == "/missing" else 200, body=str(self.client_address[1]).encode())


@pytest.fixture(scope="module")
def echo_url():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_post_json_round_trip_and_keep_alive(echo_url: str) -> None:
    body = {"query": "calm piano, rainy night — ünïcode", "top_k": 10, "nested": [1, 2.5, None, True]}

    async def go() -> tuple[list, list, int]:
        async with HttpPool(base_url=echo_url, size=1, timeout_s=5) as pool:
            posts = [await pool.post_json("/echo", body) for _ in range(5)]
            gets = [await pool.get("/missing"), await pool.get("/x")]
            return posts, gets, pool.connects

    posts, gets, connects = asyncio.run(go())
    docs = [msgspec.json.decode(b) for s, b in posts]
    assert all(s == 200 for s, _ in posts)
    assert all(d["echo"] == body and d["ctype"] == "application/json" for d in docs)
    assert len({d["port"] for d in docs}) == 1  # the server saw all five on one connection
    assert gets[0][0] == 404 and gets[1][0] == 200 and int(gets[1][1]) == docs[0]["port"]
    assert connects == 1


def test_pool_bounds_connections_under_concurrency(echo_url: str) -> None:
    async def go() -> tuple[list, int]:
        async with HttpPool(base_url=echo_url, size=3, timeout_s=5) as pool:
            res = await asyncio.gather(*(pool.post_json("/echo", {"i": i}) for i in range(30)))
            return res, pool.connects

    res, connects = asyncio.run(go())
    assert [msgspec.json.decode(b)["echo"]["i"] for _, b in res] == list(range(30))
    assert connects == 3
    assert len({msgspec.json.decode(b)["port"] for _, b in res}) == 3


def test_https_and_bad_urls_rejected() -> None:
    with pytest.raises(ValueError, match="https"):
        HttpPool(base_url="https://127.0.0.1:8443", size=1, timeout_s=1)
    with pytest.raises(ValueError, match="http://"):
        HttpPool(base_url="ftp://127.0.0.1", size=1, timeout_s=1)
    with pytest.raises(ValueError, match="host"):
        HttpPool(base_url="http://127.0.0.1:80/prefix", size=1, timeout_s=1)


# ------------------------------------------------------------------ raw asyncio servers (edge cases)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, dict], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[str, bytes] | None:
    """One request from a raw connection → (request line, body); None on EOF."""
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0], body


async def serve(handler: Handler, test: Callable[[str, dict], Awaitable[None]]) -> None:
    """Run ``handler`` per connection on a loopback port while ``test(base_url, state)`` runs."""
    state: dict = {"conns": 0, "requests": []}

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state["conns"] += 1
        try:
            await handler(reader, writer, state)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    try:
        await test(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", state)
    finally:
        server.close()


def _ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def test_chunked_body_then_keep_alive() -> None:
    payload = msgspec.json.encode({"results": list(range(200))})
    pieces = [payload[:7], payload[7:300], payload[300:]]

    async def handler(reader, writer, state) -> None:
        while (req := await read_request(reader)) is not None:
            state["requests"].append(req[0])
            out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
            for i, p in enumerate(pieces):
                ext = b";name=val" if i == 1 else b""
                out += f"{len(p):X}".encode() + ext + b"\r\n" + p + b"\r\n"
            out += b"0\r\nX-Trailer: yes\r\n\r\n"
            writer.write(out)
            await writer.drain()

    async def test(url: str, state: dict) -> None:
        async with HttpPool(base_url=url, size=1, timeout_s=5) as pool:
            for _ in range(3):
                assert await pool.post_json("/recommend", {"q": 1}) == (200, payload)
        assert state["conns"] == 1 and len(state["requests"]) == 3

    asyncio.run(serve(handler, test))


def test_connection_close_header_retires_connection() -> None:
    async def handler(reader, writer, state) -> None:
        req = await read_request(reader)
        writer.write(_ok(req[1], "Connection: close\r\n"))
        await writer.drain()

    async def test(url: str, state: dict) -> None:
        async with HttpPool(base_url=url, size=1, timeout_s=5) as pool:
            for i in range(3):
                assert await pool.post_json("/p", {"i": i}) == (200, msgspec.json.encode({"i": i}))
            assert pool.connects == 3
        assert state["conns"] == 3

    asyncio.run(serve(handler, test))


def test_body_without_framing_reads_to_eof() -> None:
    async def handler(reader, writer, state) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
        await writer.drain()

    async def test(url: str, state: dict) -> None:
        async with HttpPool(base_url=url, size=1, timeout_s=5) as pool:
            assert await pool.get("/a") == (200, b"until the end")
            assert await pool.get("/b") == (200, b"until the end")
            assert pool.connects == 2

    asyncio.run(serve(handler, test))


@pytest.mark.parametrize("when", ["after_response", "on_next_request"])
def test_reconnect_when_server_closed_idle_connection(when: str) -> None:
    """The server answers one request per connection with keep-alive framing, then drops it.

    ``after_response``: the FIN arrives while the connection is idle (seen before reuse).
    ``on_next_request``: the server reads the next request and closes without a byte of response
    (the keep-alive race), so the client must resend once on a new connection.
    """

    async def handler(reader, writer, state) -> None:
        req = await read_request(reader)
        state["requests"].append(req[0])
        writer.write(_ok(req[1]))
        await writer.drain()
        if when == "on_next_request":
            nxt = await read_request(reader)
            state["dropped"] = state.get("dropped", 0) + (nxt is not None)

    async def test(url: str, state: dict) -> None:
        async with HttpPool(base_url=url, size=1, timeout_s=5) as pool:
            for i in range(4):
                assert await pool.post_json("/p", {"i": i}) == (200, msgspec.json.encode({"i": i}))
                await asyncio.sleep(0.05)
            assert pool.connects == 4
        assert len(state["requests"]) == 4
        if when == "on_next_request":
            assert state["dropped"] == 3  # three requests were resent after a silent close

    asyncio.run(serve(handler, test))


def test_new_connection_closed_without_reply_is_an_error_not_a_retry_loop() -> None:
    async def handler(reader, writer, state) -> None:
        await read_request(reader)

    async def test(url: str, state: dict) -> None:
        async with HttpPool(base_url=url, size=1, timeout_s=5) as pool:
            with pytest.raises(ConnectionClosed, match="without responding"):
                await pool.get("/")
        assert state["conns"] == 1

    asyncio.run(serve(handler, test))


def test_timeout_raises_and_pool_recovers() -> None:
    async def handler(reader, writer, state) -> None:
        while (req := await read_request(reader)) is not None:
            if req[0].startswith("GET /slow"):
                await asyncio.sleep(3)
            writer.write(_ok(b"fast"))
            await writer.drain()

    async def test(url: str, state: dict) -> None:
        async with HttpPool(base_url=url, size=1, timeout_s=0.3) as pool:
            with pytest.raises(TimeoutError, match="0.3"):
                await pool.get("/slow")
            assert await pool.get("/fast") == (200, b"fast")  # slot released, stale connection dropped
            assert pool.connects == 2

    asyncio.run(serve(handler, test))


@pytest.mark.parametrize(
    ("response", "error", "match"),
    [
        (b"HTCPCP/1.0 418 I'm a teapot\r\n\r\n", MalformedResponse, "status line"),
        (b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", MalformedResponse, "status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", MalformedResponse, "header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello", MalformedResponse, "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n", MalformedResponse,
         "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX0\r\n\r\n", MalformedResponse, "CRLF"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nonly a few", ConnectionClosed, "10 of 50"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", ConnectionClosed, "headers"),
    ],
)
def test_malformed_or_truncated_response_raises_clear_error(response: bytes, error: type, match: str) -> None:
    async def handler(reader, writer, state) -> None:
        await read_request(reader)
        writer.write(response)
        await writer.drain()

    async def test(url: str, state: dict) -> None:
        async with HttpPool(base_url=url, size=1, timeout_s=5) as pool:
            with pytest.raises(error, match=match):
                await pool.get("/")

    asyncio.run(serve(handler, test))
