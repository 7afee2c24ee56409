"""Fetch planning: reuse earlier downloads, skip permanent failures, spend the URL budget."""

from pathlib import Path

from pipelines.audio.fetch import FetchResult, download_stem
from pipelines.audio.plan import FETCH_LOG_SCHEMA, fetch_log_frame, is_permanent_failure, plan_fetches


def test_plan_fetches_budget_reuse_and_permanent_failures(tmp_path: Path) -> None:
    kept = tmp_path / "x"
    kept.mkdir()
    reused = "http://h.example/old.mp3"
    (kept / f"{download_stem(reused)}.mp3").write_bytes(b"ID3data")
    cands = [("a", "http://h.example/page"), ("b", "http://h.example/song.mp3"), ("c", reused),
             ("d", "http://h.example/html"), ("e", "http://h.example/slow.ogg"), ("f", "http://h.example/song.mp3")]
    previous = {"http://h.example/html": "not_audio:text/html", "http://h.example/slow.ogg": "timeout"}
    plan = plan_fetches(candidates=cands, previous=previous, dest_dir=kept, budget=2)
    assert [(t, p.name.endswith(".mp3")) for t, _, p in plan.reuse] == [("c", True)]
    assert plan.todo == [("b", "http://h.example/song.mp3"), ("e", "http://h.example/slow.ogg"),
                         ("f", "http://h.example/song.mp3")]  # audio-looking first; a shared URL costs once
    assert sorted(plan.skipped) == [("a", "http://h.example/page", "budget"),
                                    ("d", "http://h.example/html", "previous:not_audio:text/html")]


def test_permanent_failures_and_fetch_log_rows(tmp_path: Path) -> None:
    assert is_permanent_failure("not_audio:text/html") and is_permanent_failure("http_404")
    assert not is_permanent_failure("timeout") and not is_permanent_failure("http_503")
    assert not is_permanent_failure(None)
    ok = FetchResult(url="http://h/a.ogg", path=tmp_path / "a.ogg", bytes=10, content_type="audio/ogg", reason="ok",
                     http_code=200, final_url="http://h/a.ogg")
    refused = FetchResult(url="http://h/p", path=None, bytes=0, content_type="text/html", reason="not_audio:text/html",
                          http_code=200)
    log = fetch_log_frame(todo=[("a", "http://h/a.ogg"), ("b", "http://h/p")], results=[ok, refused], fetched_at="t0")
    assert log.columns == list(FETCH_LOG_SCHEMA) and log.height == 2
    assert log.row(0, named=True)["path"] == str(tmp_path / "a.ogg") and log.row(1, named=True)["path"] is None
    assert log["reason"].to_list() == ["ok", "not_audio:text/html"] and log["fetched_at"].to_list() == ["t0", "t0"]
