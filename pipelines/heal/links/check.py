"""Async link checker for track permalinks: one status row per (track_id, url).

Statuses (`schema.LINK_STATUSES`) and the `reason` each comes with:

* VALID (reason "ok") — 2xx for the same resource (an http→https upgrade, default-port or
  trailing-slash-only redirect still counts as the same resource);
* MOVED ("redirected") — 2xx after redirects to a different resource; `final_url` holds it;
* REQUIRES_AUTH ("http_401", "http_403", "http_407");
* DEAD ("http_404", "http_410");
* BLOCKED — refused by `netpolicy` before any connection: "loopback", "private", "metadata",
  "scheme_not_allowed", "invalid_url", ... (at the first URL or at any redirect hop);
* UNKNOWN — "no_url", "offline", "deadline", "timeout", "connect_error", "dns_error",
  "tls_error", "connection_reset", "protocol_error", "redirect_loop", "too_many_redirects",
  "redirect_without_location", "rate_limited", "blocked_by_cdn", "http_5xx", "http_<code>".

`http_code` is the last HTTP status received (null when none was); `final_url` the last URL
reached or redirected to (null when the first request got no response or was refused).

How a URL is checked: HEAD first, GET (streamed, at most `max_body_bytes` read) when HEAD answers
400/403/405/501 or fails mid-exchange; redirects followed by hand (≤ `max_hops`), with the policy
re-checked at every hop; 429 retried after Retry-After (capped); per-host concurrency, minimum
spacing between request starts and jittered backoff after 429/5xx. Sockets are opened through
`PolicyNetworkBackend`, which resolves the host once, refuses it if any address is not public and
connects to exactly those addresses; TLS still uses the host name for SNI and certificate checks.
"""

import asyncio
import email.utils
import random
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from datetime import datetime, timezone

import certifi
import httpcore
import httpx
import polars as pl
from tqdm.auto import tqdm

from pipelines.net.client import policy_client, run_sync
from pipelines.net.policy import DNSResolutionError, NetworkPolicy, PolicyViolation
from pipelines.schema import (
    CHECKED_AT, FINAL_URL, HTTP_CODE, LINK_URL, PERMALINK_URL, REASON, TRACK_ID, URL_STATUS,
)

VALID, MOVED, REQUIRES_AUTH, DEAD, UNKNOWN, BLOCKED = (
    "VALID", "MOVED", "REQUIRES_AUTH", "DEAD", "UNKNOWN", "BLOCKED",
)

LINK_STATUS_SCHEMA: dict[str, pl.DataType] = {
    TRACK_ID: pl.Utf8(),
    LINK_URL: pl.Utf8(),
    URL_STATUS: pl.Utf8(),
    HTTP_CODE: pl.Int32(),
    FINAL_URL: pl.Utf8(),
    REASON: pl.Utf8(),
    CHECKED_AT: pl.Utf8(),
}

DNS_FAILURE_TTL_S = 60.0  # a host whose name failed to resolve is not retried within this window
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_HEAD_FALLBACK_CODES = frozenset({400, 403, 405, 501})
_HEAD_UNSUPPORTED_CODES = frozenset({405, 501})
_CDN_HEADERS = ("cf-ray", "cf-mitigated", "x-amz-cf-id", "x-datadome", "x-sucuri-id", "x-iinfo")
_CDN_SERVERS = ("cloudflare", "akamaighost", "ddos-guard", "sucuri", "imperva", "datadome")
_CDN_BODY_MARKERS = (
    b"captcha", b"cf-chl", b"challenge-platform", b"attention required", b"datadome",
    b"verify you are a human", b"are you a robot", b"ddos protection",
)


@dataclass(frozen=True, kw_only=True)
class LinkCheckConfig:
    """Knobs of one link-check run (times in seconds)."""

    concurrency: int = 32  # URLs in flight overall
    per_host: int = 4  # requests in flight per host:port
    min_interval_s: float = 0.2  # minimum spacing between request starts to one host
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
class LinkResult:
    """Outcome of checking one URL for one track."""

    track_id: str | None
    url: str | None
    url_status: str
    http_code: int | None
    final_url: str | None
    reason: str
    checked_at: str  # UTC ISO-8601 timestamp


