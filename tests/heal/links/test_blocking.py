"""The network policy at every hop: loopback refused unless allowed (in any spelling, before any
socket), sockets only to the checked address, and a redirect from an allowed loopback server
(127.0.0.1) to one that is not allowed (127.0.0.2): BLOCKED, and the second server sees nothing."""

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace

import pytest

from pipelines.heal.links.checker import LinkCheckConfig
from pipelines.heal.links.run import check_links
from pipelines.schema import BLOCKED, FINAL_URL, HTTP_CODE, MOVED, REASON, URL_STATUS, VALID
from tests.heal.links.conftest import FAST, one, rows_by_track
from tests.net.loopback import LoopbackServer, RecordingBackend, Route, RouteHandler, serving


def test_loopback_blocked_without_allow_hosts(server: LoopbackServer) -> None:
    port = server.port
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
    rows = rows_by_track(check_links(items, config=cfg, network_backend=backend))
    for track_id, _ in items:
        assert (rows[track_id][URL_STATUS], rows[track_id][REASON]) == (BLOCKED, "loopback"), track_id
    assert server.hits == []
    assert backend.connects == []


def test_redirect_to_decimal_loopback_is_checked_at_hop(server: LoopbackServer) -> None:
    # allowed origin redirects to the same machine spelled as a decimal integer
    row = one(server.base + "/to-decimal", config=replace(FAST, allow_hosts=frozenset({"127.0.0.1/32"})))
    assert row[URL_STATUS] == MOVED  # allowed (it is 127.0.0.1) but a different URL
    row = one(server.base + "/to-decimal", config=LinkCheckConfig(allow_hosts=frozenset({"127.0.0.1"}),
                                                                  min_interval_s=0.0))
    assert row[URL_STATUS] == MOVED


def test_connects_to_the_checked_address_and_keeps_host_header(server: LoopbackServer) -> None:
    backend = RecordingBackend()
    cfg = replace(FAST, allow_hosts=frozenset({"localhost"}))
    row = one(f"http://localhost:{server.port}/echo", config=cfg, network_backend=backend)
    assert row[URL_STATUS] == VALID
    # the socket layer only ever saw the resolved literal, never the name
    assert backend.connects and all(h in ("127.0.0.1", "::1") for h, _ in backend.connects)
    assert server.hits[0][2] == f"localhost:{server.port}"


@pytest.fixture()
def second() -> Iterator[LoopbackServer]:
    with ExitStack() as stack:
        try:
            srv = stack.enter_context(serving(host="127.0.0.2", routes={"/secret": _ok}))
        except OSError as exc:  # some systems only configure 127.0.0.1
            pytest.skip(f"cannot bind 127.0.0.2: {exc}")
        yield srv


def _ok(h: RouteHandler) -> None:
    h.reply(200, body=b"ok")


def _redirect_to(location: str) -> Route:
    return lambda h: h.reply(302, headers={"Location": location})


@pytest.fixture()
def origin(second: LoopbackServer) -> Iterator[LoopbackServer]:
    """An allowed server on 127.0.0.1 whose routes redirect to ``second`` in three spellings."""
    port2 = second.port
    with serving(routes={
        "/to-second": _redirect_to(f"http://127.0.0.2:{port2}/secret"),
        "/to-second-decimal": _redirect_to(f"http://2130706434:{port2}/secret"),  # 127.0.0.2 as one integer
        "/to-second-short": _redirect_to(f"http://127.2:{port2}/secret"),  # inet_aton short form
    }) as srv:
        yield srv


@pytest.mark.parametrize("path", ["/to-second", "/to-second-decimal", "/to-second-short"])
def test_redirect_to_a_disallowed_loopback_server_is_blocked(origin: LoopbackServer, second: LoopbackServer,
                                                             path: str) -> None:
    backend = RecordingBackend()
    row = one(origin.base + path, network_backend=backend)
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == (BLOCKED, "loopback", 302)
    assert row[FINAL_URL].endswith("/secret")
    assert origin.paths() == [path]
    assert second.hits == []  # the second server never saw a request
    assert {host for host, _ in backend.connects} == {"127.0.0.1"}  # no socket to 127.0.0.2 at all


def test_same_redirect_reaches_the_second_server_when_allowed(origin: LoopbackServer,
                                                              second: LoopbackServer) -> None:
    """Control: the set-up above can observe a hit on 127.0.0.2 (so `second.hits == []` means something)."""
    row = one(origin.base + "/to-second", config=replace(FAST, allow_hosts=frozenset({"127.0.0.1", "127.0.0.2"})))
    assert (row[URL_STATUS], row[HTTP_CODE]) == (MOVED, 200)
    assert second.paths() == ["/secret"]


def test_cidr_allow_covers_both_loopback_servers(origin: LoopbackServer, second: LoopbackServer) -> None:
    row = one(origin.base + "/to-second-decimal", config=replace(FAST, allow_hosts=frozenset({"127.0.0.0/30"})))
    assert row[URL_STATUS] == MOVED
    assert len(second.hits) == 1
