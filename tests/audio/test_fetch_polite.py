"""Per-host politeness of audio fetching, seen by real loopback servers on two addresses: requests in
flight per host never exceed ``per_host``, and request starts to one host are spaced ``min_interval_s``."""

import threading
import time
from pathlib import Path

from pipelines.audio.fetch import FetchConfig
from pipelines.audio.resolve import resolve_many
from pipelines.net.policy import NetworkPolicy
from tests.audio.track_pages import html, loopback_hosts, small_clips
from tests.net.loopback import Route, RouteHandler

HOSTS = ("127.0.0.2", "127.0.0.3")
BOTH = NetworkPolicy(allow_hosts=frozenset(HOSTS))
HOLD_S = 0.3  # each answer is held this long, so overlapping requests overlap at the server


def _held(route: Route) -> Route:
    """``route``, counting requests in flight and recording each request's arrival time."""
    def wrapped(h: RouteHandler) -> None:
        srv = h.server
        with srv.lock:
            srv.inflight += 1
            srv.max_inflight = max(srv.max_inflight, srv.inflight)
            srv.arrivals.append(time.monotonic())
        try:
            h.stall(HOLD_S)
            route(h)
        finally:
            with srv.lock:
                srv.inflight -= 1
    return wrapped


def _routes(clip: Path, n: int) -> dict[str, Route]:
    data = clip.read_bytes()
    routes: dict[str, Route] = {}
    for i in range(n):
        routes[f"/t/{i}"] = _held(lambda h, i=i: h.reply(200, body=html(body=f'<audio src="/a/{i}.ogg"></audio>'),
                                                          ctype="text/html"))
        routes[f"/a/{i}.ogg"] = _held(lambda h: h.reply(200, body=data, ctype="audio/ogg"))
    return routes


def _run(tmp_path: Path, *, per_host: int, interval: float, n: int = 3) -> list:
    clip = small_clips(1)[0]
    with loopback_hosts(*HOSTS, routes=_routes(clip, n)) as servers:
        for srv in servers:
            srv.arrivals = []
        urls = [f"{srv.base}/t/{i}" for i in range(n) for srv in servers]
        config = FetchConfig(concurrency=8, per_host=per_host, min_interval_s=interval, timeout_s=10.0)
        got = resolve_many(urls=urls, dest_dir=tmp_path, policy=BOTH, config=config)
        assert [got[u].reason for u in urls] == ["ok"] * len(urls)
        assert all(len(srv.arrivals) == 2 * n for srv in servers)  # every page and its audio, once
        return servers


def test_one_request_in_flight_per_host_and_starts_spaced(tmp_path: Path) -> None:
    interval = 0.2
    for srv in _run(tmp_path, per_host=1, interval=interval):
        assert srv.max_inflight == 1
        gaps = [b - a for a, b in zip(srv.arrivals, srv.arrivals[1:])]
        assert min(gaps) >= 0.8 * max(interval, HOLD_S)  # one at a time, each held HOLD_S


def test_spacing_holds_when_several_requests_may_be_in_flight(tmp_path: Path) -> None:
    interval = 0.25
    for srv in _run(tmp_path, per_host=2, interval=interval):
        assert srv.max_inflight <= 2
        gaps = [b - a for a, b in zip(srv.arrivals, srv.arrivals[1:])]
        assert min(gaps) >= 0.8 * interval


def test_without_spacing_a_host_sees_per_host_requests_at_once(tmp_path: Path) -> None:
    """Control for the two tests above: the servers do see overlapping requests when the gate allows them."""
    servers = _run(tmp_path, per_host=2, interval=0.0)
    assert [srv.max_inflight for srv in servers] == [2, 2]


def test_gates_are_per_host_not_global(tmp_path: Path) -> None:
    """With one request per host, the two hosts are still asked at the same time."""
    clip = small_clips(1)[0]
    both_busy = threading.Event()
    busy: set[str] = set()
    lock = threading.Lock()

    def page_route(h: RouteHandler) -> None:
        with lock:
            busy.add(h.server.server_address[0])
            if len(busy) == 2:
                both_busy.set()
        both_busy.wait(5.0)
        h.reply(200, body=html(body='<audio src="/a.ogg"></audio>'), ctype="text/html")

    data = clip.read_bytes()
    routes = {"/t": page_route, "/a.ogg": lambda h: h.reply(200, body=data, ctype="audio/ogg")}
    with loopback_hosts(*HOSTS, routes=routes) as servers:
        config = FetchConfig(concurrency=4, per_host=1, min_interval_s=0.0, timeout_s=10.0)
        got = resolve_many(urls=[f"{s.base}/t" for s in servers], dest_dir=tmp_path, policy=BOTH, config=config)
        assert both_busy.is_set() and all(r.reason == "ok" for r in got.values())
