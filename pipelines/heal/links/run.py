"""A link-check run: many (track_id, url) rows checked concurrently into one link-status table."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import httpcore
import polars as pl
from tqdm.auto import tqdm

from pipelines.heal.links.checker import LinkCheckConfig, LinkChecker
from pipelines.heal.links.classify import LinkOutcome
from pipelines.heal.links.schedule import HostLanes
from pipelines.heal.links.status import utc_now
from pipelines.net.client import run_sync
from pipelines.schema import CHECKED_AT, FINAL_URL, HTTP_CODE, LINK_URL, REASON, TRACK_ID, UNKNOWN, URL_STATUS

LINK_STATUS_SCHEMA: dict[str, pl.DataType] = {
    TRACK_ID: pl.Utf8(),
    LINK_URL: pl.Utf8(),
    URL_STATUS: pl.Utf8(),
    HTTP_CODE: pl.Int32(),
    FINAL_URL: pl.Utf8(),
    REASON: pl.Utf8(),
    CHECKED_AT: pl.Utf8(),
}


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


def _url_key(url: str | None) -> str | None:
    return url.strip() if isinstance(url, str) and url.strip() else None


async def check_urls(
    items: Sequence[tuple[str | None, str | None]], *, config: LinkCheckConfig, progress: bool = False,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
) -> list[LinkResult]:
    """Check ``items`` = [(track_id, url)], n rows → n `LinkResult`s in the same order.

    Each distinct URL is fetched once (rows sharing a URL share its outcome). At most
    ``config.concurrency`` URLs are in flight, at most ``config.per_host`` per first-hop host, the
    earliest-ready host first (`HostLanes`); requests to one host start ``config.min_interval_s``
    apart. With ``config.offline`` nothing touches the network.
    ``network_backend`` opens the (already policy-checked) sockets; default httpcore's anyio backend.
    """
    if config.offline:
        now = utc_now()
        return [
            LinkResult(track_id=t, url=u, url_status=UNKNOWN, http_code=None, final_url=None,
                       reason="offline", checked_at=now)
            for t, u in items
        ]
    unique: dict[str | None, None] = dict.fromkeys(_url_key(u) for _, u in items)
    outcomes: dict[str | None, tuple[LinkOutcome, str]] = {}
    loop = asyncio.get_running_loop()
    deadline_at = None if config.deadline_s is None else loop.time() + config.deadline_s
    bar = tqdm(total=len(unique), desc="linkcheck", unit="url", disable=not progress)

    async with LinkChecker(config=config, network_backend=network_backend) as checker:
        lanes = HostLanes(urls=unique, key_of=checker.host_key, per_host=config.per_host, ready_at=checker.ready_at)

        async def worker() -> None:
            while (taken := await lanes.take(not_after=deadline_at)) is not None:
                key, u = taken
                try:
                    out = await checker.check(url=u, deadline_at=deadline_at)
                finally:
                    lanes.done(key)
                outcomes[u] = (out, utc_now())
                bar.update(1)

        n_workers = max(1, min(config.concurrency, len(unique)))
        try:
            await asyncio.gather(*(worker() for _ in range(n_workers)))
        finally:
            bar.close()

    results = []
    for t, u in items:
        out, at = outcomes[_url_key(u)]
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
