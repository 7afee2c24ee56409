"""The audio behind a track link: the link itself when it answers with audio, else the audio its page
names (``pipelines.audio.pages``): page → audio, or page → oEmbed → audio, never deeper.

Every request (page, oEmbed answer, audio) goes through one `AudioFetcher`: the network policy at
every hop, the host gates, the byte caps and the content sniffing. `resolve_many` resolves many
links at once within a wall-clock deadline.
"""

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpcore
from tqdm.auto import tqdm

from pipelines.audio.fetch import REUSED, AudioFetcher, Document, FetchConfig, FetchResult
from pipelines.audio.media import existing_download
from pipelines.audio.pages import DIRECT, OEMBED, Candidate, oembed_audio, page_audio
from pipelines.net.client import run_sync
from pipelines.net.policy import NetworkPolicy

PAGE_WITHOUT_AUDIO = "page_without_audio"  # a page naming no audio and linking no oEmbed answer
OEMBED_WITHOUT_AUDIO = "oembed_without_audio"  # an oEmbed answer naming no audio
OEMBED_INVALID = "oembed_invalid"  # an oEmbed answer that is not a JSON object
MAX_CANDIDATES = 3  # audio links tried per track (page and oEmbed together)


@dataclass(frozen=True, kw_only=True)
class Resolution:
    """How one link was resolved: which audio link was tried (and how the page named it) and the
    outcome of the last request that mattered (the download, or the failing page/oEmbed request)."""

    url: str  # the link asked (a track page or the audio itself)
    resolver: str | None  # one of pages.RESOLVER_KINDS; None when no audio link was found
    audio_url: str | None  # the audio link downloaded (or the first one that failed)
    result: FetchResult

    @property
    def reason(self) -> str:
        return self.result.reason

    @property
    def ok(self) -> bool:
        return self.result.ok


def reused(*, url: str, path: Path) -> FetchResult:
    """The result of an earlier download of ``url`` kept at ``path`` (no request)."""
    return FetchResult(url=url, path=path, bytes=path.stat().st_size, content_type=None, reason=REUSED)


def _failure(*, url: str, reason: str, doc: Document) -> FetchResult:
    return FetchResult(url=url, path=None, bytes=0, content_type=doc.content_type, reason=reason,
                       http_code=doc.http_code, final_url=doc.final_url)


async def _download(fetcher: AudioFetcher, *, page: str, candidate: Candidate, dest_dir: Path) -> Resolution:
    kept = existing_download(url=candidate.url, dest_dir=dest_dir)
    result = (reused(url=candidate.url, path=kept) if kept is not None
              else await fetcher.fetch(url=candidate.url, dest_dir=dest_dir))
    return Resolution(url=page, resolver=candidate.kind, audio_url=candidate.url, result=result)


async def _try(fetcher: AudioFetcher, *, page: str, candidates: Sequence[Candidate], dest_dir: Path,
               limit: int) -> tuple[Resolution | None, Resolution | None, int]:
    """(first success, first failure, links tried) over at most ``limit`` candidates, in order."""
    failed: Resolution | None = None
    tried = 0
    for candidate in candidates[: max(0, limit)]:
        tried += 1
        got = await _download(fetcher, page=page, candidate=candidate, dest_dir=dest_dir)
        if got.ok:
            return got, failed, tried
        failed = failed or got
    return None, failed, tried


async def _via_oembed(fetcher: AudioFetcher, *, page: str, oembed_url: str, dest_dir: Path,
                      limit: int) -> Resolution:
    answer = await fetcher.open(url=oembed_url, dest_dir=dest_dir, label=OEMBED)
    if isinstance(answer, FetchResult):  # refused, or the oEmbed link answered with audio itself
        return Resolution(url=page, resolver=OEMBED, audio_url=oembed_url if answer.ok else None, result=answer)
    candidates = oembed_audio(body=answer.body, base_url=answer.final_url)
    if not candidates:
        why = OEMBED_INVALID if candidates is None else OEMBED_WITHOUT_AUDIO
        return Resolution(url=page, resolver=OEMBED, audio_url=None,
                          result=_failure(url=oembed_url, reason=why, doc=answer))
    ok, failed, _ = await _try(fetcher, page=page, candidates=candidates, dest_dir=dest_dir, limit=limit)
    result = ok or failed
    assert result is not None
    return result


