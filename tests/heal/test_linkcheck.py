"""Link checker against a real HTTP(S) server on 127.0.0.1 started by the tests.

All traffic goes to loopback. Redirects to 10.0.0.1 / 169.254.169.254 must be refused by
classification before any socket is opened: a recording network backend proves it.
"""

import email.utils
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpcore
import httpx
import polars as pl
import pytest

from pipelines.heal.links.check import (
    LINK_STATUS_SCHEMA,
    LinkCheckConfig,
    _same_resource,
    check_links,
    parse_retry_after,
)
from pipelines.schema import CHECKED_AT, FINAL_URL, HTTP_CODE, LINK_STATUSES, REASON, URL_STATUS
from tests.helpers import LoopbackHandler


# --------------------------------------------------------------------------- test server
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, *, tls_context: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tls_context = tls_context
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.hits: list[tuple[str, str, str, bool]] = []  # method, path, Host header, tls
            self.counters: dict[str, int] = {}
            self.inflight = 0
            self.max_inflight = 0

    def paths(self) -> list[str]:
        with self.lock:
            return [h[1] for h in self.hits]

    def finish_request(self, request, client_address) -> None:  # noqa: ANN001
        finish_maybe_tls(self, request, client_address, self.tls_context)


class _Handler(LoopbackHandler):
    server: _Server

    def do_HEAD(self) -> None:  # noqa: N802
        self._route(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._route(head=False)

    def _route(self, *, head: bool) -> None:
        srv = self.server
        tls = isinstance(self.connection, ssl.SSLSocket)
        path = self.path.split("?", 1)[0]
        with srv.lock:
            srv.hits.append((self.command, self.path, self.headers.get("Host", ""), tls))
            srv.counters[self.path] = srv.counters.get(self.path, 0) + 1
            count = srv.counters[self.path]
        port = srv.server_address[1]
        if path == "/ok" or path == "/echo" or path == "/slash/":
            self.reply(200, body=b"hello")
        elif path == "/head405":
            self.reply(405 if head else 200, body=b"get only")
        elif path == "/hang-head":
            if head:
                self.close_connection = True  # drop the connection without answering
                return
            self.reply(200, body=b"ok")
        elif path == "/moved":
            self.reply(301, headers={"Location": "/ok"})
        elif path == "/slash":
            self.reply(301, headers={"Location": "/slash/"})
        elif path == "/loop-a":
            self.reply(302, headers={"Location": "/loop-b"})
        elif path == "/loop-b":
            self.reply(302, headers={"Location": f"http://127.0.0.1:{port}/loop-a"})
        elif path.startswith("/chain/"):
            n = int(path.rsplit("/", 1)[1])
            self.reply(302, headers={"Location": f"/chain/{n + 1}"})
        elif path == "/no-location":
            self.reply(302)
        elif path == "/gone404":
            self.reply(404, body=b"not found")
        elif path == "/gone410":
            self.reply(410, body=b"gone")
        elif path == "/auth401":
            self.reply(401, headers={"WWW-Authenticate": 'Basic realm="x"'})
        elif path == "/forbidden":
            self.reply(403, body=b"private track")
        elif path == "/cdn403":
            self.reply(403, headers={"cf-ray": "8c1d2e3f4a5b6c7d-AMS"}, body=b"error 1020")
        elif path == "/captcha403":
            self.reply(403, body=b"<html><title>Just a moment</title>Please solve the CAPTCHA</html>")
        elif path == "/rate-once":
            if count == 1:
                self.reply(429, headers={"Retry-After": "0"})
            else:
                self.reply(200, body=b"ok")
        elif path == "/rate-always":
            self.reply(429, headers={"Retry-After": "0"})
        elif path == "/err500":
            self.reply(500, body=b"boom")
        elif path == "/slow":
            time.sleep(1.5)
            self.reply(200, body=b"late")
        elif path == "/concurrent":
            with srv.lock:
                srv.inflight += 1
                srv.max_inflight = max(srv.max_inflight, srv.inflight)
            time.sleep(0.15)
            with srv.lock:
                srv.inflight -= 1
            self.reply(200, body=b"ok")
        elif path == "/upgrade":
            if tls:
                self.reply(200, body=b"secure")
            else:
                self.reply(301, headers={"Location": f"https://localhost:{port}/upgrade"})
        elif path == "/to-private":
            self.reply(302, headers={"Location": "http://10.0.0.1/"})
        elif path == "/to-metadata":
            self.reply(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/to-decimal":
            self.reply(302, headers={"Location": f"http://2130706433:{port}/ok"})
        elif path == "/to-ftp":
            self.reply(302, headers={"Location": "ftp://example.org/track.mp3"})
        else:
            self.reply(404)


def _make_cert(tmp: Path) -> tuple[Path, Path] | None:
    if shutil.which("openssl") is None:
        return None
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    cmd = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]
    done = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
    return (cert, key) if done.returncode == 0 else None


@pytest.fixture(scope="module")
def server_and_cert(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Server, Path | None]]:
    pair = _make_cert(tmp_path_factory.mktemp("tls"))
    ctx = None
    if pair is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile=str(pair[0]), keyfile=str(pair[1]))
    srv = _Server(tls_context=ctx)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv, (pair[0] if pair else None)
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture()
def server(server_and_cert: tuple[_Server, Path | None]) -> _Server:
    srv = server_and_cert[0]
    srv.reset()
    return srv


