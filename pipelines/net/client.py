"""The policy-pinned HTTP client every outbound request uses, and one sync-over-async runner.

``policy_client`` returns an httpx client whose sockets connect only to addresses the
:class:`~pipelines.net.policy.NetworkPolicy` resolved and allowed; redirects are never followed
automatically (callers follow ``REDIRECT_CODES`` by hand and re-check every hop). ``run_sync`` runs
a coroutine to completion from synchronous code, in a helper thread when the caller is already
inside an event loop.
"""

import asyncio
import ssl
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import certifi
import httpcore
import httpx

from pipelines.net.policy import NetworkPolicy, PolicyViolation

T = TypeVar("T")

# HTTP statuses whose Location the callers of `policy_client` follow themselves.
REDIRECT_CODES: frozenset[int] = frozenset({301, 302, 303, 307, 308})


class PolicyNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore backend that resolves through `NetworkPolicy` and connects to those addresses only.

    `inner` opens the sockets (default `httpcore.AnyIOBackend`); it is only ever given IP literals.
    """

    def __init__(self, *, policy: NetworkPolicy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options=None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._policy.resolve(host, port, timeout_s=timeout)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout, OSError) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        raise PolicyViolation("unix_socket", target=path)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx transport over an httpcore pool whose sockets come from `PolicyNetworkBackend`."""

    def __init__(self, *, pool: httpcore.AsyncConnectionPool) -> None:
        self._pool = pool


def _ssl_context(*, ca_file: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=certifi.where())
    if ca_file is not None:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


def policy_client(
    *,
    policy: NetworkPolicy,
    network_backend: Any | None,
    ca_file: str | None,
    max_connections: int,
    max_keepalive: int,
    connect_s: float,
    read_s: float,
    total_s: float,
    user_agent: str,
    accept: str,
    keepalive_expiry: float | None = None,
) -> httpx.AsyncClient:
    """An httpx client whose every socket goes through ``policy`` to the address it checked.

    Redirects are not followed (callers re-check the policy per hop); no proxy settings from the
    environment; bodies are requested without compression (``identity``) so size caps are exact.
    Shared by the link checker and the audio downloader.
    """
    pool = httpcore.AsyncConnectionPool(
        ssl_context=_ssl_context(ca_file=ca_file),
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive,
        keepalive_expiry=keepalive_expiry,
        network_backend=PolicyNetworkBackend(policy=policy, inner=network_backend),
    )
    return httpx.AsyncClient(
        transport=_PinnedTransport(pool=pool),
        timeout=httpx.Timeout(connect=connect_s, read=read_s, write=read_s, pool=total_s),
        headers={"User-Agent": user_agent, "Accept": accept, "Accept-Encoding": "identity"},
        follow_redirects=False,
        trust_env=False,
    )


def run_sync(coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run ``coro_factory()`` to completion from sync code (own loop; a thread when one is running)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())  # type: ignore[arg-type]
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["v"] = asyncio.run(coro_factory())  # type: ignore[arg-type]
        except BaseException as exc:
            box["e"] = exc

    thread = threading.Thread(target=run, name="run-sync")
    thread.start()
    thread.join()
    if "e" in box:
        raise box["e"]
    return box["v"]
