"""Politeness at crawl scale, counted by the hosts themselves: the per-host in-flight limit is
reached and never exceeded, request starts to one host are spaced, a held-back host does not hold
the others back, connections are reused, and a CloudFront block page makes its host back off."""

import asyncio
from dataclasses import replace

import pytest

from bench.linkfarm import HostFarm
from pipelines.heal.links.run import check_links
from pipelines.heal.links.schedule import HostLanes
from pipelines.schema import REASON, REQUIRES_AUTH, UNKNOWN, URL_STATUS, VALID
from tests.heal.links.conftest import CLOUDFRONT_BLOCK, CLOUDFRONT_BODY, FAST
from tests.net.loopback import RecordingBackend

# The farm answers after its latency: read timeouts far beyond it, so a loaded machine causes no retry.
LOOPBACK = replace(FAST, allow_hosts=frozenset({"127.0.0.0/8"}), read_timeout_s=5.0, total_timeout_s=10.0)


def _items(farm: HostFarm, per_host: int, *, by_host: bool = False) -> list[tuple[str, str]]:
    """``per_host`` URLs on every host of ``farm``: interleaved, or grouped host by host."""
    pairs = [(h, i) for i in range(per_host) for h in range(farm.n_hosts)]
    if by_host:
        pairs.sort()
    return [(f"{h}-{i}", f"{farm.bases[h]}/t/{i}") for h, i in pairs]


@pytest.mark.parametrize("per_host", [1, 3])
def test_per_host_limit_is_reached_and_never_exceeded(per_host: int) -> None:
    """Answers take 0.2 s and 32 URLs may be in flight: each host holds exactly ``per_host``."""
    with HostFarm(hosts=3, latency_s=0.2) as farm:
        frame = check_links(_items(farm, 9), config=replace(LOOPBACK, per_host=per_host, concurrency=32,
                                                             min_interval_s=0.0))
        stats = farm.snapshot()
    assert frame[URL_STATUS].to_list() == [VALID] * 27
    assert [s["requests"] for s in stats] == [9, 9, 9]  # one HEAD per URL
    assert [s["max_inflight"] for s in stats] == [per_host] * 3


def test_min_interval_spaces_each_host_on_its_own() -> None:
    """Starts one second apart per host within a 2.5 s run: exactly 3 requests reach each host
    (at about 0, 1 and 2 s), whatever ``per_host`` and ``concurrency`` would allow."""
    cfg = replace(LOOPBACK, per_host=4, concurrency=16, min_interval_s=1.0, deadline_s=2.5)
    with HostFarm(hosts=2, latency_s=0.0) as farm:
        frame = check_links(_items(farm, 8), config=cfg)
        stats = farm.snapshot()
    assert [s["requests"] for s in stats] == [3, 3]
    assert sorted(frame[REASON].to_list()) == ["deadline"] * 10 + ["ok"] * 6


def test_a_held_back_host_does_not_hold_the_others() -> None:
    """Two workers, URLs grouped host by host, one start per host per minute: every host still
    gets its first request (a FIFO of workers would wait on the first host's spacing)."""
    cfg = replace(LOOPBACK, per_host=1, concurrency=2, min_interval_s=60.0, deadline_s=1.5)
    with HostFarm(hosts=4, latency_s=0.0) as farm:
        frame = check_links(_items(farm, 5, by_host=True), config=cfg)
        stats = farm.snapshot()
    assert [s["requests"] for s in stats] == [1, 1, 1, 1]
    assert frame[REASON].to_list().count("ok") == 4


def test_connections_are_reused_per_host() -> None:
    """40 HEAD checks over 2 hosts, at most 2 in flight per host: at most 2 sockets per host."""
    backend = RecordingBackend()
    with HostFarm(hosts=2, latency_s=0.01) as farm:
        frame = check_links(_items(farm, 20), config=replace(LOOPBACK, per_host=2, min_interval_s=0.0),
                            network_backend=backend)
    assert frame[URL_STATUS].to_list() == [VALID] * 40
    hosts = [h for h, _ in backend.connects]
    assert 2 <= len(hosts) <= 4 and all(hosts.count(h) <= 2 for h in set(hosts))


@pytest.mark.parametrize(("headers", "body", "outcomes", "requests"), [
    # HEAD + GET of the first URL, then a minute's backoff: the others meet the run's deadline
    (CLOUDFRONT_BLOCK, CLOUDFRONT_BODY, [(UNKNOWN, "blocked_by_cloudfront")] + [(UNKNOWN, "deadline")] * 4, 2),
    # a plain 403: no backoff, every URL asked (HEAD + GET)
    ({"server": "nginx"}, b"private track", [(REQUIRES_AUTH, "http_403")] * 5, 10),
])
def test_cloudfront_block_backs_off_its_host(headers: dict[str, str], body: bytes,
                                             outcomes: list[tuple[str, str]], requests: int) -> None:
    """A minute's backoff after the block page: the host's other URLs are not requested in the run."""
    cfg = replace(LOOPBACK, per_host=1, min_interval_s=0.0, backoff_base_s=60.0, backoff_cap_s=60.0,
                  deadline_s=2.0)
    with HostFarm(hosts=1, latency_s=0.0, status=403, headers=headers, body=body) as farm:
        frame = check_links(_items(farm, 5), config=cfg)
        stats = farm.snapshot()
    assert stats[0]["requests"] == requests
    assert sorted(zip(frame[URL_STATUS].to_list(), frame[REASON].to_list())) == sorted(outcomes)


async def _hand_out(lanes: HostLanes, n: int) -> list[str | None]:
    return [(await lanes.take())[0] for _ in range(n)]  # type: ignore[index]


def test_lanes_round_robin_and_per_host_limit() -> None:
    """Hosts take turns; a host at its limit is skipped until `done` frees a slot; URLs without a
    host have no limit."""
    async def scenario() -> tuple[list[str | None], list[str | None], object]:
        urls = ["a1", "a2", "a3", "b1", None, None]
        lanes = HostLanes(urls=urls, key_of=lambda u: None if u is None else u[0], per_host=1,
                          ready_at=lambda key: 0.0)
        first = await _hand_out(lanes, 4)  # a, b, None, None: "a" waits for its slot
        waiting = asyncio.ensure_future(lanes.take())
        await asyncio.sleep(0)
        blocked = waiting.done()
        lanes.done("a")
        second = [(await waiting)[0]]  # type: ignore[index]
        lanes.done("a")
        second += await _hand_out(lanes, 1)
        return first, second, (blocked, await lanes.take(), lanes.left)

    first, second, tail = asyncio.run(scenario())
    assert sorted(first, key=str) == sorted(["a", "b", None, None], key=str)
    assert second == ["a", "a"]
    assert tail == (False, None, 0)