def finish_maybe_tls(server, request, client_address, tls_context: ssl.SSLContext | None) -> None:  # noqa: ANN001
    """Serve one connection as https when it opens with a TLS ClientHello (byte 0x16), else http:
    one loopback port speaks both, so scheme-only redirects can be tested for real."""
    if tls_context is not None:
        request.settimeout(5)
        try:
            first = request.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if first == b"\x16":
            try:
                request = tls_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # client refused our certificate
            try:
                server.RequestHandlerClass(request, client_address, server)
            finally:
                request.close()
            return
    server.RequestHandlerClass(request, client_address, server)


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Delegates to httpcore's anyio backend and records every (host, port) it is asked to connect to."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.connects: list[tuple[str, int]] = []

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # noqa: ANN001, ANN201
        self.connects.append((host, port))
        return await self.inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options,
        )

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):  # noqa: ANN001, ANN201
        raise AssertionError("no unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


FAST = LinkCheckConfig(
    allow_hosts=frozenset({"127.0.0.1"}), min_interval_s=0.0, connect_timeout_s=2.0,
    read_timeout_s=0.3, total_timeout_s=3.0, backoff_base_s=0.01, backoff_cap_s=0.05,
    retry_after_cap_s=1.0, max_hops=5,
)


def _base(srv: _Server) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


def _rows(frame: pl.DataFrame) -> dict[str, dict]:
    return {r["track_id"]: r for r in frame.iter_rows(named=True)}


# --------------------------------------------------------------------------- status rules
EXPECTED = [
    # path, status, reason, http_code, final path (None: final_url is the URL itself)
    ("/ok", "VALID", "ok", 200, None),
    ("/head405", "VALID", "ok", 200, None),
    ("/hang-head", "VALID", "ok", 200, None),
    ("/moved", "MOVED", "redirected", 200, "/ok"),
    ("/slash", "VALID", "ok", 200, "/slash/"),
    ("/loop-a", "UNKNOWN", "redirect_loop", 302, "/loop-a"),
    ("/chain/0", "UNKNOWN", "too_many_redirects", 302, "/chain/6"),
    ("/no-location", "UNKNOWN", "redirect_without_location", 302, None),
    ("/gone404", "DEAD", "http_404", 404, None),
    ("/gone410", "DEAD", "http_410", 410, None),
    ("/auth401", "REQUIRES_AUTH", "http_401", 401, None),
    ("/forbidden", "REQUIRES_AUTH", "http_403", 403, None),
    ("/cdn403", "UNKNOWN", "blocked_by_cdn", 403, None),
    ("/captcha403", "UNKNOWN", "blocked_by_cdn", 403, None),
    ("/rate-once", "VALID", "ok", 200, None),
    ("/err500", "UNKNOWN", "http_5xx", 500, None),
    ("/to-private", "BLOCKED", "private", 302, None),
    ("/to-metadata", "BLOCKED", "metadata", 302, None),
    ("/to-ftp", "BLOCKED", "scheme_not_allowed", 302, None),
]


def test_status_rules_against_live_server(server: _Server) -> None:
    base = _base(server)
    backend = RecordingBackend()
    items = [(path, base + path) for path, *_ in EXPECTED]
    frame = check_links(items, config=FAST, network_backend=backend)
    rows = _rows(frame)
    for path, status, reason, code, final in EXPECTED:
        row = rows[path]
        assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == (status, reason, code), path
        if final is not None:
            assert row[FINAL_URL] == base + final, path
    assert rows["/to-private"][FINAL_URL] == "http://10.0.0.1/"
    assert rows["/to-metadata"][FINAL_URL] == "http://169.254.169.254/latest/meta-data/"
    # Redirects to 10.0.0.1 / 169.254.169.254 / ftp were refused before any connection.
    assert backend.connects and all(host == "127.0.0.1" for host, _ in backend.connects)
    # the redirect chain stopped at max_hops: /chain/0 .. /chain/5 fetched, /chain/6 never
    chain = sorted(p for p in server.paths() if p.startswith("/chain/"))
    assert "/chain/5" in chain and "/chain/6" not in chain
    # the 429 was retried once after Retry-After: 0
    assert server.paths().count("/rate-once") == 2


def test_head_fallbacks_to_get(server: _Server) -> None:
    base = _base(server)
    frame = check_links([("a", base + "/hang-head")], config=FAST)
    assert frame[URL_STATUS].to_list() == ["VALID"]
    assert [h[0] for h in server.hits] == ["HEAD", "GET"]  # HEAD dropped, GET answered
    server.reset()
    frame = check_links([("a", base + "/head405"), ("b", base + "/ok")], config=replace(FAST, concurrency=1))
    assert frame[URL_STATUS].to_list() == ["VALID", "VALID"]
    # 405 to HEAD → GET; the host is then remembered as HEAD-less and gets GET directly
    assert [(h[0], h[1]) for h in server.hits] == [("HEAD", "/head405"), ("GET", "/head405"), ("GET", "/ok")]


def test_403_reads_body_prefix_for_captcha(server: _Server) -> None:
    frame = check_links([("a", _base(server) + "/captcha403")], config=replace(FAST, max_body_bytes=4096))
    assert frame[REASON].to_list() == ["blocked_by_cdn"]
    assert [h[0] for h in server.hits] == ["HEAD", "GET"]
    server.reset()
    # with no body read allowed, the captcha page is indistinguishable from a plain 403
    frame = check_links([("a", _base(server) + "/captcha403")], config=replace(FAST, max_body_bytes=0))
    assert frame[REASON].to_list() == ["http_403"]


def test_rate_limited_after_retries(server: _Server) -> None:
    frame = check_links([("a", _base(server) + "/rate-always")], config=replace(FAST, max_retries_429=2))
    assert (frame[URL_STATUS][0], frame[REASON][0], frame[HTTP_CODE][0]) == ("UNKNOWN", "rate_limited", 429)
    assert server.paths().count("/rate-always") == 3  # first try + 2 retries


def test_slow_response_times_out(server: _Server) -> None:
    start = time.monotonic()
    frame = check_links([("a", _base(server) + "/slow")], config=FAST)
    elapsed = time.monotonic() - start
    assert (frame[URL_STATUS][0], frame[REASON][0]) == ("UNKNOWN", "timeout")
    assert elapsed < 1.4  # HEAD and GET each gave up after read_timeout_s=0.3


def test_deadline_bounds_the_whole_run(server: _Server) -> None:
    cfg = replace(FAST, read_timeout_s=5.0, total_timeout_s=5.0, concurrency=1, deadline_s=0.4)
    items = [(str(i), f"{_base(server)}/slow?i={i}") for i in range(4)]
    start = time.monotonic()
    frame = check_links(items, config=cfg)
    elapsed = time.monotonic() - start
    assert frame[REASON].to_list() == ["deadline"] * 4
    assert elapsed < 1.2
    assert len(server.hits) == 1  # one request was in flight; the rest never started


def test_connection_refused_is_connect_error(server: _Server) -> None:
    # a loopback port nobody listens on (bound, then closed)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    frame = check_links([("a", f"http://127.0.0.1:{port}/x")], config=FAST)
    assert (frame[URL_STATUS][0], frame[REASON][0]) == ("UNKNOWN", "connect_error")


def test_unresolvable_host_is_dns_error() -> None:
    # a 64-character label cannot even be encoded for the resolver: fails locally, no DNS packet
    backend = RecordingBackend()
    frame = check_links([("a", "http://" + "a" * 64 + ".example/t")], config=FAST, network_backend=backend)
    assert (frame[URL_STATUS][0], frame[REASON][0]) == ("UNKNOWN", "dns_error")
    assert backend.connects == []


def test_a_host_that_failed_dns_is_not_queued_again() -> None:
    """Once a name failed to resolve, its other URLs fail fast instead of waiting on the host's
    rate gate (min_interval 1 s would make 30 URLs take ~30 s)."""
    import time as _time

    host = "a" * 64 + ".example"
    items = [(str(i), f"http://{host}/t{i}") for i in range(30)]
    start = _time.perf_counter()
    frame = check_links(items, config=replace(FAST, min_interval_s=1.0, per_host=1))
    assert _time.perf_counter() - start < 5.0
    assert set(frame[REASON].to_list()) == {"dns_error"}


# --------------------------------------------------------------------------- policy
def test_loopback_blocked_without_allow_hosts(server: _Server) -> None:
    port = server.server_address[1]
    backend = RecordingBackend()
    cfg = replace(FAST, allow_hosts=frozenset())
    items = [
        ("ip", f"http://127.0.0.1:{port}/ok"),
        ("decimal", f"http://2130706433:{port}/ok"),
        ("short", f"http://127.1:{port}/ok"),
        ("hex", f"http://0x7f.0.0.1:{port}/ok"),
        ("v6", f"http://[::1]:{port}/ok"),
        ("name", f"http://localhost:{port}/ok"),  # refused after resolution, inside the transport
    ]
    rows = _rows(check_links(items, config=cfg, network_backend=backend))
    for track_id, _ in items:
        assert (rows[track_id][URL_STATUS], rows[track_id][REASON]) == ("BLOCKED", "loopback"), track_id
    assert server.hits == []
    assert backend.connects == []


def test_redirect_to_decimal_loopback_is_checked_at_hop(server: _Server) -> None:
    # allowed origin redirects to the same machine spelled as a decimal integer
    cfg = replace(FAST, allow_hosts=frozenset({"127.0.0.1/32"}))
    frame = check_links([("a", _base(server) + "/to-decimal")], config=cfg)
    assert frame[URL_STATUS][0] == "MOVED"  # allowed (it is 127.0.0.1) but a different URL
    cfg = LinkCheckConfig(allow_hosts=frozenset({"127.0.0.1"}), min_interval_s=0.0)
    assert check_links([("a", _base(server) + "/to-decimal")], config=cfg)[URL_STATUS][0] == "MOVED"


def test_connects_to_the_checked_address_and_keeps_host_header(server: _Server) -> None:
    port = server.server_address[1]
    backend = RecordingBackend()
    cfg = replace(FAST, allow_hosts=frozenset({"localhost"}))
    frame = check_links([("a", f"http://localhost:{port}/echo")], config=cfg, network_backend=backend)
    assert frame[URL_STATUS][0] == "VALID"
    # the socket layer only ever saw the resolved literal, never the name
    assert backend.connects and all(h in ("127.0.0.1", "::1") for h, _ in backend.connects)
    assert server.hits[0][2] == f"localhost:{port}"


def test_https_upgrade_same_path_is_valid(server_and_cert: tuple[_Server, Path | None]) -> None:
    srv, cert = server_and_cert
    if cert is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    srv.reset()
    port = srv.server_address[1]
    backend = RecordingBackend()
    cfg = replace(FAST, allow_hosts=frozenset({"localhost"}), ca_file=str(cert))
    frame = check_links([("a", f"http://localhost:{port}/upgrade")], config=cfg, network_backend=backend)
    row = frame.row(0, named=True)
    assert (row[URL_STATUS], row[REASON], row[FINAL_URL]) == ("VALID", "ok", f"https://localhost:{port}/upgrade")
    assert [h[3] for h in srv.hits][-1] is True  # the final answer came over TLS
    assert all(h in ("127.0.0.1", "::1") for h, _ in backend.connects)
    # without trusting the test CA the same https URL fails certificate verification (SNI = name)
    srv.reset()
    frame = check_links([("a", f"https://localhost:{port}/ok")], config=replace(cfg, ca_file=None))
    assert (frame[URL_STATUS][0], frame[REASON][0]) == ("UNKNOWN", "tls_error")


def test_offline_makes_no_requests(server: _Server) -> None:
    cfg = replace(FAST, offline=True)
    backend = RecordingBackend()
    items = [("a", _base(server) + "/ok"), ("b", "https://soundcloud.com/x/y"), ("c", None)]
    frame = check_links(items, config=cfg, network_backend=backend)
    assert frame[URL_STATUS].to_list() == ["UNKNOWN"] * 3
    assert frame[REASON].to_list() == ["offline"] * 3
    assert server.hits == [] and backend.connects == []


# --------------------------------------------------------------------------- frame, dedup, limits
def test_frame_schema_dedup_and_missing_urls(server: _Server) -> None:
    url = _base(server) + "/ok"
    items = [("a", url), ("b", url), ("c", None), ("d", "  ")]
    frame = check_links(items, config=FAST)
    assert dict(frame.schema) == LINK_STATUS_SCHEMA
    empty = check_links([], config=FAST)
    assert empty.shape == (0, 7) and dict(empty.schema) == LINK_STATUS_SCHEMA
    assert frame["track_id"].to_list() == ["a", "b", "c", "d"]
    assert frame[URL_STATUS].to_list() == ["VALID", "VALID", "UNKNOWN", "UNKNOWN"]
    assert frame[REASON].to_list()[2:] == ["no_url", "no_url"]
    assert set(frame[URL_STATUS].to_list()) <= set(LINK_STATUSES)
    assert server.paths() == ["/ok"]  # one request for two tracks sharing the URL
    for text in frame[CHECKED_AT].to_list():
        stamp = datetime.fromisoformat(text)
        assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0


def test_per_host_concurrency_limit(server: _Server) -> None:
    cfg = replace(FAST, per_host=2, concurrency=8)
    items = [(str(i), f"{_base(server)}/concurrent?i={i}") for i in range(6)]
    frame = check_links(items, config=cfg)
    assert frame[URL_STATUS].to_list() == ["VALID"] * 6
    assert 1 <= server.max_inflight <= 2


def test_min_interval_spaces_request_starts(server: _Server) -> None:
    cfg = replace(FAST, min_interval_s=0.1, concurrency=4, per_host=4)
    items = [(str(i), f"{_base(server)}/ok?i={i}") for i in range(4)]
    start = time.monotonic()
    check_links(items, config=cfg)
    assert time.monotonic() - start >= 0.3  # 4 starts, ≥ 0.1 s apart


# --------------------------------------------------------------------------- pure helpers
def test_parse_retry_after() -> None:
    assert parse_retry_after(value="0", cap_s=10) == 0
    assert parse_retry_after(value="7", cap_s=10) == 7
    assert parse_retry_after(value="3600", cap_s=10) == 10
    now = time.time()
    future = email.utils.formatdate(now + 5, usegmt=True)
    assert 3.5 <= parse_retry_after(value=future, cap_s=30, now=now) <= 5.5
    past = email.utils.formatdate(now - 60, usegmt=True)
    assert parse_retry_after(value=past, cap_s=30, now=now) == 0
    assert parse_retry_after(value="soon", cap_s=30) is None
    assert parse_retry_after(value=None, cap_s=30) is None


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("http://x.com/t", "https://x.com/t", True),
        ("http://x.com/t", "https://x.com/t/", True),
        ("http://x.com:80/t", "http://X.COM/t", True),
        ("https://x.com/t", "http://x.com/t", False),  # downgrade is not the same resource
        ("http://x.com/t", "http://x.com/u", False),
        ("http://x.com/t?a=1", "http://x.com/t?a=2", False),
        ("http://x.com/t", "http://www.x.com/t", False),
        ("http://x.com:8080/t", "https://x.com:8080/t", True),
        ("http://x.com:8080/t", "http://x.com:8081/t", False),
    ],
)
def test_same_resource(a: str, b: str, same: bool) -> None:
    assert _same_resource(httpx.URL(a), httpx.URL(b)) is same
