"""The per-track fetch table and the cursor over it: which links one fetch run asks for within its
budget, and every track's row after the run.

One row per track without local audio: the link tried (``page_url``), the audio it resolved to,
how (``resolver``), the outcome (``reason``), ``attempts``, ``last_attempt_at``, ``next_attempt_at``
and the download (``path``, ``bytes``). The table is the cursor: a run asks for the links never tried
first (hosts interleaved, so one slow host does not hold the run), then the retryable failures whose
``next_attempt_at`` has come (oldest first); a permanent failure has no next attempt and is not
asked again while its link stays the same; a kept download is reused.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl

from pipelines import schema as S
from pipelines.audio.fetch import REUSED
from pipelines.audio.media import download_stem, existing_downloads
from pipelines.audio.pages import DIRECT
from pipelines.audio.resolve import OEMBED_INVALID, OEMBED_WITHOUT_AUDIO, PAGE_WITHOUT_AUDIO, Resolution

PAGE_URL = "page_url"  # the link asked: the MOVED target, else the crawled permalink
AUDIO_URL = "audio_url"
RESOLVER = "resolver"
ATTEMPTS = "attempts"
LAST_ATTEMPT_AT = "last_attempt_at"
NEXT_ATTEMPT_AT = "next_attempt_at"
PATH = "path"
BYTES = "bytes"
PENDING = "pending"  # in a candidates frame: why a track is not asked now (null when it may be)
FETCH_SCHEMA: dict[str, pl.DataType] = {
    S.TRACK_ID: pl.Utf8(), PAGE_URL: pl.Utf8(), AUDIO_URL: pl.Utf8(), RESOLVER: pl.Utf8(), S.REASON: pl.Utf8(),
    S.HTTP_CODE: pl.Int32(), ATTEMPTS: pl.Int32(), LAST_ATTEMPT_AT: pl.Utf8(), NEXT_ATTEMPT_AT: pl.Utf8(),
    PATH: pl.Utf8(), BYTES: pl.Int64(),
}
NOT_TRIED = "not_tried_yet"  # within reach, but beyond this run's budget or deadline
OFFLINE = "offline"
# A failure that ends like this is not asked again for the same link (asking again will not change it).
_PERMANENT = ("not_audio:", "blocked:", "invalid_url", "empty_body", "redirect_loop", "too_many_redirects",
              "redirect_without_location", "page_too_large", "oembed_too_large", "no_url",
              PAGE_WITHOUT_AUDIO, OEMBED_WITHOUT_AUDIO, OEMBED_INVALID)
_RETRYABLE_4XX = frozenset({408, 425, 429})


def is_permanent_failure(reason: str | None) -> bool:
    """Whether a fetch ``reason`` says the link is not worth asking again (not audio, refused, 4xx)."""
    if not reason:
        return False
    if reason.startswith("http_4"):
        code = reason.removeprefix("http_")
        return not (code.isdigit() and int(code) in _RETRYABLE_4XX)
    return reason.startswith(_PERMANENT)


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """When a retryable failure is asked again: ``base_s`` after the first, doubling, ≤ ``cap_s``;
    after ``max_attempts`` attempts it is not asked again."""

    base_s: float = 3600.0
    cap_s: float = 7 * 86400.0
    max_attempts: int = 8

    def next_attempt(self, *, reason: str, ok: bool, attempts: int, at: datetime) -> datetime | None:
        """The next attempt after ``attempts`` attempts, the last at ``at``; None: never (a success, a
        permanent failure, or attempts used up)."""
        if ok or is_permanent_failure(reason) or attempts >= self.max_attempts:
            return None
        return at + timedelta(seconds=min(self.base_s * 2 ** max(attempts - 1, 0), self.cap_s))


def empty_fetch_table() -> pl.DataFrame:
    return pl.DataFrame(schema=FETCH_SCHEMA)


def union_fetch_tables(tables: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Fetch tables (one per shard) as one frame with `FETCH_SCHEMA` columns."""
    parts = [t.select(list(FETCH_SCHEMA)).cast(FETCH_SCHEMA) for t in tables if t.height]
    return pl.concat(parts, how="vertical") if parts else empty_fetch_table()


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def interleave_hosts(items: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(track_id, url) pairs reordered round-robin over the URLs' hosts, input order kept within a host."""
    seen: dict[str, int] = {}
    keyed = []
    for i, (tid, url) in enumerate(items):
        host = _host(url)
        keyed.append((seen.get(host, 0), i, tid, url))
        seen[host] = seen.get(host, 0) + 1
    return [(tid, url) for _, _, tid, url in sorted(keyed)]


@dataclass(frozen=True, kw_only=True)
class FetchPlan:
    """What one run does. ``todo``: (track_id, link) to ask now (≤ budget distinct links); ``kept``:
    rows carried over unchanged (downloads on disk, permanent failures, retries not yet due or beyond
    the budget); ``waiting``: (track_id, link, reason) never asked yet (``pending`` reasons, ``no_url``,
    ``offline``, ``not_tried_yet``); ``reuse``: (track_id, link, file) of links downloaded earlier."""

    todo: list[tuple[str, str]]
    kept: list[dict]
    waiting: list[tuple[str, str | None, str]]
    reuse: list[tuple[str, str, Path]]
    previous: dict[str, dict]  # track_id → its previous row for the same link


def plan_fetches(*, candidates: pl.DataFrame, table: pl.DataFrame | None, dest_dir: Path, budget: int,
                 now: datetime, overflow: str = NOT_TRIED) -> FetchPlan:
    """Split ``candidates`` (track_id, page_url, pending) against the previous ``table`` (see `FetchPlan`).

    A previous row counts only for the same track and link. ``overflow`` is the reason recorded for
    never-tried links beyond the budget (``offline`` when the run may not use the network).
    """
    rows = {r[S.TRACK_ID]: r for r in (table if table is not None else empty_fetch_table()).iter_rows(named=True)}
    fresh: list[tuple[str, str]] = []
    retries: list[tuple[str, str, str]] = []
    plan = FetchPlan(todo=[], kept=[], waiting=[], reuse=[], previous={})
    downloads = existing_downloads(dest_dir=dest_dir)
    for tid, url, pending in candidates.select(S.TRACK_ID, PAGE_URL, PENDING).iter_rows():
        if url is None:
            plan.waiting.append((tid, None, pending or "no_url"))
            continue
        row = rows.get(tid)
        if row is not None and row[PAGE_URL] == url:
            plan.previous[tid] = row
            if row[PATH] is not None and Path(row[PATH]).is_file():
                plan.kept.append(row)
                continue
            if row[PATH] is None and row[ATTEMPTS]:  # an earlier failure
                due = row[NEXT_ATTEMPT_AT] is not None and datetime.fromisoformat(row[NEXT_ATTEMPT_AT]) <= now
                if due and pending is None:
                    retries.append((row[NEXT_ATTEMPT_AT], tid, url))
                else:
                    plan.kept.append(row)
                continue
        kept = downloads.get(download_stem(url))
        if kept is not None:
            plan.reuse.append((tid, url, kept))
        elif pending is not None:
            plan.waiting.append((tid, url, pending))
        else:
            fresh.append((tid, url))
    ordered = interleave_hosts(fresh) + [(tid, url) for _, tid, url in sorted(retries)]
    taken: set[str] = set()
    for tid, url in ordered:  # the budget counts distinct links (requests), not tracks
        if url in taken or len(taken) < max(0, budget):
            taken.add(url)
            plan.todo.append((tid, url))
        elif tid in plan.previous and plan.previous[tid][ATTEMPTS]:
            plan.kept.append(plan.previous[tid])
        else:
            plan.waiting.append((tid, url, overflow))
    return plan


def _attempted(*, tid: str, url: str, res: Resolution, attempts: int, now: datetime, backoff: Backoff) -> dict:
    nxt = backoff.next_attempt(reason=res.reason, ok=res.ok, attempts=attempts, at=now)
    return {
        S.TRACK_ID: tid, PAGE_URL: url, AUDIO_URL: res.audio_url, RESOLVER: res.resolver, S.REASON: res.reason,
        S.HTTP_CODE: res.result.http_code, ATTEMPTS: attempts, LAST_ATTEMPT_AT: now.isoformat(timespec="seconds"),
        NEXT_ATTEMPT_AT: None if nxt is None else nxt.isoformat(timespec="seconds"),
        PATH: None if res.result.path is None else str(res.result.path), BYTES: res.result.bytes,
    }


def fetch_rows(*, plan: FetchPlan, resolutions: Mapping[str, Resolution], now: datetime,
               backoff: Backoff = Backoff()) -> pl.DataFrame:
    """The fetch table after a run: one `FETCH_SCHEMA` row per planned track. A link the run did not
    reach (deadline) keeps its previous row, or waits as ``not_tried_yet``."""
    out: list[dict] = list(plan.kept)

    def untried(tid: str, url: str | None, reason: str) -> dict:
        before = plan.previous.get(tid) or {}
        return {**dict.fromkeys(FETCH_SCHEMA), S.TRACK_ID: tid, PAGE_URL: url, S.REASON: reason,
                ATTEMPTS: before.get(ATTEMPTS) or 0, LAST_ATTEMPT_AT: before.get(LAST_ATTEMPT_AT)}

    out += [untried(tid, url, reason) for tid, url, reason in plan.waiting]
    for tid, url, path in plan.reuse:
        out.append({**untried(tid, url, REUSED), AUDIO_URL: url, RESOLVER: DIRECT, PATH: str(path),
                    BYTES: path.stat().st_size})
    for tid, url in plan.todo:
        res = resolutions.get(url)
        before = plan.previous.get(tid)
        if res is not None:
            attempts = ((before or {}).get(ATTEMPTS) or 0) + 1
            out.append(_attempted(tid=tid, url=url, res=res, attempts=attempts, now=now, backoff=backoff))
        elif before is not None and before[ATTEMPTS]:
            out.append(before)
        else:
            out.append(untried(tid, url, NOT_TRIED))
    return pl.DataFrame(out, schema=FETCH_SCHEMA) if out else empty_fetch_table()