async def resolve_audio(fetcher: AudioFetcher, *, url: str, dest_dir: Path,
                        max_candidates: int = MAX_CANDIDATES) -> Resolution:
    """Resolve one link to a download in ``dest_dir``; never raises for a bad link or page.

    An earlier download of the link itself is reused without a request. A link answering with audio
    is stored (resolver ``direct``); a page's audio links are tried in order (at most
    ``max_candidates``, page and oEmbed together), then its oEmbed answer's. The first failure is
    reported when nothing succeeds; ``page_without_audio`` when the page names none.
    """
    kept = existing_download(url=url, dest_dir=dest_dir)
    if kept is not None:
        return Resolution(url=url, resolver=DIRECT, audio_url=url, result=reused(url=url, path=kept))
    opened = await fetcher.open(url=url, dest_dir=dest_dir)
    if isinstance(opened, FetchResult):
        return Resolution(url=url, resolver=DIRECT if opened.ok else None, audio_url=url if opened.ok else None,
                          result=opened)
    found = page_audio(body=opened.body, content_type=opened.content_type, base_url=opened.final_url)
    ok, failed, tried = await _try(fetcher, page=url, candidates=found.candidates, dest_dir=dest_dir,
                                   limit=max_candidates)
    if ok is not None:
        return ok
    if found.oembed_url is not None and tried < max_candidates:
        via = await _via_oembed(fetcher, page=url, oembed_url=found.oembed_url, dest_dir=dest_dir,
                                limit=max_candidates - tried)
        if via.ok or failed is None:
            return via
    if failed is not None:
        return failed
    return Resolution(url=url, resolver=None, audio_url=None,
                      result=_failure(url=url, reason=PAGE_WITHOUT_AUDIO, doc=opened))


def resolve_many(
    *, urls: Sequence[str], dest_dir: Path, policy: NetworkPolicy, config: FetchConfig | None = None,
    deadline_s: float | None = None, progress: bool = False,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
) -> dict[str, Resolution]:
    """Resolve each distinct link once → {link: Resolution}, ≤ ``config.concurrency`` links at once
    (each request behind its host's gate). Links not started within ``deadline_s`` are left out;
    offline, every link is ``offline`` and nothing is sent."""
    config = config or FetchConfig()
    unique = list(dict.fromkeys(u.strip() for u in urls if isinstance(u, str) and u.strip()))
    if config.offline or not unique:
        offline = FetchResult(url=None, path=None, bytes=0, content_type=None, reason="offline")
        return {u: Resolution(url=u, resolver=None, audio_url=None, result=offline) for u in unique}

    async def go() -> dict[str, Resolution]:
        out: dict[str, Resolution] = {}
        loop = asyncio.get_running_loop()
        stop_at = None if deadline_s is None else loop.time() + deadline_s
        queue = deque(unique)
        bar = tqdm(total=len(unique), desc="audio fetch", unit="link", disable=not progress)
        async with AudioFetcher(policy=policy, config=config, network_backend=network_backend) as fetcher:

            async def worker() -> None:
                while queue and (stop_at is None or loop.time() < stop_at):
                    url = queue.popleft()
                    try:
                        out[url] = await resolve_audio(fetcher, url=url, dest_dir=dest_dir)
                    except Exception as exc:  # one bad link must never fail a run
                        failed = FetchResult(url=url, path=None, bytes=0, content_type=None,
                                             reason=f"error:{type(exc).__name__}")
                        out[url] = Resolution(url=url, resolver=None, audio_url=None, result=failed)
                    bar.update(1)

            try:
                await asyncio.gather(*(worker() for _ in range(max(1, min(config.concurrency, len(unique))))))
            finally:
                bar.close()
        return out

    return run_sync(go)
