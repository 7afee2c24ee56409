"""Link re-check planning: freshness per status, UNKNOWN backoff, budget and order."""

from datetime import datetime, timedelta, timezone

import polars as pl

from pipelines import schema as S
from pipelines.heal.links.status import HISTORY_SCHEMA, current_status, plan_checks, reason_table

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
    out = current_status(tracks=tracks, history=_hist([("a", "DEAD", "http_404", 1)])).sort(S.TRACK_ID)
    assert out[S.URL_STATUS].to_list() == ["SUSPECT", "UNKNOWN"]  # one 404 is not yet DEAD
    assert out[S.REASON].to_list() == ["http_404", "not_checked_yet"]


def _status(rows, confirm_hours=24.0, ids=("x",)) -> dict[str, str]:
    out = current_status(tracks=_tracks(list(ids)), history=_hist(rows), confirm_hours=confirm_hours)
    return dict(zip(out[S.TRACK_ID].to_list(), out[S.URL_STATUS].to_list()))


def test_dead_needs_two_checks_at_least_a_day_apart() -> None:
    h = 1 / 24
    assert _status([("x", "DEAD", "http_404", 3)]) == {"x": "SUSPECT"}
    # two 404s an hour apart: still SUSPECT; 25 h apart: DEAD; exactly 24 h: DEAD
    assert _status([("x", "DEAD", "http_404", 3), ("x", "DEAD", "http_404", 3 - h)]) == {"x": "SUSPECT"}
    assert _status([("x", "DEAD", "http_404", 3), ("x", "DEAD", "http_404", 3 - 25 * h)]) == {"x": "DEAD"}
    assert _status([("x", "DEAD", "http_404", 3), ("x", "DEAD", "http_410", 2)]) == {"x": "DEAD"}
    # the interval is configurable
    assert _status([("x", "DEAD", "http_404", 3), ("x", "DEAD", "http_404", 2)], confirm_hours=48) == {"x": "SUSPECT"}
    assert _status([("x", "DEAD", "http_404", 3), ("x", "DEAD", "http_404", 2), ("x", "DEAD", "http_404", 1)],
                   confirm_hours=48) == {"x": "DEAD"}


def test_live_check_resets_and_unknown_does_not() -> None:
    # DEAD, then VALID, then DEAD a day later: the streak restarted, so SUSPECT
    assert _status([("x", "DEAD", "http_404", 5), ("x", "VALID", None, 3),
                    ("x", "DEAD", "http_404", 2)]) == {"x": "SUSPECT"}
    # DEAD, timeout, DEAD 2 days later: the timeout neither confirms nor refutes — DEAD
    assert _status([("x", "DEAD", "http_404", 5), ("x", "UNKNOWN", "timeout", 4),
                    ("x", "DEAD", "http_404", 3)]) == {"x": "DEAD"}
    # a confirmed DEAD that answers again is VALID; a latest UNKNOWN shows UNKNOWN
    assert _status([("x", "DEAD", "http_404", 5), ("x", "DEAD", "http_404", 3),
                    ("x", "VALID", None, 1)]) == {"x": "VALID"}
    assert _status([("x", "DEAD", "http_404", 5), ("x", "UNKNOWN", "timeout", 1)]) == {"x": "UNKNOWN"}


def test_history_is_not_rewritten_and_provenance_kept() -> None:
    hist = _hist([("x", "DEAD", "http_404", 3), ("x", "DEAD", "http_404", 1)])
    before = hist.clone()
    out = current_status(tracks=_tracks(["x"]), history=hist)
    assert hist.equals(before)  # derived, never written back: the history stays append-only
    row = out.row(0, named=True)
    assert row[S.URL_STATUS] == "DEAD" and row[S.DEAD_CHECKS] == 2
    assert row[S.FIRST_DEAD_AT] == (NOW - timedelta(days=3)).isoformat()
    assert row[S.CHECKED_AT] == (NOW - timedelta(days=1)).isoformat()


