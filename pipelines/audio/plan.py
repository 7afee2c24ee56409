"""What one run downloads: reuse earlier downloads, skip permanent failures, spend a URL budget.

Also the fetch log (one row per attempt) that remembers why a URL failed.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipelines import schema as S
from pipelines.audio.fetch import FetchResult, existing_download, looks_like_audio_url

FETCHABLE_STATUSES: tuple[str, ...] = (S.VALID, S.MOVED)  # link statuses whose URL may serve audio
# A previous attempt that ended like this is not retried for the same URL (the answer will not change
# by asking again soon); every other failure (timeouts, 5xx, connect errors) is retried next run.
_PERMANENT = ("not_audio:", "blocked:", "http_4", "invalid_url", "empty_body", "redirect_loop",
              "too_many_redirects", "redirect_without_location")
FETCH_LOG_SCHEMA = {
    S.TRACK_ID: "Utf8", S.LINK_URL: "Utf8", S.REASON: "Utf8", S.HTTP_CODE: "Int32", "content_type": "Utf8",
    "bytes": "Int64", "path": "Utf8", S.FINAL_URL: "Utf8", "fetched_at": "Utf8",
}


def is_permanent_failure(reason: str | None) -> bool:
    """Whether a fetch `reason` says the URL is not worth asking again (not audio, refused, 4xx)."""
    return bool(reason) and reason.startswith(_PERMANENT)  # type: ignore[union-attr]


@dataclass(frozen=True, kw_only=True)
class FetchPlan:
    """What one run does about tracks without local audio.

    ``reuse`` (track_id, url, path): downloaded by an earlier run, no request; ``todo``
    (track_id, url): to download now (≤ budget, direct-audio-looking URLs first); ``skipped``
    (track_id, url, reason): ``budget`` or ``previous:<reason>`` (a permanent earlier failure).
    """

    reuse: list[tuple[str, str, Path]]
    todo: list[tuple[str, str]]
    skipped: list[tuple[str, str, str]]


def plan_fetches(*, candidates: Sequence[tuple[str, str]], previous: dict[str, str], dest_dir: Path,
                 budget: int) -> FetchPlan:
    """Split ``candidates`` [(track_id, url)] into reuse / todo / skipped (see `FetchPlan`).

    ``previous`` maps url → reason of its last attempt (the fetch log). URLs whose path looks like
    an audio file go first, then the rest (a page may still answer with audio), each in input order.
    """
    reuse: list[tuple[str, str, Path]] = []
    pending: list[tuple[str, str]] = []
    skipped: list[tuple[str, str, str]] = []
    for tid, url in candidates:
        path = existing_download(url=url, dest_dir=dest_dir)
        if path is not None:
            reuse.append((tid, url, path))
        elif is_permanent_failure(previous.get(url)):
            skipped.append((tid, url, f"previous:{previous[url]}"))
        else:
            pending.append((tid, url))
    pending.sort(key=lambda item: not looks_like_audio_url(item[1]))  # stable: audio-looking first
    todo, rest = [], []
    urls_taken: set[str] = set()
    for tid, url in pending:  # the budget counts distinct URLs (requests), not tracks
        if url in urls_taken or len(urls_taken) < max(0, budget):
            urls_taken.add(url)
            todo.append((tid, url))
        else:
            rest.append((tid, url))
    skipped += [(tid, url, "budget") for tid, url in rest]
    return FetchPlan(reuse=reuse, todo=todo, skipped=skipped)


def fetch_log_frame(
    *, todo: Sequence[tuple[str, str]], results: Sequence[FetchResult], fetched_at: str
) -> pl.DataFrame:
    """[(track_id, url)] (n) and their n results → fetch-log rows (n, 9) with `FETCH_LOG_SCHEMA` columns."""
    return pl.DataFrame(
        {
            S.TRACK_ID: [t for t, _ in todo], S.LINK_URL: [u for _, u in todo],
            S.REASON: [r.reason for r in results], S.HTTP_CODE: [r.http_code for r in results],
            "content_type": [r.content_type for r in results], "bytes": [r.bytes for r in results],
            "path": [None if r.path is None else str(r.path) for r in results],
            S.FINAL_URL: [r.final_url for r in results], "fetched_at": [fetched_at] * len(results),
        },
        schema={k: getattr(pl, v) for k, v in FETCH_LOG_SCHEMA.items()},
    )
