"""The sync-over-async runner, the redirect codes callers follow by hand, and per-origin pools."""

import asyncio

import pytest

from bench.linkfarm import HostFarm
from pipelines.net.client import REDIRECT_CODES, policy_client, run_sync
from pipelines.net.policy import NetworkPolicy
from tests.net.loopback import RecordingBackend


async def _double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


async def _fail() -> None:
    raise LookupError("boom")


def test_run_sync_from_plain_code() -> None:
    assert run_sync(lambda: _double(21)) == 42


def test_run_sync_inside_a_running_loop_uses_its_own_loop() -> None:
    async def caller() -> tuple[int, bool]:
        outer = asyncio.get_running_loop()
        inner: list[asyncio.AbstractEventLoop] = []

        async def where() -> int:
            inner.append(asyncio.get_running_loop())
            return await _double(4)

        return run_sync(where), inner[0] is not outer

    assert asyncio.run(caller()) == (8, True)


def test_run_sync_reraises_in_the_caller() -> None:
    with pytest.raises(LookupError, match="boom"):
        run_sync(_fail)

    async def caller() -> None:
        run_sync(_fail)

    with pytest.raises(LookupError, match="boom"):
        asyncio.run(caller())


def test_redirect_codes() -> None:
    assert REDIRECT_CODES == {301, 302, 303, 307, 308}


async def _heads(*, urls: list[str], backend: RecordingBackend) -> list[int]:
    client = policy_client(
        policy=NetworkPolicy(allow_hosts=frozenset({"127.0.0.0/8"})), network_backend=backend, ca_file=None,
        max_connections=4, max_keepalive=4, connect_s=2.0, read_s=2.0, total_s=5.0, user_agent="t", accept="*/*",
        per_origin=2,
    )
    codes = []
    async with client:
        for url in urls:
            response = await client.head(url)
            codes.append(response.status_code)
    return codes


def test_per_origin_pools_reuse_connections_and_close_the_least_recently_used() -> None:
    """Room for two origins' pools: a third origin closes the least recently used idle one."""
    backend = RecordingBackend()
    with HostFarm(hosts=3, latency_s=0.0) as farm:
        a, b, c = farm.bases
        codes = asyncio.run(_heads(urls=[f"{a}/1", f"{b}/1", f"{a}/2", f"{c}/1", f"{a}/3", f"{b}/2"],
                                   backend=backend))
    assert codes == [200] * 6
    ip = [base.split("//")[1].split(":")[0] for base in farm.bases]
    # a, b opened; a reused; c evicts b (least recently used); a reused; b opened again
    assert [host for host, _ in backend.connects] == [ip[0], ip[1], ip[2], ip[1]]