def test_suspect_is_rechecked_after_one_day_dead_after_thirty() -> None:
    tracks = _tracks(["s_fresh", "s_stale", "dead_fresh"])
    hist = _hist([("s_fresh", "DEAD", "http_404", 0.5), ("s_stale", "DEAD", "http_404", 1.1),
                  ("dead_fresh", "DEAD", "http_404", 10), ("dead_fresh", "DEAD", "http_404", 5)])
    due = {t for t, _ in plan_checks(tracks=tracks, history=hist, budget=10, now=NOW)}
    assert due == {"s_stale"}
    due_later = {t for t, _ in plan_checks(tracks=tracks, history=hist, budget=10, now=NOW + timedelta(days=26))}
    assert due_later == {"s_fresh", "s_stale", "dead_fresh"}


def test_reason_table_counts_status_by_reason() -> None:
    hist = _hist([("a", "DEAD", "http_404", 1), ("b", "DEAD", "http_404", 2), ("c", "UNKNOWN", "timeout", 1),
                  ("d", "VALID", None, 1)])
    table = reason_table(status=current_status(tracks=_tracks(["a", "b", "c", "d", "e"]), history=hist))
    rows = {(r[S.URL_STATUS], r[S.REASON]): r["count"] for r in table.iter_rows(named=True)}
    assert rows == {("SUSPECT", "http_404"): 2, ("UNKNOWN", "timeout"): 1, ("UNKNOWN", "not_checked_yet"): 1,
                    ("VALID", "-"): 1}


def test_shard_of_is_stable_and_balanced_on_real_track_ids() -> None:
    """sha1-based shards: pinned values (history files are keyed by them), independent of the
    process, and spread evenly over real crawl ids (chi-square, 7 dof, p > 0.001)."""
    import collections
    import hashlib

    import pytest

    from pipelines.heal import democorpus
    from pipelines.heal.links.status import LINK_SHARDS, in_shard, shard_keys, shard_of
    from pipelines.store import DATA_DIR

    assert shard_keys() == ["00", "01", "02", "03", "04", "05", "06", "07"] and LINK_SHARDS == 8
    assert shard_of(track_id="musiccaps:-0Gj8-vB1q4:30") == "02"
    assert shard_of(track_id="musiccaps:-0vPFx-wRRI:30") == "06"
    try:
        ids = (democorpus.musiccaps_rows(data_dir=DATA_DIR)[S.TRACK_ID].to_list()
               + democorpus.jamendo_rows(data_dir=DATA_DIR, limit=3000)[S.TRACK_ID].to_list())
    except FileNotFoundError:
        pytest.skip("demo corpus data not available")
    assert len(set(ids)) == len(ids) > 5000
    shards = [shard_of(track_id=t) for t in ids]
    for t, k in zip(ids[:200], shards):  # the documented formula, computed independently
        assert int(k) == int.from_bytes(hashlib.sha1(t.encode()).digest()[:8], "big") % 8
    counts = collections.Counter(shards)
    expected = len(ids) / 8
    chi2 = sum((counts[k] - expected) ** 2 / expected for k in shard_keys())
    assert set(counts) == set(shard_keys()) and chi2 < 24.32
    # the shards partition the crawl: every id in exactly one
    frame = pl.DataFrame({S.TRACK_ID: ids[:800]})
    parts = [in_shard(frame=frame, shard=k) for k in shard_keys()]
    assert sum(p.height for p in parts) == 800
    assert set().union(*(set(p[S.TRACK_ID].to_list()) for p in parts)) == set(ids[:800])
    with pytest.raises(ValueError):
        in_shard(frame=frame, shard="08")


def test_union_histories_keeps_every_distinct_check() -> None:
    from pipelines.heal.links.status import union_histories

    a = _hist([("t1", "DEAD", "http_404", 2), ("t2", "VALID", None, 1)])
    b = _hist([("t1", "DEAD", "http_404", 0)])
    both = union_histories(histories=[a, b, a.head(1), pl.DataFrame(schema=HISTORY_SCHEMA)])
    assert both.height == 3 and dict(both.schema) == HISTORY_SCHEMA
    status = current_status(tracks=_tracks(["t1", "t2"]), history=both, confirm_hours=24)
    assert dict(zip(status[S.TRACK_ID].to_list(), status[S.URL_STATUS].to_list())) == {"t1": "DEAD", "t2": "VALID"}
