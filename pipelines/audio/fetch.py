"""Bounded, policy-checked downloads of track audio from the crawl's live links.

Every socket obeys the link checker's network policy (``pipelines.net``); redirects are followed by
hand and checked again at every hop. A download is a streamed GET cut at ``max_bytes`` that must be
audio (declared, or sniffed from its first bytes); it is renamed into place only when complete, as
``<dest_dir>/<sha256(url)[:24]><ext>``, so a re-run finds it again (``existing_download``).
"""

import asyncio
import hashlib
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpcore
import httpx
from tqdm.auto import tqdm

# The link checker's policy-pinned socket layer; reused (not copied) so both fetchers obey one policy.
from pipelines.net.client import REDIRECT_CODES, policy_client, run_sync
from pipelines.net.policy import DNSResolutionError, NetworkPolicy, PolicyViolation

DEFAULT_MAX_BYTES = 4 * 1024 * 1024  # ~30 s + offset of compressed audio (320 kb/s MP3 ≈ 1.2 MB / 30 s)
OK, TRUNCATED = "ok", "truncated"
_AUDIO_TYPES = frozenset({"application/ogg", "application/x-ogg", "video/ogg", "video/webm", "audio/webm"})
_GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", "application/binary", ""})
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp3", ".ogg", ".oga", ".opus", ".wav", ".wave", ".flac", ".m4a", ".aac", ".aif", ".aiff", ".webm", ".mka"}
)
_TYPE_EXT = {
    "audio/mpeg": ".mp3", "audio/mp3": ".mp3", "audio/ogg": ".ogg", "application/ogg": ".ogg",
    "audio/opus": ".opus", "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav",
    "audio/flac": ".flac", "audio/x-flac": ".flac", "audio/mp4": ".m4a", "audio/x-m4a": ".m4a",
    "audio/aac": ".aac", "audio/aiff": ".aiff", "audio/x-aiff": ".aiff", "audio/webm": ".webm",
}


@dataclass(frozen=True, kw_only=True)
class FetchConfig:
    """Knobs of audio downloads (bytes, seconds)."""

    max_bytes: int = DEFAULT_MAX_BYTES  # stop reading the body here (the file keeps this prefix)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0  # between bytes
    timeout_s: float = 30.0  # the whole fetch of one URL, every hop included
    max_hops: int = 5
    concurrency: int = 4  # downloads in flight (fetch_many)
    per_host: int = 2  # downloads in flight per host
    offline: bool = False  # nothing touches the network: every result is "offline"
    user_agent: str = "MoodscapeAudioFetch/0.1 (30 s preview for audio features)"
    ca_file: str | None = None


@dataclass(frozen=True, kw_only=True)
class FetchResult:
    """Outcome of one download. ``path`` is set only for ``ok`` / ``truncated``.

    ``reason``: ``ok``, ``truncated`` (both with a file: a cut body is kept); ``offline``, ``no_url``,
    ``blocked:<policy reason>`` (``blocked:loopback``, ``blocked:private``, ``blocked:metadata``,
    ``blocked:scheme_not_allowed``, …, at the first URL or any hop), ``http_<code>``,
    ``not_audio:<content type>``, ``not_audio:sniffed`` (a body that is markup, or an undeclared type
    that is no known container: Ogg, ID3/MPEG, RIFF/WAVE, FLAC, MP4, WebM/Matroska, AIFF),
    ``empty_body``, ``timeout``, ``dns_error``, ``connect_error``, ``tls_error``, ``connection_reset``,
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


class _Refused(Exception):
    def __init__(self, reason: str, *, http_code: int | None = None, final_url: str | None = None,
                 content_type: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.http_code, self.final_url, self.content_type = reason, http_code, final_url, content_type


def looks_like_audio_url(url: str | None) -> bool:
    """True when the URL's path ends in a known audio file extension (``.mp3``, ``.ogg``, …)."""
    if not url:
        return False
    try:
        path = httpx.URL(url.strip()).path
    except (httpx.InvalidURL, TypeError, ValueError):
        return False
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def sniff_audio(head: bytes) -> str | None:
    """File extension of the audio container the first bytes announce, or None when unknown."""
    if head.startswith(b"OggS"):
        return ".ogg"
    if head.startswith(b"fLaC"):
        return ".flac"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return ".mp3" if not (len(head) > 1 and head[1] & 0x06 == 0) else ".aac"  # layer bits 00 = ADTS
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return ".wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return ".aiff"
    if head[4:8] == b"ftyp":
        return ".m4a"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ".webm"
    return None


