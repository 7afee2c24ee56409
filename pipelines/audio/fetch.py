"""Policy-checked, polite HTTP for track audio: audio downloads and reads of the pages that point at it.

Every socket obeys the link checker's network policy (``pipelines.net``); redirects are followed by
hand and checked again at every hop; every request waits at its host's gate (at most ``per_host`` in
flight, starts ``min_interval_s`` apart). An audio body (declared, or sniffed from its first bytes)
is streamed to a temp file cut at ``max_bytes`` and renamed into place only when complete, as
``<dest_dir>/<sha256(url)[:24]><ext>`` (``media.existing_download`` finds it again); a page or JSON
body is read into memory, refused beyond ``page_max_bytes``.
"""

import asyncio
import os
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpcore
import httpx

from pipelines.audio.media import (
    DOCUMENT_TYPES,
    GENERIC_TYPES,
    TYPE_EXT,
    download_stem,
    is_audio_type,
    looks_like_text,
    media_type,
    sniff_audio,
    url_audio_ext,
)
from pipelines.heal.links.hostgate import HostGate, parse_retry_after
from pipelines.net.client import REDIRECT_CODES, policy_client, run_sync
from pipelines.net.policy import DNSResolutionError, NetworkPolicy, PolicyViolation

DEFAULT_MAX_BYTES = 4 * 1024 * 1024  # ~30 s + offset of compressed audio (320 kb/s MP3 ≈ 1.2 MB / 30 s)
DEFAULT_PAGE_MAX_BYTES = 2 * 1024 * 1024  # a track page (or oEmbed answer) larger than this is refused
OK, TRUNCATED, REUSED = "ok", "truncated", "reused"
_ACCEPT_AUDIO = "audio/*, application/ogg;q=0.9, */*;q=0.1"
_ACCEPT_PAGE = "text/html, application/xhtml+xml, application/json;q=0.9, audio/*;q=0.8, */*;q=0.1"
_SLOW_DOWN_CODES = frozenset({429, 503})


@dataclass(frozen=True, kw_only=True)
class FetchConfig:
    """Knobs of audio fetching (bytes, seconds)."""

    max_bytes: int = DEFAULT_MAX_BYTES  # stop reading an audio body here (the file keeps this prefix)
    page_max_bytes: int = DEFAULT_PAGE_MAX_BYTES  # refuse a page / oEmbed body larger than this
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0  # between bytes
    timeout_s: float = 30.0  # one request/response exchange (time waiting at a host gate excluded)
    max_hops: int = 5
    concurrency: int = 4  # links in flight (resolve_many)
    per_host: int = 2  # requests in flight per host
    min_interval_s: float = 1.0  # minimum spacing between request starts to one host
    retry_after_cap_s: float = 60.0  # a 429/503 Retry-After holds its host at most this long
    offline: bool = False  # nothing touches the network: every result is "offline"
    user_agent: str = "MoodscapeAudioFetch/0.2 (30 s preview for audio features)"
    ca_file: str | None = None


@dataclass(frozen=True, kw_only=True)
class FetchResult:
    """Outcome of one download. ``path`` is set only for ``ok`` / ``truncated`` / ``reused``.

    ``reason``: ``ok``, ``truncated`` (both with a file: a cut body is kept), ``reused`` (an earlier
    download, no request); ``offline``, ``no_url``, ``blocked:<policy reason>`` (``blocked:loopback``,
    ``blocked:private``, ``blocked:metadata``, ``blocked:scheme_not_allowed``, …, at the first URL or
    any hop), ``http_<code>``, ``not_audio:<content type>``, ``not_audio:sniffed`` (a body that is
    markup, JSON or a playlist, or an undeclared type that is no known container: Ogg, ID3/MPEG,
    RIFF/WAVE, FLAC, MP4, WebM/Matroska, AIFF), ``page_too_large`` / ``oembed_too_large``, ``empty_body``,
    ``timeout``, ``dns_error``, ``connect_error``, ``tls_error``, ``connection_reset``,
    ``protocol_error``, ``redirect_loop``, ``too_many_redirects``, ``redirect_without_location``,
    ``invalid_url``, ``write_error``, ``error:<ExceptionType>``.
    """

    url: str | None
    path: Path | None
    bytes: int  # body bytes written (0 when refused)
    content_type: str | None
    reason: str
    http_code: int | None = None
    final_url: str | None = None  # the URL the body came from (after redirects)

    @property
    def ok(self) -> bool:
        return self.path is not None


