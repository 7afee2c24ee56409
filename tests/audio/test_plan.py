"""The fetch cursor: what a run asks for (never-tried first, hosts interleaved, due retries, the budget),
which failures are permanent, the backoff, and the rows a run leaves."""

from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl

from pipelines import schema as S
from pipelines.audio.fetch import FetchResult
from pipelines.audio.media import download_stem
from pipelines.audio.plan import (
    ATTEMPTS,
    FETCH_SCHEMA,
    NEXT_ATTEMPT_AT,
    PAGE_URL,
    PENDING,
    Backoff,
    fetch_rows,
    interleave_hosts,
    is_permanent_failure,
    plan_fetches,
)
from pipelines.audio.resolve import Resolution

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def _cands(rows: list[tuple[str, str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={S.TRACK_ID: pl.Utf8, PAGE_URL: pl.Utf8, PENDING: pl.Utf8}, orient="row")


def _row(tid: str, url: str, *, reason: str, attempts: int, next_at: datetime | None, path: str | None = None) -> dict:
    return {**dict.fromkeys(FETCH_SCHEMA), S.TRACK_ID: tid, PAGE_URL: url, S.REASON: reason, ATTEMPTS: attempts,
            NEXT_ATTEMPT_AT: None if next_at is None else next_at.isoformat(), "path": path}


def _resolution(url: str, reason: str, path: Path | None = None) -> Resolution:
    result = FetchResult(url=url, path=path, bytes=0 if path is None else path.stat().st_size, content_type=None,
                         reason=reason, http_code=200 if path else 503)
    return Resolution(url=url, resolver="og_audio" if path else None, audio_url=url + ".ogg" if path else None,
                      result=result)


def test_permanent_failures_and_backoff() -> None:
    for reason in ("not_audio:text/html", "blocked:loopback", "http_404", "http_410", "page_without_audio",
                   "oembed_without_audio", "page_too_large", "redirect_loop", "no_url"):
        assert is_permanent_failure(reason), reason
    for reason in ("timeout", "http_503", "http_429", "http_408", "connect_error", "dns_error", "error:OSError", None):
        assert not is_permanent_failure(reason), reason
    b = Backoff(base_s=60, cap_s=300, max_attempts=5)
    delays = [b.next_attempt(reason="timeout", ok=False, attempts=n, at=NOW) for n in range(1, 6)]
    assert [(d - NOW).total_seconds() for d in delays[:4]] == [60, 120, 240, 300] and delays[4] is None
    assert b.next_attempt(reason="http_404", ok=False, attempts=1, at=NOW) is None
    assert b.next_attempt(reason="ok", ok=True, attempts=1, at=NOW) is None


def test_hosts_are_interleaved_keeping_order_within_a_host() -> None:
    items = [("a1", "http://a.example/1"), ("a2", "http://a.example/2"), ("a3", "http://A.example/3"),
             ("b1", "http://b.example/1"), ("c1", "http://c.example:8080/1"), ("b2", "http://b.example/2")]
    assert [t for t, _ in interleave_hosts(items)] == ["a1", "b1", "c1", "a2", "b2", "a3"]


def test_plan_orders_never_tried_then_due_retries_within_the_budget(tmp_path: Path) -> None:
    kept_file = tmp_path / "done.ogg"
    kept_file.write_bytes(b"OggS" + bytes(60))
    direct = "http://h.example/old.mp3"  # downloaded by an earlier run under its URL's name
    (tmp_path / f"{download_stem(direct)}.mp3").write_bytes(b"ID3" + bytes(60))
    table = pl.DataFrame([
        _row("done", "http://h.example/done", reason="ok", attempts=1, next_at=None, path=str(kept_file)),
        _row("gone", "http://h.example/gone", reason="ok", attempts=1, next_at=None, path=str(tmp_path / "x.ogg")),
        _row("perm", "http://h.example/perm", reason="http_404", attempts=1, next_at=None),
        _row("later", "http://h.example/later", reason="timeout", attempts=1, next_at=NOW + timedelta(hours=1)),
        _row("due2", "http://h.example/due2", reason="http_503", attempts=2, next_at=NOW - timedelta(minutes=1)),
        _row("due1", "http://h.example/due1", reason="timeout", attempts=1, next_at=NOW - timedelta(hours=3)),
        _row("changed", "http://h.example/before", reason="http_404", attempts=1, next_at=None),
    ], schema=FETCH_SCHEMA)
    cands = _cands([
        ("done", "http://h.example/done", None), ("gone", "http://h.example/gone", None),
        ("perm", "http://h.example/perm", None), ("later", "http://h.example/later", None),
        ("due2", "http://h.example/due2", None), ("due1", "http://h.example/due1", None),
        ("changed", "http://h.example/after", None), ("new1", "http://h.example/n1", None),
        ("new2", "http://other.example/n2", None), ("twin", "http://h.example/n1", None),
        ("old", direct, None), ("dead", "http://h.example/dead", "link_suspect:http_404"), ("nourl", None, "no_url"),
    ])
    plan = plan_fetches(candidates=cands, table=table, dest_dir=tmp_path, budget=5, now=NOW)
    # never tried (a changed link counts as new; a vanished download too), hosts interleaved, then due retries
    assert plan.todo == [("gone", "http://h.example/gone"), ("new2", "http://other.example/n2"),
                         ("changed", "http://h.example/after"), ("new1", "http://h.example/n1"),
                         ("twin", "http://h.example/n1"), ("due1", "http://h.example/due1")]
    assert [r[S.TRACK_ID] for r in plan.kept] == ["done", "perm", "later", "due2"]  # due2: over the budget
    assert plan.waiting == [("dead", "http://h.example/dead", "link_suspect:http_404"), ("nourl", None, "no_url")]
    assert [(t, u) for t, u, _ in plan.reuse] == [("old", direct)]
    offline = plan_fetches(candidates=cands, table=table, dest_dir=tmp_path, budget=0, now=NOW, overflow="offline")
    assert offline.todo == [] and ("new1", "http://h.example/n1", "offline") in offline.waiting


def test_rows_after_a_run_count_attempts_and_schedule_retries(tmp_path: Path) -> None:
    audio = tmp_path / "a.ogg"
    audio.write_bytes(b"OggS" + bytes(100))
    table = pl.DataFrame([_row("retry", "http://h/r", reason="timeout", attempts=2, next_at=NOW)], schema=FETCH_SCHEMA)
    cands = _cands([("retry", "http://h/r", None), ("new", "http://h/n", None), ("late", "http://h/l", None)])
    plan = plan_fetches(candidates=cands, table=table, dest_dir=tmp_path, budget=10, now=NOW)
    resolutions = {"http://h/r": _resolution("http://h/r", "http_503"),
                   "http://h/n": _resolution("http://h/n", "ok", audio)}
    out = fetch_rows(plan=plan, resolutions=resolutions, now=NOW, backoff=Backoff(base_s=60, cap_s=3600))
    rows = {r[S.TRACK_ID]: r for r in out.iter_rows(named=True)}
    assert out.schema == pl.Schema(FETCH_SCHEMA) and out.height == 3
    assert (rows["retry"][ATTEMPTS], rows["retry"][S.REASON]) == (3, "http_503")
    assert datetime.fromisoformat(rows["retry"][NEXT_ATTEMPT_AT]) == NOW + timedelta(seconds=240)  # 60 · 2²
    assert rows["new"]["path"] == str(audio) and rows["new"]["bytes"] == 104 and rows["new"][NEXT_ATTEMPT_AT] is None
    new, late = rows["new"], rows["late"]
    assert (new["resolver"], new["audio_url"], new[ATTEMPTS]) == ("og_audio", "http://h/n.ogg", 1)
    # a link the run did not reach (deadline) is still never tried
    assert (late[S.REASON], late[ATTEMPTS], late["last_attempt_at"]) == ("not_tried_yet", 0, None)
