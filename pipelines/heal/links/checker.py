"""Checking one link: `LinkChecker` follows a URL hop by hop; `classify` names the final response
(statuses and reasons: `pipelines.heal.links.classify`). A CDN block page (403 from CloudFront or a
bot wall) makes the host back off as after a 5xx.

HEAD first, GET (streamed, at most ``max_body_bytes`` read) when HEAD answers 400/403/405/501 or
fails mid-exchange; redirects followed by hand (≤ ``max_hops``), the policy re-checked at every hop;
429 retried after Retry-After (capped). Sockets come from `net.client.policy_client`.
"""

import asyncio
import random
import ssl
import time
from dataclasses import dataclass

import httpcore
import httpx

from pipelines.heal.links.classify import (
    DEFAULT_PORTS,
    LinkOutcome,
    classify,
    looks_like_cdn_block,
    looks_like_cloudfront_block,
    same_resource,
)
from pipelines.heal.links.hostgate import HostGate, backoff_delay, parse_retry_after
from pipelines.net.client import REDIRECT_CODES, policy_client
from pipelines.net.policy import DNSResolutionError, NetworkPolicy, PolicyViolation
from pipelines.schema import BLOCKED, UNKNOWN

MAX_POOL_CONNECTIONS = 512  # open sockets (busy + idle keep-alive) of one run
DNS_FAILURE_TTL_S = 60.0  # a host whose name failed to resolve is not retried within this window
_HEAD_FALLBACK_CODES = frozenset({400, 403, 405, 501})
_HEAD_UNSUPPORTED_CODES = frozenset({405, 501})


@dataclass(frozen=True, kw_only=True)
class LinkCheckConfig:
    """Knobs of one link-check run (times in seconds)."""

    concurrency: int = 128  # URLs in flight overall
    per_host: int = 4  # requests (and first-hop URLs) in flight per host:port
    min_interval_s: float = 0.05  # minimum spacing between request starts to one host (≤ 20/s)
    connect_timeout_s: float = 5.0  # TCP connect (and DNS) per attempt
    read_timeout_s: float = 10.0  # between bytes
    total_timeout_s: float = 20.0  # one request/response exchange, whatever the drip rate
    max_hops: int = 10
    max_body_bytes: int = 4096  # GET fallback reads at most this prefix
    max_retries_429: int = 2
    retry_after_cap_s: float = 30.0
    backoff_base_s: float = 1.0  # per-host backoff after 429 without Retry-After / 5xx
    backoff_cap_s: float = 30.0
    offline: bool = False  # no DNS, no request: every row UNKNOWN("offline")
    allow_hosts: frozenset[str] = frozenset()  # names, IPs or CIDRs allowed although not public
    allow_private: bool = False
    deadline_s: float | None = None  # wall-clock budget of the whole run
    user_agent: str = "MoodscapeLinkCheck/0.1 (link health check; HEAD first)"
    ca_file: str | None = None  # extra CA bundle for TLS (default: certifi)


@dataclass(frozen=True, kw_only=True)
class _Exchange:
    status: int
    headers: httpx.Headers
    body: bytes


class _ExchangeFailed(Exception):
    """A request that produced no response; ``status``/``reason`` are the UNKNOWN/BLOCKED outcome."""

    def __init__(self, *, status: str, reason: str, retry_with_get: bool) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_with_get = retry_with_get


_STALE_CONNECTION = "Server disconnected without sending a response"  # httpcore's words for it


def _failure(exc: Exception) -> _ExchangeFailed:
    """The outcome of an httpx/policy error raised by one request."""
    if isinstance(exc, PolicyViolation):
        return _ExchangeFailed(status=BLOCKED, reason=exc.reason, retry_with_get=False)
    if isinstance(exc, DNSResolutionError):
        return _ExchangeFailed(status=UNKNOWN, reason="dns_error", retry_with_get=False)
    if isinstance(exc, httpx.ConnectTimeout):
        return _ExchangeFailed(status=UNKNOWN, reason="timeout", retry_with_get=False)
    if isinstance(exc, httpx.TimeoutException):
        return _ExchangeFailed(status=UNKNOWN, reason="timeout", retry_with_get=True)
    if isinstance(exc, httpx.ConnectError):
        tls = isinstance(exc.__cause__, ssl.SSLError) or "SSL" in str(exc) or "CERTIFICATE" in str(exc)
        return _ExchangeFailed(status=UNKNOWN, reason="tls_error" if tls else "connect_error", retry_with_get=False)
    if isinstance(exc, (httpx.ReadError, httpx.WriteError)):
        return _ExchangeFailed(status=UNKNOWN, reason="connection_reset", retry_with_get=True)
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.LocalProtocolError)):
        return _ExchangeFailed(status=UNKNOWN, reason="protocol_error", retry_with_get=True)
    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return _ExchangeFailed(status=BLOCKED, reason="invalid_url", retry_with_get=False)
    return _ExchangeFailed(status=UNKNOWN, reason="http_error", retry_with_get=False)