@dataclass(frozen=True, kw_only=True)
class Document:
    """A page or JSON body read into memory (≤ ``page_max_bytes``)."""

    url: str
    final_url: str  # after redirects: relative links in the body resolve against it
    content_type: str | None
    body: bytes
    http_code: int


class _Refused(Exception):
    def __init__(self, reason: str, *, http_code: int | None = None, final_url: str | None = None,
                 content_type: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.http_code, self.final_url, self.content_type = reason, http_code, final_url, content_type


class _Body:
    """A response body stream whose first bytes can be looked at before it is consumed."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._pending: list[bytes] = []

    async def peek(self, n: int) -> bytes:
        while sum(map(len, self._pending)) < n:
            try:
                self._pending.append(await anext(self._chunks))
            except StopAsyncIteration:
                break
        return b"".join(self._pending)[:n]

    async def chunks(self) -> AsyncIterator[bytes]:
        while self._pending:
            yield self._pending.pop(0)
        async for chunk in self._chunks:
            yield chunk


class AudioFetcher:
    """One HTTP client whose sockets obey ``policy``, with one gate per host; an async context manager."""

    def __init__(self, *, policy: NetworkPolicy, config: FetchConfig = FetchConfig(),
                 network_backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self.config = config
        self._network_backend = network_backend
        self._client: httpx.AsyncClient | None = None
        self._gates: dict[str, HostGate] = {}

    async def __aenter__(self) -> "AudioFetcher":
        cfg = self.config
        self._client = policy_client(
            policy=self.policy, network_backend=self._network_backend, ca_file=cfg.ca_file,
            max_connections=max(cfg.concurrency * 2, 4), max_keepalive=cfg.concurrency,
            connect_s=cfg.connect_timeout_s, read_s=cfg.read_timeout_s, total_s=cfg.timeout_s,
            user_agent=cfg.user_agent, accept=_ACCEPT_AUDIO,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def fetch(self, *, url: str | None, dest_dir: Path) -> FetchResult:
        """Download ``url``'s audio into ``dest_dir`` (see `FetchResult`); never raises for a bad URL."""
        out = await self._run(url=url, dest_dir=dest_dir, label=None)
        assert isinstance(out, FetchResult)
        return out

    async def open(self, *, url: str | None, dest_dir: Path, label: str = "page") -> Document | FetchResult:
        """A page (HTML, XML, JSON: a `Document`) or audio (stored as by `fetch`: a `FetchResult`);
        a refusal is a `FetchResult` whose reason names ``label`` where it matters (``page_too_large``)."""
        return await self._run(url=url, dest_dir=dest_dir, label=label)

    async def _run(self, *, url: str | None, dest_dir: Path, label: str | None) -> Document | FetchResult:
        if url is None or not url.strip():
            return FetchResult(url=url, path=None, bytes=0, content_type=None, reason="no_url")
        if self.config.offline:
            return FetchResult(url=url, path=None, bytes=0, content_type=None, reason="offline")
        url = url.strip()
        try:
            return await self._follow(url=url, dest_dir=Path(dest_dir), label=label)
        except _Refused as exc:
            return FetchResult(url=url, path=None, bytes=0, content_type=exc.content_type, reason=exc.reason,
                               http_code=exc.http_code, final_url=exc.final_url)
        except TimeoutError:
            return FetchResult(url=url, path=None, bytes=0, content_type=None, reason="timeout")
        except Exception as exc:  # one bad URL must never fail a batch
            return FetchResult(url=url, path=None, bytes=0, content_type=None, reason=f"error:{type(exc).__name__}")

    async def _follow(self, *, url: str, dest_dir: Path, label: str | None) -> Document | FetchResult:
        ok, why = self.policy.check_url(url)
        if not ok:
            raise _Refused("invalid_url" if why == "invalid_url" else f"blocked:{why}")
        current = httpx.URL(url)
        seen = {str(current.copy_with(fragment=None))}
        for _hop in range(self.config.max_hops + 1):
            result = await self._get(url=url, current=current, dest_dir=dest_dir, label=label)
            if not isinstance(result, tuple):
                return result
            code, location = result
            if not location:
                raise _Refused("redirect_without_location", http_code=code, final_url=str(current))
            try:
                target = current.join(location)
            except (httpx.InvalidURL, ValueError):
                raise _Refused("invalid_url", http_code=code, final_url=location) from None
            ok, why = self.policy.check_url(str(target))
            if not ok:
                raise _Refused(f"blocked:{why}", http_code=code, final_url=str(target))
            key = str(target.copy_with(fragment=None))
            if key in seen:
                raise _Refused("redirect_loop", http_code=code, final_url=str(target))
            seen.add(key)
            current = target
        raise _Refused("too_many_redirects", final_url=str(current))

    def _gate(self, host: str) -> HostGate:
        cfg = self.config
        return self._gates.setdefault(host, HostGate(per_host=max(1, cfg.per_host), min_interval_s=cfg.min_interval_s))

    async def _get(self, *, url: str, current: httpx.URL, dest_dir: Path,
                   label: str | None) -> Document | FetchResult | tuple[int, str | None]:
        """One GET behind the host's gate: stored audio, a document, a refusal, or (redirect code, Location)."""
        assert self._client is not None, "use AudioFetcher as an async context manager"
        gate = self._gate(current.host)
        headers = {"Accept": _ACCEPT_PAGE if label else _ACCEPT_AUDIO}
        async with gate:
            try:
                async with asyncio.timeout(self.config.timeout_s), self._client.stream(
                    "GET", current, headers=headers
                ) as response:
                    code = response.status_code
                    if code in REDIRECT_CODES:
                        return code, response.headers.get("location")
                    ctype = response.headers.get("content-type")
                    if not 200 <= code < 300:
                        if code in _SLOW_DOWN_CODES:
                            self._slow_down(gate=gate, retry_after=response.headers.get("retry-after"))
                        raise _Refused(f"http_{code}", http_code=code, final_url=str(current), content_type=ctype)
                    return await self._answer(url=url, response=response, final=current, dest_dir=dest_dir,
                                              label=label)
            except (_Refused, TimeoutError):
                raise
            except PolicyViolation as exc:
                raise _Refused(f"blocked:{exc.reason}", final_url=str(current)) from exc
            except DNSResolutionError as exc:
                raise _Refused("dns_error", final_url=str(current)) from exc
            except httpx.TimeoutException as exc:
                raise _Refused("timeout", final_url=str(current)) from exc
            except httpx.ConnectError as exc:
                tls = isinstance(exc.__cause__, ssl.SSLError) or "SSL" in str(exc) or "CERTIFICATE" in str(exc)
                raise _Refused("tls_error" if tls else "connect_error", final_url=str(current)) from exc
            except (httpx.ReadError, httpx.WriteError) as exc:
                raise _Refused("connection_reset", final_url=str(current)) from exc
            except (httpx.RemoteProtocolError, httpx.LocalProtocolError) as exc:
                raise _Refused("protocol_error", final_url=str(current)) from exc
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                raise _Refused("invalid_url", final_url=str(current)) from exc

    def _slow_down(self, *, gate: HostGate, retry_after: str | None) -> None:
        """A 429/503 with Retry-After: no request to that host starts before then (capped)."""
        delay = parse_retry_after(value=retry_after, cap_s=self.config.retry_after_cap_s)
        if delay:
            gate.penalise(delay_s=delay)

    async def _answer(self, *, url: str, response: httpx.Response, final: httpx.URL, dest_dir: Path,
                      label: str | None) -> Document | FetchResult:
        """A 2xx answer: audio is stored; with a ``label``, a page/JSON body is read; anything else refused."""
        ctype = response.headers.get("content-type")
        media = media_type(ctype)
        body = _Body(response.aiter_bytes())
        store = dict(url=url, response=response, body=body, media=media, final=final, dest_dir=dest_dir)
        if is_audio_type(media):
            return await self._store(**store, declared_audio=True)
        generic = media in GENERIC_TYPES  # undeclared: audio when its first bytes are a known container
        if generic and (label is None or sniff_audio(await body.peek(64)) is not None):
            return await self._store(**store, declared_audio=False)
        if label is not None and (generic or media in DOCUMENT_TYPES):
            return await self._document(url=url, response=response, body=body, final=final, label=label)
        raise _Refused(f"not_audio:{media}", http_code=response.status_code, final_url=str(final), content_type=ctype)

    async def _document(self, *, url: str, response: httpx.Response, body: _Body, final: httpx.URL,
                        label: str) -> Document:
        cap = self.config.page_max_bytes
        ctype = response.headers.get("content-type")
        too_large = _Refused(f"{label}_too_large", http_code=response.status_code, final_url=str(final),
                             content_type=ctype)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise too_large  # refused before reading the body
        parts: list[bytes] = []
        size = 0
        async for chunk in body.chunks():
            size += len(chunk)
            if size > cap:
                raise too_large
            parts.append(chunk)
        return Document(url=url, final_url=str(final), content_type=ctype, body=b"".join(parts),
                        http_code=response.status_code)

    async def _store(self, *, url: str, response: httpx.Response, body: _Body, media: str, declared_audio: bool,
                     final: httpx.URL, dest_dir: Path) -> FetchResult:
        """Stream the body (≤ max_bytes) into a temp file; rename it into place when it is audio."""
        cap = self.config.max_bytes
        ctype = response.headers.get("content-type")
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{download_stem(url)}.", suffix=".part", dir=dest_dir)
        tmp = Path(tmp_name)
        written, truncated, head = 0, False, b""
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in body.chunks():
                    room = cap - written
                    if len(chunk) > room:  # more body than allowed: keep the prefix, stop reading
                        chunk, truncated = chunk[:room], True
                    if len(head) < 64:
                        head += chunk[: 64 - len(head)]
                        if len(head) >= 16:  # refuse an HTML/JSON body early, before storing much
                            self._check_head(head=head, declared_audio=declared_audio,
                                             code=response.status_code, final=final, ctype=ctype)
                    out.write(chunk)
                    written += len(chunk)
                    if truncated:
                        break
            if written == 0:
                raise _Refused("empty_body", http_code=response.status_code, final_url=str(final), content_type=ctype)
            self._check_head(head=head, declared_audio=declared_audio,
                             code=response.status_code, final=final, ctype=ctype)
            ext = sniff_audio(head) or TYPE_EXT.get(media) or url_audio_ext(final) or ".audio"
            target = dest_dir / f"{download_stem(url)}{ext}"
            try:
                os.replace(tmp, target)
            except OSError as exc:
                raise _Refused("write_error", http_code=response.status_code, final_url=str(final)) from exc
            return FetchResult(url=url, path=target, bytes=written, content_type=ctype,
                               reason=TRUNCATED if truncated else OK, http_code=response.status_code,
                               final_url=str(final))
        finally:
            if tmp.exists():
                tmp.unlink()

    @staticmethod
    def _check_head(*, head: bytes, declared_audio: bool, code: int, final: httpx.URL, ctype: str | None) -> None:
        """Refuse a body that starts like markup/JSON/a playlist, or an undeclared type that is no known container."""
        if looks_like_text(head):
            raise _Refused("not_audio:sniffed", http_code=code, final_url=str(final), content_type=ctype)
        if not declared_audio and sniff_audio(head) is None:
            raise _Refused("not_audio:sniffed", http_code=code, final_url=str(final), content_type=ctype)


def fetch_audio(
    *, url: str | None, dest_dir: Path, policy: NetworkPolicy, max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = 30.0, max_hops: int = 5, offline: bool = False,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
) -> FetchResult:
    """Download one URL's audio (≤ ``max_bytes``) into ``dest_dir`` through ``policy``; never raises
    for a bad URL (the result's ``reason`` says what happened)."""
    config = FetchConfig(max_bytes=max_bytes, timeout_s=timeout_s, max_hops=max_hops, offline=offline, concurrency=1)

    async def go() -> FetchResult:
        async with AudioFetcher(policy=policy, config=config, network_backend=network_backend) as fetcher:
            return await fetcher.fetch(url=url, dest_dir=dest_dir)

    return run_sync(go)