def _looks_like_text(head: bytes) -> bool:
    low = head[:512].lstrip().lower()
    return low.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{", b"["))


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def download_stem(url: str) -> str:
    """File stem a URL downloads to: the first 24 hex digits of sha256(url)."""
    return hashlib.sha256(url.strip().encode("utf-8")).hexdigest()[:24]


def existing_download(*, url: str, dest_dir: Path) -> Path | None:
    """The file an earlier `fetch_audio` of ``url`` left in ``dest_dir``, or None."""
    stem = download_stem(url)
    for path in sorted(Path(dest_dir).glob(f"{stem}.*")):
        if path.suffix != ".part" and path.is_file() and path.stat().st_size > 0:
            return path
    return None


class AudioFetcher:
    """One HTTP client whose sockets obey ``policy``; use as an async context manager."""

    def __init__(self, *, policy: NetworkPolicy, config: FetchConfig = FetchConfig(),
                 network_backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self.config = config
        self._network_backend = network_backend
        self._client: httpx.AsyncClient | None = None
        self._hosts: dict[str, asyncio.Semaphore] = {}

    async def __aenter__(self) -> "AudioFetcher":
        cfg = self.config
        self._client = policy_client(
            policy=self.policy, network_backend=self._network_backend, ca_file=cfg.ca_file,
            max_connections=max(cfg.concurrency * 2, 4), max_keepalive=cfg.concurrency,
            connect_s=cfg.connect_timeout_s, read_s=cfg.read_timeout_s, total_s=cfg.timeout_s,
            user_agent=cfg.user_agent, accept="audio/*, application/ogg;q=0.9, */*;q=0.1",
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def fetch(self, *, url: str | None, dest_dir: Path) -> FetchResult:
        """Download ``url`` into ``dest_dir`` (see `FetchResult` for the outcomes); never raises for a bad URL."""
        if url is None or not url.strip():
            return FetchResult(url=url, path=None, bytes=0, content_type=None, reason="no_url")
        if self.config.offline:
            return FetchResult(url=url, path=None, bytes=0, content_type=None, reason="offline")
        url = url.strip()
        try:
            async with asyncio.timeout(self.config.timeout_s):
                return await self._follow(url=url, dest_dir=Path(dest_dir))
        except _Refused as exc:
            return FetchResult(url=url, path=None, bytes=0, content_type=exc.content_type, reason=exc.reason,
                               http_code=exc.http_code, final_url=exc.final_url)
        except TimeoutError:
            return FetchResult(url=url, path=None, bytes=0, content_type=None, reason="timeout")
        except Exception as exc:  # one bad URL must never fail a batch
            return FetchResult(url=url, path=None, bytes=0, content_type=None, reason=f"error:{type(exc).__name__}")

    async def _follow(self, *, url: str, dest_dir: Path) -> FetchResult:
        ok, why = self.policy.check_url(url)
        if not ok:
            raise _Refused("invalid_url" if why == "invalid_url" else f"blocked:{why}")
        current = httpx.URL(url)
        seen = {str(current.copy_with(fragment=None))}
        for _hop in range(self.config.max_hops + 1):
            result = await self._get(url=url, current=current, dest_dir=dest_dir)
            if isinstance(result, FetchResult):
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

    async def _get(self, *, url: str, current: httpx.URL, dest_dir: Path) -> FetchResult | tuple[int, str | None]:
        """One GET: a FetchResult (body stored or refused), or (redirect code, Location)."""
        assert self._client is not None, "use AudioFetcher as an async context manager"
        gate = self._hosts.setdefault(current.host, asyncio.Semaphore(self.config.per_host))
        async with gate:
            try:
                async with self._client.stream("GET", current) as response:
                    code = response.status_code
                    if code in REDIRECT_CODES:
                        return code, response.headers.get("location")
                    ctype = response.headers.get("content-type")
                    if not 200 <= code < 300:
                        raise _Refused(f"http_{code}", http_code=code, final_url=str(current), content_type=ctype)
                    media = _media_type(ctype)
                    declared_audio = media.startswith("audio/") or media in _AUDIO_TYPES
                    if not declared_audio and media not in _GENERIC_TYPES:
                        raise _Refused(f"not_audio:{media}", http_code=code, final_url=str(current), content_type=ctype)
                    return await self._store(url=url, response=response, media=media, declared_audio=declared_audio,
                                             final=current, dest_dir=dest_dir)
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

    async def _store(self, *, url: str, response: httpx.Response, media: str, declared_audio: bool,
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
                async for chunk in response.aiter_bytes():
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
            ext = sniff_audio(head) or _TYPE_EXT.get(media) or _url_ext(final) or ".audio"
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
        """Refuse a body that starts like markup/JSON, or an undeclared type that is no known container."""
        if _looks_like_text(head):
            raise _Refused("not_audio:sniffed", http_code=code, final_url=str(final), content_type=ctype)
        if not declared_audio and sniff_audio(head) is None:
            raise _Refused("not_audio:sniffed", http_code=code, final_url=str(final), content_type=ctype)


def _url_ext(url: httpx.URL) -> str | None:
    suffix = Path(url.path).suffix.lower()
    return suffix if suffix in AUDIO_EXTENSIONS else None


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


def fetch_many(
    *, urls: Sequence[str | None], dest_dir: Path, policy: NetworkPolicy, config: FetchConfig = FetchConfig(),
    progress: bool = False, network_backend: httpcore.AsyncNetworkBackend | None = None,
) -> list[FetchResult]:
    """Download n URLs (≤ ``config.concurrency`` at once, ≤ ``config.per_host`` per host) → n results
    in input order. A URL listed twice is fetched once. Never raises for one bad URL."""
    unique = list(dict.fromkeys((u.strip() if isinstance(u, str) else u) for u in urls))

    async def go() -> dict[str | None, FetchResult]:
        out: dict[str | None, FetchResult] = {}
        sem = asyncio.Semaphore(max(1, config.concurrency))
        bar = tqdm(total=len(unique), desc="audio fetch", unit="url", disable=not progress)
        async with AudioFetcher(policy=policy, config=config, network_backend=network_backend) as fetcher:

            async def one(u: str | None) -> None:
                async with sem:
                    out[u] = await fetcher.fetch(url=u, dest_dir=dest_dir)
                bar.update(1)

            try:
                await asyncio.gather(*(one(u) for u in unique))
            finally:
                bar.close()
        return out

    done = run_sync(go) if unique else {}
    return [done[u.strip() if isinstance(u, str) else u] for u in urls]