class LinkChecker:
    """One run's shared state: HTTP client, policy, per-host gates. Use as an async context manager."""

    def __init__(
        self, *, config: LinkCheckConfig, network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.config = config
        self.policy = NetworkPolicy(allow_hosts=frozenset(config.allow_hosts), allow_private=config.allow_private)
        self._network_backend = network_backend
        self._gates: dict[str, HostGate] = {}
        self._dns_failed: dict[str, float] = {}  # host → when its name last failed to resolve
        self._contacted: set[str] = set()
        self._first_contact: dict[str, asyncio.Lock] = {}
        self._rng = random.Random()
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> "LinkChecker":
        cfg = self.config
        # A pool of ``per_host`` kept-alive connections per host, for up to this many hosts at once.
        pool_size = min(max(cfg.concurrency * cfg.per_host, 16), MAX_POOL_CONNECTIONS)
        self._client = policy_client(
            policy=self.policy, network_backend=self._network_backend, ca_file=cfg.ca_file,
            max_connections=pool_size, max_keepalive=pool_size, keepalive_expiry=30.0, per_origin=cfg.per_host,
            connect_s=cfg.connect_timeout_s, read_s=cfg.read_timeout_s, total_s=cfg.total_timeout_s,
            user_agent=cfg.user_agent, accept="*/*",
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @staticmethod
    def _key(url: httpx.URL) -> str:
        return f"{url.host}:{url.port or DEFAULT_PORTS.get(url.scheme)}"

    def host_key(self, url: str | None) -> str | None:
        """The politeness key (host:port) of ``url``'s first hop; None when it will not be requested."""
        if url is None or not url.strip() or self.config.offline:
            return None
        try:
            parsed = httpx.URL(url.strip())
        except (httpx.InvalidURL, TypeError, ValueError):
            return None
        if parsed.scheme not in DEFAULT_PORTS or not parsed.host:
            return None
        return self._key(parsed)

    def ready_at(self, key: str) -> float:
        """Event-loop time from which host ``key`` may start its next request (0: at once, and for a
        name that recently failed to resolve: its URLs fail without a request)."""
        host = key.rsplit(":", 1)[0]
        failed_at = self._dns_failed.get(host)
        if failed_at is not None and time.monotonic() - failed_at < DNS_FAILURE_TTL_S:
            return 0.0
        gate = self._gates.get(key)
        return 0.0 if gate is None else gate.ready_at()

    def _gate(self, url: httpx.URL) -> HostGate:
        key = self._key(url)
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = HostGate(per_host=self.config.per_host, min_interval_s=self.config.min_interval_s)
        return gate

    def _backoff(self, *, failures: int) -> float:
        return backoff_delay(failures=failures, base_s=self.config.backoff_base_s,
                             cap_s=self.config.backoff_cap_s, rng=self._rng)

    async def _read(self, *, method: str, url: httpx.URL) -> _Exchange:
        assert self._client is not None, "use LinkChecker as an async context manager"
        response = await self._client.send(self._client.build_request(method, url), stream=True)
        try:
            body = b""
            if method == "HEAD":  # no body, but reading its end is what returns the connection to the pool
                try:
                    await response.aread()
                except (httpx.TimeoutException, httpx.ReadError, httpx.RemoteProtocolError):
                    pass
            elif self.config.max_body_bytes > 0:
                try:
                    async for chunk in response.aiter_raw():
                        body += chunk
                        if len(body) >= self.config.max_body_bytes:
                            break
                except (httpx.TimeoutException, httpx.ReadError, httpx.RemoteProtocolError):
                    pass  # the status line arrived: a stalled or cut body does not unmake it
            return _Exchange(status=response.status_code, headers=response.headers,
                             body=body[: self.config.max_body_bytes])
        finally:
            await response.aclose()

    async def _send(self, *, method: str, url: httpx.URL) -> _Exchange:
        """One request, its failure mapped to `_ExchangeFailed` (the run's deadline propagates)."""
        try:
            async with asyncio.timeout(self.config.total_timeout_s) as budget:
                try:
                    return await self._read(method=method, url=url)
                except httpx.RemoteProtocolError as exc:
                    # a kept-alive connection the server closed meanwhile fails before any answer: a GET
                    # is sent once more (idempotent; a failed HEAD already falls back to a GET)
                    if method != "GET" or not str(exc).startswith(_STALE_CONNECTION):
                        raise
                    return await self._read(method=method, url=url)
        except TimeoutError:
            if budget.expired():
                raise _ExchangeFailed(status=UNKNOWN, reason="timeout", retry_with_get=True) from None
            raise  # the run's deadline, handled by the caller
        except (PolicyViolation, DNSResolutionError, httpx.HTTPError, httpx.InvalidURL) as exc:
            if isinstance(exc, DNSResolutionError):
                self._dns_failed[url.host] = time.monotonic()
            raise _failure(exc) from exc

    async def _exchange(self, *, url: httpx.URL) -> _Exchange:
        """One hop. The first request to a host goes alone (its siblings wait for it, not for the
        host's rate gate), so a host whose name does not resolve fails all its URLs at once."""
        host = url.host
        if host not in self._contacted:
            async with self._first_contact.setdefault(host, asyncio.Lock()):
                if host not in self._contacted:
                    try:
                        return await self._exchange_gated(url=url)
                    finally:
                        self._contacted.add(host)
        failed_at = self._dns_failed.get(host)
        if failed_at is not None and time.monotonic() - failed_at < DNS_FAILURE_TTL_S:
            raise _ExchangeFailed(status=UNKNOWN, reason="dns_error", retry_with_get=False)
        return await self._exchange_gated(url=url)

    async def _exchange_gated(self, *, url: httpx.URL) -> _Exchange:
        """One hop: HEAD (or GET when HEAD is unsupported/failed), with 429 retries and host backoff."""
        gate = self._gate(url)
        attempt = 0
        while True:
            async with gate:
                result: _Exchange | None = None
                if not gate.head_unsupported:
                    try:
                        result = await self._send(method="HEAD", url=url)
                    except _ExchangeFailed as exc:
                        if not exc.retry_with_get:
                            raise
                    if result is not None and result.status in _HEAD_UNSUPPORTED_CODES:
                        gate.head_unsupported = True
                if result is None or result.status in _HEAD_FALLBACK_CODES:
                    result = await self._send(method="GET", url=url)
            if result.status == 429:
                gate.failures += 1
                if attempt >= self.config.max_retries_429:
                    gate.penalise(delay_s=self._backoff(failures=gate.failures))
                    return result
                attempt += 1
                delay = parse_retry_after(value=result.headers.get("retry-after"), cap_s=self.config.retry_after_cap_s)
                gate.penalise(delay_s=self._backoff(failures=gate.failures) if delay is None else delay)
                continue
            if result.status >= 500 or (result.status == 403 and (
                    looks_like_cloudfront_block(headers=result.headers, body=result.body)
                    or looks_like_cdn_block(headers=result.headers, body=result.body))):
                gate.failures += 1
                gate.penalise(delay_s=self._backoff(failures=gate.failures))
            else:
                gate.failures = 0
            return result

    def _next_hop(self, *, current: httpx.URL, code: int, location: str | None, seen: set[str],
                  hops: int) -> httpx.URL | LinkOutcome:
        """Where a redirect from ``current`` leads, or the outcome that stops the chain there."""
        if not location:
            return LinkOutcome(url_status=UNKNOWN, reason="redirect_without_location", http_code=code,
                               final_url=str(current))
        try:
            target = current.join(location)
        except (httpx.InvalidURL, ValueError):
            return LinkOutcome(url_status=BLOCKED, reason="invalid_url", http_code=code, final_url=location)
        ok, reason = self.policy.check_url(str(target))
        if not ok:
            return LinkOutcome(url_status=BLOCKED, reason=reason or "policy", http_code=code, final_url=str(target))
        if str(target.copy_with(fragment=None)) in seen:
            return LinkOutcome(url_status=UNKNOWN, reason="redirect_loop", http_code=code, final_url=str(target))
        if hops > self.config.max_hops:
            return LinkOutcome(url_status=UNKNOWN, reason="too_many_redirects", http_code=code,
                               final_url=str(target))
        return target

    async def _follow(self, *, url: str) -> LinkOutcome:
        ok, reason = self.policy.check_url(url)
        if not ok:
            return LinkOutcome(url_status=BLOCKED, reason=reason or "policy")
        start = current = httpx.URL(url)
        seen = {str(current.copy_with(fragment=None))}
        hops = 0
        while True:
            try:
                ex = await self._exchange(url=current)
            except _ExchangeFailed as exc:
                return LinkOutcome(url_status=exc.status, reason=exc.reason, final_url=str(current) if hops else None)
            if ex.status not in REDIRECT_CODES:
                return classify(code=ex.status, headers=ex.headers, body=ex.body, final_url=str(current),
                                same=hops == 0 or same_resource(start, current))
            hops += 1
            step = self._next_hop(current=current, code=ex.status, location=ex.headers.get("location"),
                                  seen=seen, hops=hops)
            if isinstance(step, LinkOutcome):
                return step
            seen.add(str(step.copy_with(fragment=None)))
            current = step

    async def check(self, *, url: str | None, deadline_at: float | None = None) -> LinkOutcome:
        """Check one URL; ``deadline_at`` is an event-loop time after which it gives up ("deadline")."""
        if url is None or not url.strip():
            return LinkOutcome(url_status=UNKNOWN, reason="no_url")
        if self.config.offline:
            return LinkOutcome(url_status=UNKNOWN, reason="offline")
        url = url.strip()
        if deadline_at is None:
            return await self._follow(url=url)
        if asyncio.get_running_loop().time() >= deadline_at:
            return LinkOutcome(url_status=UNKNOWN, reason="deadline")
        try:
            async with asyncio.timeout_at(deadline_at):
                return await self._follow(url=url)
        except TimeoutError:
            return LinkOutcome(url_status=UNKNOWN, reason="deadline")
