"""Politeness towards one host: request spacing, per-host concurrency, 429 retries after
Retry-After (seconds or HTTP-date, capped), backoff, and one DNS failure per host name."""

import asyncio
import email.utils
import random
import time
from dataclasses import replace

import pytest

from pipelines.heal.links.hostgate import HostGate, backoff_delay, parse_retry_after
from pipelines.heal.links.run import check_links
from pipelines.net.policy import NetworkPolicy
from pipelines.schema import HTTP_CODE, REASON, UNKNOWN, URL_STATUS, VALID
from tests.heal.links.conftest import FAST, one
from tests.net.loopback import LoopbackServer


async def _second_start_waits(*, min_interval_s: float, penalty_s: float) -> bool:
    """Whether a second entry into a fresh gate is still held back after the first one left."""
    gate = HostGate(per_host=4, min_interval_s=min_interval_s)
    async with gate:
        pass
    if penalty_s:
        gate.penalise(delay_s=penalty_s)
    second = asyncio.ensure_future(gate.__aenter__())
    for _ in range(5):  # an entry that need not wait completes within these loop turns
        await asyncio.sleep(0)
    waiting = not second.done()
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    return waiting


@pytest.mark.parametrize(
    ("min_interval_s", "penalty_s", "waits"),
    [(0.0, 0.0, False), (60.0, 0.0, True), (0.0, 60.0, True)],
)
def test_gate_holds_back_the_next_start(min_interval_s: float, penalty_s: float, waits: bool) -> None:
    assert asyncio.run(_second_start_waits(min_interval_s=min_interval_s, penalty_s=penalty_s)) is waits


def test_min_interval_spaces_requests_to_one_host(server: LoopbackServer) -> None:
    """With starts a minute apart, a short run gets one request out; the others meet the deadline."""
    cfg = replace(FAST, min_interval_s=60.0, concurrency=4, per_host=4, deadline_s=2.0)
    frame = check_links([(str(i), f"{server.base}/ok?i={i}") for i in range(4)], config=cfg)
    assert sorted(frame[REASON].to_list()) == ["deadline", "deadline", "deadline", "ok"]
    assert len(server.hits) == 1


def test_per_host_concurrency_limit(server: LoopbackServer) -> None:
    cfg = replace(FAST, per_host=2, concurrency=8)
    frame = check_links([(str(i), f"{server.base}/concurrent?i={i}") for i in range(6)], config=cfg)
    assert frame[URL_STATUS].to_list() == [VALID] * 6
    assert 1 <= server.max_inflight <= 2


def test_rate_limited_after_retries(server: LoopbackServer) -> None:
    row = one(server.base + "/rate-always", config=replace(FAST, max_retries_429=2))
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == (UNKNOWN, "rate_limited", 429)
    assert server.paths().count("/rate-always") == 3  # first try + 2 retries


def test_http_date_retry_after_holds_the_retry_back(server: LoopbackServer) -> None:
    """The date is 2–3 s ahead: a run with half a second left ends before the retry starts."""
    row = one(server.base + "/rate-date", config=replace(FAST, retry_after_cap_s=30.0, deadline_s=0.5))
    assert (row[URL_STATUS], row[REASON]) == (UNKNOWN, "deadline")
    assert server.paths() == ["/rate-date"]


def test_http_date_retry_after_is_capped(server: LoopbackServer) -> None:
    row = one(server.base + "/rate-date", config=replace(FAST, retry_after_cap_s=0.2, deadline_s=1.5))
    assert (row[URL_STATUS], row[REASON], row[HTTP_CODE]) == (VALID, "ok", 200)  # retried within the deadline
    assert server.paths() == ["/rate-date", "/rate-date"]


def test_429_with_past_http_date_retries_at_once(server: LoopbackServer) -> None:
    row = one(server.base + "/rate-past-date", config=replace(FAST, retry_after_cap_s=30.0, deadline_s=2.0))
    assert (row[URL_STATUS], row[HTTP_CODE]) == (VALID, 200)
    assert server.paths() == ["/rate-past-date", "/rate-past-date"]


def test_a_host_that_failed_dns_is_not_queued_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a name failed to resolve, its other URLs fail at once: the name is looked up once, and
    none of them waits for the host's gate (a second apart, 30 URLs would outlast the deadline)."""
    lookups: list[str] = []
    resolve = NetworkPolicy.resolve

    async def counting(self: NetworkPolicy, host: str, port: int, **kw: float | None) -> list[str]:
        lookups.append(host)
        return await resolve(self, host, port, **kw)

    monkeypatch.setattr(NetworkPolicy, "resolve", counting)
    host = "a" * 64 + ".example"
    items = [(str(i), f"http://{host}/t{i}") for i in range(30)]
    frame = check_links(items, config=replace(FAST, min_interval_s=1.0, per_host=1, deadline_s=5.0))
    assert set(frame[REASON].to_list()) == {"dns_error"}
    assert lookups == [host]


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


def test_backoff_doubles_with_failures_within_jitter_and_cap() -> None:
    rng = random.Random(0)
    for failures, full in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 10.0), (20, 10.0)]:
        delay = backoff_delay(failures=failures, base_s=1.0, cap_s=10.0, rng=rng)
        assert full / 2 <= delay <= full, failures
