"""Link-checker test set-up: one loopback server whose routes answer every way a link can."""

import email.utils
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from pipelines.heal.links.checker import LinkCheckConfig
from pipelines.heal.links.run import check_links
from pipelines.schema import TRACK_ID
from tests.net.loopback import LoopbackServer, Route, RouteHandler, make_cert, server_tls, serving

# Loopback allowed; short timeouts and backoff, so failures come fast.
FAST = LinkCheckConfig(
    allow_hosts=frozenset({"127.0.0.1"}), min_interval_s=0.0, connect_timeout_s=2.0,
    read_timeout_s=0.3, total_timeout_s=3.0, backoff_base_s=0.01, backoff_cap_s=0.05,
    retry_after_cap_s=1.0, max_hops=5,
)
STALL_S = 10.0  # how long a stalling route holds the connection (far beyond any timeout used)


def one(url: str, config: LinkCheckConfig = FAST, **kw) -> dict:
    """The link-status row of checking ``url`` alone."""
    return check_links([("t", url)], config=config, **kw).row(0, named=True)


def rows_by_track(frame: pl.DataFrame) -> dict[str, dict]:
    return {r[TRACK_ID]: r for r in frame.iter_rows(named=True)}


def _ok(h: RouteHandler) -> None:
    h.reply(200, body=b"ok")


def _redirect(location: str, status: int = 301) -> Route:
    return lambda h: h.reply(status, headers={"Location": location})


def _head_then(head_status: int) -> Route:
    """``head_status`` to HEAD, 200 to GET."""
    return lambda h: h.reply(head_status if h.command == "HEAD" else 200, body=b"get only")


def _drop_head(h: RouteHandler) -> None:
    """HEAD: the connection is dropped without an answer."""
    if h.command == "HEAD":
        h.close_connection = True
        return
    h.reply(200, body=b"ok")


def _hang_head(h: RouteHandler) -> None:
    """HEAD: no answer while the connection stays open."""
    if h.command == "HEAD":
        h.stall(STALL_S)
        h.close_connection = True
        return
    h.reply(200, body=b"via get")