@dataclass(frozen=True, kw_only=True)
class _Outcome:
    url_status: str
    reason: str
    http_code: int | None = None
    final_url: str | None = None


@dataclass(frozen=True, kw_only=True)
class _Exchange:
    status: int
    headers: httpx.Headers
    body: bytes


class _ExchangeFailed(Exception):
    """A request that produced no response; `reason` is the UNKNOWN/BLOCKED reason."""

    def __init__(self, *, status: str, reason: str, retry_with_get: bool) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_with_get = retry_with_get


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _same_resource(a: httpx.URL, b: httpx.URL) -> bool:
    """Same host, port (http→https upgrade allowed), query and path up to a trailing slash."""
    defaults = {"http": 80, "https": 443}
    if a.host != b.host or a.query != b.query:
        return False
    port_a = a.port or defaults.get(a.scheme)
    port_b = b.port or defaults.get(b.scheme)
    upgrade = a.scheme == "http" and b.scheme == "https" and a.port is None and b.port is None
    if port_a != port_b and not upgrade:
        return False
    if a.scheme != b.scheme and not (a.scheme == "http" and b.scheme == "https"):
        return False
    return (a.path.rstrip("/") or "/") == (b.path.rstrip("/") or "/")


def parse_retry_after(*, value: str | None, cap_s: float, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped; None if absent/bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), cap_s)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(delta, 0.0), cap_s)


def looks_like_cdn_block(*, headers: httpx.Headers, body: bytes) -> bool:
    """True when a 403 carries a CDN/bot-wall signature (headers or a challenge/captcha body)."""
    if any(h in headers for h in _CDN_HEADERS):
        return True
    server = headers.get("server", "").lower()
    if any(s in server for s in _CDN_SERVERS):
        return True
    low = body.lower()
    return any(m in low for m in _CDN_BODY_MARKERS)


class _HostGate:
    """Per host:port concurrency, start spacing and backoff."""

    def __init__(self, *, per_host: int, min_interval_s: float) -> None:
        self._sem = asyncio.Semaphore(per_host)
        self._lock = asyncio.Lock()
        self._min_interval = min_interval_s
        self._next_start = 0.0
        self.not_before = 0.0
        self.failures = 0
        self.head_unsupported = False

    async def __aenter__(self) -> "_HostGate":
        await self._sem.acquire()
        try:
            async with self._lock:
                loop = asyncio.get_running_loop()
                while (wait := max(self._next_start, self.not_before) - loop.time()) > 0:
                    await asyncio.sleep(wait)
                self._next_start = loop.time() + self._min_interval
        except BaseException:
            self._sem.release()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._sem.release()

    def penalise(self, *, delay_s: float) -> None:
        loop = asyncio.get_running_loop()
        self.not_before = max(self.not_before, loop.time() + delay_s)


