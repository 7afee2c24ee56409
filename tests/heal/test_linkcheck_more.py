"""More link-checker behaviours against real in-process HTTP servers on loopback only.

Complements tests/test_linkcheck.py: a HEAD that never answers, bodies that stall after a prefix,
relative Location headers, a scheme-only 301 to https on an IP literal, 429 with an HTTP-date
Retry-After, and a redirect from an allowed loopback server (127.0.0.1) to a second server on a
loopback address that is not allowed (127.0.0.2): BLOCKED, and the second server sees nothing.
"""

import email.utils
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from pipelines.heal.links.check import LinkCheckConfig, _same_resource, check_links
from tests.heal.test_linkcheck import RecordingBackend, _make_cert, finish_maybe_tls  # shared with the first link-check suite
from pipelines.schema import FINAL_URL, HTTP_CODE, REASON, URL_STATUS
from tests.helpers import LoopbackHandler

Route = Callable[["_Handler"], None]


# --------------------------------------------------------------------------- servers
class _Server(ThreadingHTTPServer):
    """HTTP (optionally also TLS on the same port) server on one loopback address; records hits."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, *, host: str, routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> None:
        super().__init__((host, 0), _Handler)
        self.routes = routes
        self.tls = tls
        self.lock = threading.Lock()
        self.release = threading.Event()  # set at teardown: stalled handlers stop waiting
        self.hits: list[tuple[str, str, float, bool]] = []  # method, path, monotonic time, over TLS
        self.counters: dict[str, int] = {}

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def finish_request(self, request, client_address) -> None:  # noqa: ANN001
        finish_maybe_tls(self, request, client_address, self.tls)


class _Handler(LoopbackHandler):
    server: _Server

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    def count(self) -> int:
        with self.server.lock:
            return self.server.counters[self.path]

    def stall(self, seconds: float) -> None:
        self.server.release.wait(seconds)

    def _dispatch(self) -> None:
        srv = self.server
        with srv.lock:
            srv.hits.append((self.command, self.path, time.monotonic(), isinstance(self.connection, ssl.SSLSocket)))
            srv.counters[self.path] = srv.counters.get(self.path, 0) + 1
        route = srv.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self.reply(404)
        else:
            route(self)


def _serve(*, host: str, routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> _Server:
    srv = _Server(host=host, routes=routes, tls=tls)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv


def _stop(srv: _Server) -> None:
    srv.release.set()
    srv.shutdown()
    srv.server_close()


# --------------------------------------------------------------------------- routes
def _ok(h: _Handler) -> None:
    h.reply(200, body=b"ok")


def _hang_head(h: _Handler) -> None:
    if h.command == "HEAD":
        h.stall(10.0)  # never answers within the client's timeouts; connection kept open
        h.close_connection = True
        return
    h.reply(200, body=b"via get")


def _head405_stalled_body(h: _Handler) -> None:
    """HEAD refused → the checker must GET; the GET body sends 8 KiB of a 10 MiB body, then stalls."""
    if h.command == "HEAD":
        h.reply(405)
        return
    h.send_response(200)
    h.send_header("Content-Length", str(10 * 1024 * 1024))
    h.end_headers()
    h.wfile.write(b"x" * 8192)
    h.wfile.flush()
    h.stall(10.0)
    h.close_connection = True


def _captcha_stalled(h: _Handler) -> None:
    """403 whose body prefix (the challenge page) arrives at once, the rest never: a prefix is enough."""
    page = b"<html><title>Attention Required!</title>" + b" " * 5000
    h.send_response(403)
    h.send_header("Content-Length", str(len(page) + 1_000_000))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(page)
        h.wfile.flush()
        h.stall(10.0)
    h.close_connection = True


def _ok_stalled_short_body(h: _Handler) -> None:
    """200 to HEAD and GET, but a GET body stalls after 100 bytes (less than the prefix limit);
    ``?head=405`` refuses HEAD so the checker has to GET."""
    if h.command == "HEAD":
        h.reply(405 if "head=405" in h.path else 200)
        return
    h.send_response(200)
    h.send_header("Content-Length", "1000000")
    h.end_headers()
    h.wfile.write(b"y" * 100)
    h.wfile.flush()
    h.stall(10.0)
    h.close_connection = True


def _redirect(location: str, status: int = 301) -> Route:
    return lambda h: h.reply(status, headers={"Location": location})


def _rate_date_once(h: _Handler) -> None:
    if h.count() == 1:
        when = email.utils.formatdate(time.time() + 2, usegmt=True)  # HTTP-date, 1-2 s ahead
        h.reply(429, headers={"Retry-After": when})
    else:
        h.reply(200, body=b"ok")


def _rate_past_date_once(h: _Handler) -> None:
    if h.count() == 1:
        h.reply(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    else:
        h.reply(200, body=b"ok")


def _upgrade_same_path(h: _Handler) -> None:
    if isinstance(h.connection, ssl.SSLSocket):
        h.reply(200, body=b"secure")
    else:
        port = h.server.server_address[1]
        h.reply(301, headers={"Location": f"https://127.0.0.1:{port}{h.path}"})


ROUTES: dict[str, Route] = {
    "/ok": _ok,
    "/hang-head": _hang_head,
    "/head405-stalled-body": _head405_stalled_body,
    "/captcha-stalled": _captcha_stalled,
    "/ok-stalled-short-body": _ok_stalled_short_body,
    # relative Location forms, resolved against the current URL
    "/rel/a/b": _redirect("../c"),  # → /rel/c
    "/rel/c": _redirect("d?x=1", 302),  # → /rel/d?x=1
    "/rel/d": _ok,
    "/rel/query": lambda h: _ok(h) if "?" in h.path else h.reply(307, headers={"Location": "?page=2"}),
    "/rel/slash": _redirect("slash/", 308),  # → /rel/slash/ (trailing slash only: same resource)
    "/rel/slash/": _ok,
    "/rel/fragment": _redirect("/ok#t=30"),  # fragment dropped on the wire
    "/rate-date": _rate_date_once,
    "/rate-past-date": _rate_past_date_once,
    "/upgrade": _upgrade_same_path,
}

FAST = LinkCheckConfig(
    allow_hosts=frozenset({"127.0.0.1"}), min_interval_s=0.0, connect_timeout_s=2.0,
    read_timeout_s=0.3, total_timeout_s=3.0, backoff_base_s=0.01, backoff_cap_s=0.05,
    retry_after_cap_s=3.0, max_hops=5,
)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path] | None:
    return _make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture()
def server(cert: tuple[Path, Path] | None) -> Iterator[_Server]:
    ctx = None
    if cert is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile=str(cert[0]), keyfile=str(cert[1]))
    srv = _serve(host="127.0.0.1", routes=ROUTES, tls=ctx)
    try:
        yield srv
    finally:
        _stop(srv)


def _one(url: str, config: LinkCheckConfig = FAST, **kw) -> dict:  # noqa: ANN003
    return check_links([("t", url)], config=config, **kw).row(0, named=True)


# --------------------------------------------------------------------------- HEAD / bodies
def test_head_that_never_answers_falls_back_to_get_within_timeout(server: _Server) -> None:
    start = time.monotonic()
    row = _one(server.base + "/hang-head")
    elapsed = time.monotonic() - start
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == ("VALID", "ok", 200)
    assert [h[0] for h in server.hits] == ["HEAD", "GET"]
    assert 0.25 <= elapsed < 1.5  # waited one read timeout (0.3 s) for HEAD, not the server's 10 s


def test_stalled_body_reads_only_a_prefix(server: _Server) -> None:
    start = time.monotonic()
    row = _one(server.base + "/head405-stalled-body", config=replace(FAST, max_body_bytes=4096))
    elapsed = time.monotonic() - start
    assert (row[URL_STATUS], row[HTTP_CODE]) == ("VALID", 200)
    assert [h[0] for h in server.hits] == ["HEAD", "GET"]
    assert elapsed < 0.25  # the 4 KiB prefix arrived at once; no read timeout, no 10 MiB download


def test_stalled_403_body_prefix_still_detects_the_challenge(server: _Server) -> None:
    start = time.monotonic()
    row = _one(server.base + "/captcha-stalled", config=replace(FAST, max_body_bytes=2048))
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == ("UNKNOWN", "blocked_by_cdn", 403)
    assert time.monotonic() - start < 0.25


def test_stalled_short_body_after_200_head_is_not_fetched(server: _Server) -> None:
    # HEAD answered 200: no GET, so the stalled body is never touched
    row = _one(server.base + "/ok-stalled-short-body")
    assert (row[URL_STATUS], row[HTTP_CODE]) == ("VALID", 200)
    assert [h[0] for h in server.hits] == ["HEAD"]


def test_get_200_whose_short_body_stalls(server: _Server) -> None:
    """GET answered 200 but the body stalls below the prefix limit: the status line is what counts."""
    start = time.monotonic()
    row = _one(server.base + "/ok-stalled-short-body?head=405")
    elapsed = time.monotonic() - start
    assert [h[0] for h in server.hits] == ["HEAD", "GET"]
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == ("VALID", "ok", 200)
    assert elapsed < 1.0


# --------------------------------------------------------------------------- redirects
@pytest.mark.parametrize(
    ("path", "status", "reason", "final_path", "fetched"),
    [
        ("/rel/a/b", "MOVED", "redirected", "/rel/d?x=1", ["/rel/a/b", "/rel/c", "/rel/d?x=1"]),
        ("/rel/query", "MOVED", "redirected", "/rel/query?page=2", ["/rel/query", "/rel/query?page=2"]),
        ("/rel/slash", "VALID", "ok", "/rel/slash/", ["/rel/slash", "/rel/slash/"]),
        ("/rel/fragment", "MOVED", "redirected", "/ok#t=30", ["/rel/fragment", "/ok"]),
    ],
)
def test_relative_location_headers(server: _Server, path: str, status: str, reason: str,
                                   final_path: str, fetched: list[str]) -> None:
    row = _one(server.base + path)
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == (status, reason, 200)
    assert row[FINAL_URL] == server.base + final_path
    assert [h[1] for h in server.hits] == fetched  # every hop went to this server, resolved as expected


def test_scheme_only_301_to_https_on_ip_literal_is_valid(server: _Server, cert: tuple[Path, Path] | None) -> None:
    if cert is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    port = server.server_address[1]
    row = _one(server.base + "/upgrade", config=replace(FAST, ca_file=str(cert[0])))
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == ("VALID", "ok", 200)
    assert row[FINAL_URL] == f"https://127.0.0.1:{port}/upgrade"
    assert [h[3] for h in server.hits] == [False, True]  # first hop plain HTTP, final answer over TLS


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("http://127.0.0.1:8080/t", "https://127.0.0.1:8080/t", True),  # scheme only, explicit port kept
        ("http://x.com/t", "https://x.com:443/t", True),  # explicit default port
        ("http://x.com:80/t", "https://x.com/t/", True),
        ("http://x.com/t", "https://x.com:8443/t", False),  # scheme and port change
        ("http://x.com:8080/t", "https://x.com/t", False),
        ("http://x.com/T", "https://x.com/t", False),  # paths are case-sensitive
        ("http://x.com/t", "https://x.com/t?a=1", False),
    ],
)
def test_same_resource_scheme_changes(a: str, b: str, same: bool) -> None:
    assert _same_resource(httpx.URL(a), httpx.URL(b)) is same


# --------------------------------------------------------------------------- 429
def test_429_with_http_date_retry_after_then_200(server: _Server) -> None:
    row = _one(server.base + "/rate-date")
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == ("VALID", "ok", 200)
    times = [h[2] for h in server.hits]
    assert len(times) == 2
    # formatdate(now + 2) has whole seconds: the date is 1–2 s ahead; the retry waited for it
    assert 0.9 <= times[1] - times[0] <= 2.6


def test_429_with_past_http_date_retries_at_once(server: _Server) -> None:
    row = _one(server.base + "/rate-past-date")
    assert (row[URL_STATUS], row[HTTP_CODE]) == ("VALID", 200)
    times = [h[2] for h in server.hits]
    assert len(times) == 2 and times[1] - times[0] < 0.5


def test_http_date_retry_after_is_capped(server: _Server) -> None:
    start = time.monotonic()
    row = _one(server.base + "/rate-date", config=replace(FAST, retry_after_cap_s=0.2))
    assert row[URL_STATUS] == "VALID"
    assert time.monotonic() - start < 0.9


# --------------------------------------------------------------------------- SSRF across loopback servers
@pytest.fixture()
def second() -> Iterator[_Server]:
    try:
        srv = _serve(host="127.0.0.2", routes={"/secret": _ok})
    except OSError as exc:  # some systems only configure 127.0.0.1
        pytest.skip(f"cannot bind 127.0.0.2: {exc}")
    try:
        yield srv
    finally:
        _stop(srv)


def _origin_to(second: _Server) -> _Server:
    port2 = second.server_address[1]
    return _serve(host="127.0.0.1", routes={
        "/to-second": _redirect(f"http://127.0.0.2:{port2}/secret", 302),
        "/to-second-decimal": _redirect(f"http://2130706434:{port2}/secret", 302),  # 127.0.0.2 spelled as one integer
        "/to-second-short": _redirect(f"http://127.2:{port2}/secret", 302),  # inet_aton short form
    })


@pytest.mark.parametrize("path", ["/to-second", "/to-second-decimal", "/to-second-short"])
def test_redirect_to_a_disallowed_loopback_server_is_blocked(second: _Server, path: str) -> None:
    origin = _origin_to(second)
    try:
        backend = RecordingBackend()
        row = _one(origin.base + path, config=FAST, network_backend=backend)
    finally:
        _stop(origin)
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == ("BLOCKED", "loopback", 302)
    assert row[FINAL_URL].endswith("/secret")
    assert [h[1] for h in origin.hits] == [path]
    assert second.hits == []  # the second server never saw a request
    assert {host for host, _ in backend.connects} == {"127.0.0.1"}  # no socket to 127.0.0.2 at all


def test_same_redirect_reaches_the_second_server_when_allowed(second: _Server) -> None:
    """Control: the set-up above can observe a hit on 127.0.0.2 (so `second.hits == []` means something)."""
    origin = _origin_to(second)
    try:
        cfg = replace(FAST, allow_hosts=frozenset({"127.0.0.1", "127.0.0.2"}))
        row = _one(origin.base + "/to-second", config=cfg)
    finally:
        _stop(origin)
    assert (row[URL_STATUS], row[HTTP_CODE]) == ("MOVED", 200)
    assert [h[1] for h in second.hits] == ["/secret"]


def test_cidr_allow_covers_both_loopback_servers(second: _Server) -> None:
    origin = _origin_to(second)
    try:
        cfg = replace(FAST, allow_hosts=frozenset({"127.0.0.0/30"}))
        row = _one(origin.base + "/to-second-decimal", config=cfg)
    finally:
        _stop(origin)
    assert row[URL_STATUS] == "MOVED"
    assert len(second.hits) == 1
