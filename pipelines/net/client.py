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
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
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


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body stream that calls ``release`` once when it is closed."""

    def __init__(self, *, inner: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if self._release is not None:
                self._release, release = None, self._release
                release()


class _PerOriginTransport(httpx.AsyncBaseTransport):
    """One small connection pool per origin, at most ``max_origins`` of them (the least recently
    used idle one is closed first). httpcore's pool scans all its connections for every queued
    request, so one big pool over many hosts costs O(connections) per request; this costs O(1)."""

    def __init__(self, *, make_pool: Callable[[], httpcore.AsyncConnectionPool], max_origins: int) -> None:
        self._make_pool = make_pool
        self._max_origins = max(1, max_origins)
        self._transports: OrderedDict[tuple[bytes, bytes, int | None], _PinnedTransport] = OrderedDict()
        self._busy: dict[tuple[bytes, bytes, int | None], int] = {}

    async def _evict(self) -> None:
        while len(self._transports) >= self._max_origins:
            idle = next((k for k in self._transports if not self._busy.get(k)), None)
            if idle is None:
                return  # every origin has a response open: grow past the limit rather than wait
            await self._transports.pop(idle).aclose()

    def _release(self, key: tuple[bytes, bytes, int | None]) -> None:
        left = self._busy.get(key, 0) - 1
        if left > 0:
            self._busy[key] = left
        else:
            self._busy.pop(key, None)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = (request.url.raw_scheme, request.url.raw_host, request.url.port)
        transport = self._transports.get(key)
        if transport is None:
            await self._evict()
            transport = self._transports[key] = _PinnedTransport(pool=self._make_pool())
        else:
            self._transports.move_to_end(key)
        self._busy[key] = self._busy.get(key, 0) + 1
        try:
            response = await transport.handle_async_request(request)
        except BaseException:
            self._release(key)
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code, headers=response.headers, extensions=response.extensions,
            stream=_ReleasingStream(inner=response.stream, release=lambda: self._release(key)),
        )

    async def aclose(self) -> None:
        while self._transports:
            await self._transports.popitem(last=False)[1].aclose()


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
    per_origin: int | None = None,
) -> httpx.AsyncClient:
    """An httpx client whose every socket goes through ``policy`` to the address it checked.

    Redirects are not followed (callers re-check the policy per hop); no proxy settings from the
    environment; bodies are requested without compression (``identity``) so size caps are exact.
    Shared by the link checker and the audio downloader.

    One pool of ``max_connections`` by default. With ``per_origin``, each origin gets its own pool
    of ``per_origin`` connections (all kept alive) and at most ``max_connections // per_origin``
    origins keep one: for many hosts at once. Note that httpcore closes an idle connection as soon
    as its pool holds more than ``max_keepalive`` connections in all (busy ones included).
    """
    ssl_context = _ssl_context(ca_file=ca_file)
    backend = PolicyNetworkBackend(policy=policy, inner=network_backend)

    def make_pool(size: int, keepalive: int) -> httpcore.AsyncConnectionPool:
        return httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, max_connections=size, max_keepalive_connections=keepalive,
            keepalive_expiry=keepalive_expiry, network_backend=backend,
        )

    transport: httpx.AsyncBaseTransport
    if per_origin is None:
        transport = _PinnedTransport(pool=make_pool(max_connections, max_keepalive))
    else:
        transport = _PerOriginTransport(make_pool=lambda: make_pool(per_origin, per_origin),
                                        max_origins=max_connections // max(1, per_origin))
    return httpx.AsyncClient(
        transport=transport,
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