def _stalled_body(status: int, prefix: bytes, declared: int) -> Route:
    """``status`` with Content-Length ``declared``; a GET gets ``prefix`` at once, then nothing."""
    def route(h: RouteHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Length", str(declared))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(prefix)
            h.wfile.flush()
            h.stall(STALL_S)
        h.close_connection = True
    return route


def _head405_stalled_body(h: RouteHandler) -> None:
    """HEAD refused → the checker must GET; the GET sends 8 KiB of a 10 MiB body, then stalls."""
    if h.command == "HEAD":
        h.reply(405)
        return
    _stalled_body(200, b"x" * 8192, 10 * 1024 * 1024)(h)


def _ok_stalled_short_body(h: RouteHandler) -> None:
    """200 to HEAD and GET, but a GET body stalls after 100 bytes (less than the prefix limit);
    ``?head=405`` refuses HEAD so the checker has to GET."""
    if h.command == "HEAD":
        h.reply(405 if "head=405" in h.path else 200)
        return
    _stalled_body(200, b"y" * 100, 1_000_000)(h)


def _rate(*, first: dict[str, str], always: bool = False) -> Route:
    """429 with ``first`` headers (every time when ``always``, else only the first time), then 200."""
    def route(h: RouteHandler) -> None:
        if always or h.count() == 1:
            h.reply(429, headers=first)
        else:
            h.reply(200, body=b"ok")
    return route


def _rate_date_once(h: RouteHandler) -> None:
    """429 whose Retry-After is an HTTP-date 2–3 s ahead (whole seconds), then 200."""
    if h.count() == 1:
        h.reply(429, headers={"Retry-After": email.utils.formatdate(time.time() + 3, usegmt=True)})
    else:
        h.reply(200, body=b"ok")


def _slow(h: RouteHandler) -> None:
    h.stall(1.5)
    h.reply(200, body=b"late")


def _concurrent(h: RouteHandler) -> None:
    srv = h.server
    with srv.lock:
        srv.inflight += 1
        srv.max_inflight = max(srv.max_inflight, srv.inflight)
    time.sleep(0.15)
    with srv.lock:
        srv.inflight -= 1
    h.reply(200, body=b"ok")


def _upgrade(h: RouteHandler) -> None:
    """Plain HTTP: 301 to the same URL over https; over TLS: 200."""
    if h.over_tls:
        h.reply(200, body=b"secure")
    else:
        h.reply(301, headers={"Location": f"https://{h.headers['Host']}{h.path}"})


def _to_loopback(path: str) -> Route:
    """302 to ``path`` on this server, spelled as an absolute URL (``{port}`` filled in)."""
    return lambda h: h.reply(302, headers={"Location": path.format(port=h.server.port)})


CLOUDFRONT_BLOCK = {"x-cache": "Error from cloudfront", "via": "1.1 5f6a.cloudfront.net (CloudFront)"}
CLOUDFRONT_BODY = (b"<HTML><HEAD><TITLE>ERROR: The request could not be satisfied</TITLE></HEAD><BODY>"
                   b"<H1>403 ERROR</H1><H2>The request could not be satisfied.</H2>Request blocked.")
_CHALLENGE = b"<html><title>Attention Required!</title>" + b" " * 5000

ROUTES: dict[str, Route] = {
    "/ok": _ok,
    "/echo": _ok,
    "/head405": _head_then(405),
    "/drop-head": _drop_head,
    "/hang-head": _hang_head,
    "/moved": _redirect("/ok"),
    "/slash": _redirect("/slash/"),
    "/slash/": _ok,
    "/loop-a": _redirect("/loop-b", 302),
    "/loop-b": _to_loopback("http://127.0.0.1:{port}/loop-a"),
    **{f"/chain/{n}": _redirect(f"/chain/{n + 1}", 302) for n in range(10)},
    "/no-location": lambda h: h.reply(302),
    "/gone404": lambda h: h.reply(404, body=b"not found"),
    "/gone410": lambda h: h.reply(410, body=b"gone"),
    "/auth401": lambda h: h.reply(401, headers={"WWW-Authenticate": 'Basic realm="x"'}),
    "/forbidden": lambda h: h.reply(403, body=b"private track"),
    "/cdn403": lambda h: h.reply(403, headers={"cf-ray": "8c1d2e3f4a5b6c7d-AMS"}, body=b"error 1020"),
    # CloudFront's block page (SoundCloud is served this way): a temporary refusal, not a private track
    "/cloudfront403": lambda h: h.reply(403, headers=CLOUDFRONT_BLOCK, body=CLOUDFRONT_BODY),
    "/cf-pop403": lambda h: h.reply(403, headers={"x-amz-cf-pop": "FRA56-P3"}, body=b"forbidden"),
    "/captcha403": lambda h: h.reply(403, body=b"<html><title>Just a moment</title>Please solve the CAPTCHA</html>"),
    "/captcha-stalled": _stalled_body(403, _CHALLENGE, len(_CHALLENGE) + 1_000_000),  # the prefix is enough
    "/head405-stalled-body": _head405_stalled_body,
    "/ok-stalled-short-body": _ok_stalled_short_body,
    "/rate-once": _rate(first={"Retry-After": "0"}),
    "/rate-always": _rate(first={"Retry-After": "0"}, always=True),
    "/rate-date": _rate_date_once,
    "/rate-past-date": _rate(first={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
    "/err500": lambda h: h.reply(500, body=b"boom"),
    "/slow": _slow,
    "/concurrent": _concurrent,
    "/upgrade": _upgrade,
    "/to-private": _redirect("http://10.0.0.1/", 302),
    "/to-metadata": _redirect("http://169.254.169.254/latest/meta-data/", 302),
    "/to-decimal": _to_loopback("http://2130706433:{port}/ok"),
    "/to-ftp": _redirect("ftp://example.org/track.mp3", 302),
    # relative Location forms, resolved against the current URL
    "/rel/a/b": _redirect("../c"),  # → /rel/c
    "/rel/c": _redirect("d?x=1", 302),  # → /rel/d?x=1
    "/rel/d": _ok,
    "/rel/query": lambda h: _ok(h) if "?" in h.path else h.reply(307, headers={"Location": "?page=2"}),
    "/rel/slash": _redirect("slash/", 308),  # → /rel/slash/ (trailing slash only: same resource)
    "/rel/slash/": _ok,
    "/rel/fragment": _redirect("/ok#t=30"),  # fragment dropped on the wire
}


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path] | None:
    """A self-signed certificate for localhost/127.0.0.1 (None without the openssl CLI)."""
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture()
def server(cert: tuple[Path, Path] | None) -> Iterator[LoopbackServer]:
    """`ROUTES` on 127.0.0.1, over http and (with a certificate) https on the same port."""
    with serving(routes=ROUTES, tls=server_tls(cert)) as srv:
        yield srv
