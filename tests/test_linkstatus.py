"""Link re-check planning: freshness per status, UNKNOWN backoff, budget and order."""

from datetime import datetime, timedelta, timezone

import polars as pl

from pipelines import schema as S
from pipelines.linkstatus import HISTORY_SCHEMA, current_status, plan_checks

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def _tracks(ids):
    return pl.DataFrame({S.TRACK_ID: ids, S.PERMALINK_URL: [f"https://example.org/{i}" for i in ids]})


def _hist(rows):
    return pl.DataFrame(
        [{S.TRACK_ID: t, "url": f"https://example.org/{t}", S.URL_STATUS: st, S.HTTP_CODE: None,
          S.FINAL_URL: None, S.REASON: reason, S.CHECKED_AT: (NOW - timedelta(days=age)).isoformat()}
         for t, st, reason, age in rows],
        schema=HISTORY_SCHEMA,
    )


def test_freshness_policy_per_status() -> None:
    tracks = _tracks(["new", "valid_fresh", "valid_stale", "unknown_1d", "unknown_fresh", "auth_8d", "offline"])
    hist = _hist([
        ("valid_fresh", "VALID", None, 29), ("valid_stale", "VALID", None, 31),
        ("unknown_1d", "UNKNOWN", "timeout", 1.5), ("unknown_fresh", "UNKNOWN", "timeout", 0.5),
        ("auth_8d", "REQUIRES_AUTH", None, 8), ("offline", "UNKNOWN", "offline", 0.1),
    ])
    due = {t for t, _ in plan_checks(tracks=tracks, history=hist, budget=100, now=NOW)}
    assert due == {"new", "valid_stale", "unknown_1d", "auth_8d", "offline"}


def test_unknown_backs_off_exponentially() -> None:
    # three consecutive UNKNOWNs: fresh for 1·2² = 4 days after the last one
    hist = _hist([("x", "UNKNOWN", "timeout", 10), ("x", "UNKNOWN", "timeout", 6), ("x", "UNKNOWN", "timeout", 3)])
    assert plan_checks(tracks=_tracks(["x"]), history=hist, budget=10, now=NOW) == []
    later = NOW + timedelta(days=1.5)
    assert [t for t, _ in plan_checks(tracks=_tracks(["x"]), history=hist, budget=10, now=later)] == ["x"]
    # a VALID in between resets the streak: one UNKNOWN after it is due after 1 day
    hist2 = _hist([("y", "UNKNOWN", "timeout", 10), ("y", "VALID", None, 6), ("y", "UNKNOWN", "timeout", 1.2)])
    assert [t for t, _ in plan_checks(tracks=_tracks(["y"]), history=hist2, budget=10, now=NOW)] == ["y"]


def test_budget_takes_never_checked_then_stalest() -> None:
    tracks = _tracks(["a", "b", "c", "d"])
    hist = _hist([("a", "VALID", None, 40), ("b", "VALID", None, 60)])
    assert [t for t, _ in plan_checks(tracks=tracks, history=hist, budget=3, now=NOW)] == ["c", "d", "b"]


def test_current_status_marks_unchecked() -> None:
    tracks = _tracks(["a", "b"])
    out = current_status(tracks=tracks, history=_hist([("a", "DEAD", None, 1)])).sort(S.TRACK_ID)
    assert out[S.URL_STATUS].to_list() == ["DEAD", "UNKNOWN"]
    assert out[S.REASON].to_list()[1] == "not_checked_yet"