class LinkChecker:
    """One run's shared state: HTTP client, policy, per-host gates. Use as an async context manager."""

    def __init__(
        self, *, config: LinkCheckConfig, network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.config = config
        self.policy = NetworkPolicy(allow_hosts=frozenset(config.allow_hosts), allow_private=config.allow_private)
        self._network_backend = network_backend
        self._gates: dict[str, _HostGate] = {}
        self._dns_failed: dict[str, float] = {}  # host → when its name last failed to resolve
        self._contacted: set[str] = set()
        self._first_contact: dict[str, asyncio.Lock] = {}
        self._rng = random.Random()
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> "LinkChecker":
        cfg = self.config
        self._client = policy_client(
            policy=self.policy, network_backend=self._network_backend, ca_file=cfg.ca_file,
            max_connections=max(cfg.concurrency * 2, 8), max_keepalive=cfg.concurrency, keepalive_expiry=30.0,
            connect_s=cfg.connect_timeout_s, read_s=cfg.read_timeout_s, total_s=cfg.total_timeout_s,
            user_agent=cfg.user_agent, accept="*/*",
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _gate(self, url: httpx.URL) -> _HostGate:
        key = f"{url.host}:{url.port or {'http': 80, 'https': 443}.get(url.scheme)}"
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = _HostGate(
                per_host=self.config.per_host, min_interval_s=self.config.min_interval_s,
            )
        return gate

    def _backoff(self, *, failures: int) -> float:
        base = min(self.config.backoff_base_s * 2 ** max(failures - 1, 0), self.config.backoff_cap_s)
        return base * (0.5 + self._rng.random() / 2)  # "equal jitter"

    async def _send(self, *, method: str, url: httpx.URL) -> _Exchange:
        assert self._client is not None, "use LinkChecker as an async context manager"
        try:
            async with asyncio.timeout(self.config.total_timeout_s) as budget:
                request = self._client.build_request(method, url)
                response = await self._client.send(request, stream=True)
                try:
                    body = b""
                    if method == "GET" and self.config.max_body_bytes > 0:
                        try:
                            async for chunk in response.aiter_raw():
                                body += chunk
                                if len(body) >= self.config.max_body_bytes:
                                    break
                        except (httpx.TimeoutException, httpx.ReadError, httpx.RemoteProtocolError):
                            pass  # the status line arrived: a stalled or cut body does not unmake it
                    return _Exchange(
                        status=response.status_code, headers=response.headers,
                        body=body[: self.config.max_body_bytes],
                    )
                finally:
                    await response.aclose()
        except TimeoutError:
            if budget.expired():
                raise _ExchangeFailed(status=UNKNOWN, reason="timeout", retry_with_get=True) from None
            raise  # the run's deadline, handled by the caller
        except PolicyViolation as exc:
            raise _ExchangeFailed(status=BLOCKED, reason=exc.reason, retry_with_get=False) from exc
        except DNSResolutionError as exc:
            self._dns_failed[url.host] = time.monotonic()
            raise _ExchangeFailed(status=UNKNOWN, reason="dns_error", retry_with_get=False) from exc
        except httpx.ConnectTimeout as exc:
            raise _ExchangeFailed(status=UNKNOWN, reason="timeout", retry_with_get=False) from exc
        except httpx.TimeoutException as exc:
            raise _ExchangeFailed(status=UNKNOWN, reason="timeout", retry_with_get=True) from exc
        except httpx.ConnectError as exc:
            tls = isinstance(exc.__cause__, ssl.SSLError) or "SSL" in str(exc) or "CERTIFICATE" in str(exc)
            raise _ExchangeFailed(
                status=UNKNOWN, reason="tls_error" if tls else "connect_error", retry_with_get=False,
            ) from exc
        except (httpx.ReadError, httpx.WriteError) as exc:
            raise _ExchangeFailed(status=UNKNOWN, reason="connection_reset", retry_with_get=True) from exc
        except (httpx.RemoteProtocolError, httpx.LocalProtocolError) as exc:
            raise _ExchangeFailed(status=UNKNOWN, reason="protocol_error", retry_with_get=True) from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise _ExchangeFailed(status=BLOCKED, reason="invalid_url", retry_with_get=False) from exc
        except httpx.HTTPError as exc:
            raise _ExchangeFailed(status=UNKNOWN, reason="http_error", retry_with_get=False) from exc

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
                delay = parse_retry_after(
                    value=result.headers.get("retry-after"), cap_s=self.config.retry_after_cap_s,
                )
                gate.penalise(delay_s=self._backoff(failures=gate.failures) if delay is None else delay)
                continue
            if result.status >= 500:
                gate.failures += 1
                gate.penalise(delay_s=self._backoff(failures=gate.failures))
            else:
                gate.failures = 0
            return result

    async def _follow(self, *, url: str) -> _Outcome:
        ok, reason = self.policy.check_url(url)
        if not ok:
            return _Outcome(url_status=BLOCKED, reason=reason or "policy")
        start = httpx.URL(url)
        current = start
        seen = {str(current.copy_with(fragment=None))}
        hops = 0
        while True:
            try:
                ex = await self._exchange(url=current)
            except _ExchangeFailed as exc:
                return _Outcome(
                    url_status=exc.status, reason=exc.reason, final_url=str(current) if hops else None,
                )
            if ex.status in _REDIRECT_CODES:
                location = ex.headers.get("location")
                if not location:
                    return _Outcome(url_status=UNKNOWN, reason="redirect_without_location",
                                    http_code=ex.status, final_url=str(current))
                try:
                    target = current.join(location)
                except (httpx.InvalidURL, ValueError):
                    return _Outcome(url_status=BLOCKED, reason="invalid_url", http_code=ex.status,
                                    final_url=location)
                hops += 1
                ok, reason = self.policy.check_url(str(target))
                if not ok:
                    return _Outcome(url_status=BLOCKED, reason=reason or "policy", http_code=ex.status,
                                    final_url=str(target))
                key = str(target.copy_with(fragment=None))
                if key in seen:
                    return _Outcome(url_status=UNKNOWN, reason="redirect_loop", http_code=ex.status,
                                    final_url=str(target))
                if hops > self.config.max_hops:
                    return _Outcome(url_status=UNKNOWN, reason="too_many_redirects", http_code=ex.status,
                                    final_url=str(target))
                seen.add(key)
                current = target
                continue
            return self._classify(exchange=ex, start=start, final=current, hops=hops)

    @staticmethod
    def _classify(*, exchange: _Exchange, start: httpx.URL, final: httpx.URL, hops: int) -> _Outcome:
        code = exchange.status
        final_url = str(final)
        if 200 <= code < 300:
            if hops == 0 or _same_resource(start, final):
                return _Outcome(url_status=VALID, reason="ok", http_code=code, final_url=final_url)
            return _Outcome(url_status=MOVED, reason="redirected", http_code=code, final_url=final_url)
        if code in (401, 407):
            return _Outcome(url_status=REQUIRES_AUTH, reason=f"http_{code}", http_code=code, final_url=final_url)
        if code == 403:
            if looks_like_cdn_block(headers=exchange.headers, body=exchange.body):
                return _Outcome(url_status=UNKNOWN, reason="blocked_by_cdn", http_code=code, final_url=final_url)
            return _Outcome(url_status=REQUIRES_AUTH, reason="http_403", http_code=code, final_url=final_url)
        if code in (404, 410):
            return _Outcome(url_status=DEAD, reason=f"http_{code}", http_code=code, final_url=final_url)
        if code == 429:
            return _Outcome(url_status=UNKNOWN, reason="rate_limited", http_code=code, final_url=final_url)
        if code >= 500:
            return _Outcome(url_status=UNKNOWN, reason="http_5xx", http_code=code, final_url=final_url)
        return _Outcome(url_status=UNKNOWN, reason=f"http_{code}", http_code=code, final_url=final_url)

    async def check(self, *, url: str | None, deadline_at: float | None = None) -> _Outcome:
        """Check one URL; `deadline_at` is an event-loop time after which it gives up ("deadline")."""
        if url is None or not url.strip():
            return _Outcome(url_status=UNKNOWN, reason="no_url")
        if self.config.offline:
            return _Outcome(url_status=UNKNOWN, reason="offline")
        url = url.strip()
        if deadline_at is None:
            return await self._follow(url=url)
        if asyncio.get_running_loop().time() >= deadline_at:
            return _Outcome(url_status=UNKNOWN, reason="deadline")
        try:
            async with asyncio.timeout_at(deadline_at):
                return await self._follow(url=url)
        except TimeoutError:
            return _Outcome(url_status=UNKNOWN, reason="deadline")


async def check_one(
    *, track_id: str | None, url: str | None, checker: LinkChecker, deadline_at: float | None = None,
) -> LinkResult:
    """Check one track's URL with an open `LinkChecker`; returns its `LinkResult`."""
    out = await checker.check(url=url, deadline_at=deadline_at)
    return LinkResult(
        track_id=track_id, url=url, url_status=out.url_status, http_code=out.http_code,
        final_url=out.final_url, reason=out.reason, checked_at=_utc_now(),
    )


async def check_urls(
    items: Sequence[tuple[str | None, str | None]], *, config: LinkCheckConfig, progress: bool = False,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
) -> list[LinkResult]:
    """Check `items` = [(track_id, url)], n rows → n `LinkResult`s in the same order.

    Each distinct URL is fetched once (rows sharing a URL share its outcome). At most
    `config.concurrency` URLs are in flight. With `config.offline` nothing touches the network.
    `network_backend` opens the (already policy-checked) sockets; default httpcore's anyio backend.
    """
    if config.offline:
        now = _utc_now()
        return [
            LinkResult(track_id=t, url=u, url_status=UNKNOWN, http_code=None, final_url=None,
                       reason="offline", checked_at=now)
            for t, u in items
        ]
    unique: dict[str | None, None] = dict.fromkeys(
        (u.strip() if isinstance(u, str) and u.strip() else None) for _, u in items
    )
    outcomes: dict[str | None, tuple[_Outcome, str]] = {}
    loop = asyncio.get_running_loop()
    deadline_at = None if config.deadline_s is None else loop.time() + config.deadline_s
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    for u in unique:
        queue.put_nowait(u)
    bar = tqdm(total=len(unique), desc="linkcheck", unit="url", disable=not progress)

    async with LinkChecker(config=config, network_backend=network_backend) as checker:

        async def worker() -> None:
            while True:
                try:
                    u = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                out = await checker.check(url=u, deadline_at=deadline_at)
                outcomes[u] = (out, _utc_now())
                bar.update(1)

        n_workers = max(1, min(config.concurrency, len(unique)))
        try:
            await asyncio.gather(*(worker() for _ in range(n_workers)))
        finally:
            bar.close()

    results = []
    for t, u in items:
        key = u.strip() if isinstance(u, str) and u.strip() else None
        out, at = outcomes[key]
        results.append(LinkResult(
            track_id=t, url=u, url_status=out.url_status, http_code=out.http_code,
            final_url=out.final_url, reason=out.reason, checked_at=at,
        ))
    return results


def results_frame(*, results: Sequence[LinkResult]) -> pl.DataFrame:
    """LinkResults → DataFrame (n, 7) with `LINK_STATUS_SCHEMA` columns."""
    return pl.DataFrame(
        {
            TRACK_ID: [r.track_id for r in results],
            LINK_URL: [r.url for r in results],
            URL_STATUS: [r.url_status for r in results],
            HTTP_CODE: [r.http_code for r in results],
            FINAL_URL: [r.final_url for r in results],
            REASON: [r.reason for r in results],
            CHECKED_AT: [r.checked_at for r in results],
        },
        schema=LINK_STATUS_SCHEMA,
    )


def check_links(
    items: Sequence[tuple[str | None, str | None]], *, config: LinkCheckConfig, progress: bool = False,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
) -> pl.DataFrame:
    """Synchronous `check_urls`: [(track_id, url)] (n) → DataFrame (n, 7), columns
    track_id, url, url_status, http_code (Int32), final_url, reason, checked_at (UTC ISO string).

    Runs its own event loop (in a helper thread when called from inside a running loop).
    """
    results = run_sync(lambda: check_urls(items, config=config, progress=progress,
                                          network_backend=network_backend))
    return results_frame(results=results)


def check_crawl_links(
    crawl: pl.DataFrame, *, config: LinkCheckConfig, progress: bool = False,
) -> pl.DataFrame:
    """Crawl table with `track_id` and `permalink_url` (n rows) → link-status DataFrame (n, 7)."""
    items = list(zip(crawl[TRACK_ID].cast(pl.Utf8).to_list(), crawl[PERMALINK_URL].cast(pl.Utf8).to_list()))
    return check_links(items, config=config, progress=progress)
