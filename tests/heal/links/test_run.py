"""A link-check run: one row per input row in input order, one request per distinct URL, the
link-status frame's schema, offline runs, and the run's deadline."""

import asyncio
from dataclasses import replace
from datetime import datetime

from pipelines.heal.links.run import LINK_STATUS_SCHEMA, check_links
from pipelines.schema import CHECKED_AT, LINK_STATUSES, REASON, TRACK_ID, UNKNOWN, URL_STATUS, VALID
from tests.heal.links.conftest import FAST
from tests.net.loopback import LoopbackServer, RecordingBackend


def test_frame_schema_dedup_and_missing_urls(server: LoopbackServer) -> None:
    url = server.base + "/ok"
    frame = check_links([("a", url), ("b", url), ("c", None), ("d", "  ")], config=FAST)
    assert dict(frame.schema) == LINK_STATUS_SCHEMA
    empty = check_links([], config=FAST)
    assert empty.shape == (0, 7) and dict(empty.schema) == LINK_STATUS_SCHEMA
    assert frame[TRACK_ID].to_list() == ["a", "b", "c", "d"]
    assert frame[URL_STATUS].to_list() == [VALID, VALID, UNKNOWN, UNKNOWN]
    assert frame[REASON].to_list()[2:] == ["no_url", "no_url"]
    assert set(frame[URL_STATUS].to_list()) <= set(LINK_STATUSES)
    assert server.paths() == ["/ok"]  # one request for two tracks sharing the URL
    for text in frame[CHECKED_AT].to_list():
        stamp = datetime.fromisoformat(text)
        assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0


def test_offline_makes_no_requests(server: LoopbackServer) -> None:
    backend = RecordingBackend()
    items = [("a", server.base + "/ok"), ("b", "https://soundcloud.com/x/y"), ("c", None)]
    frame = check_links(items, config=replace(FAST, offline=True), network_backend=backend)
    assert frame[URL_STATUS].to_list() == [UNKNOWN] * 3
    assert frame[REASON].to_list() == ["offline"] * 3
    assert server.hits == [] and backend.connects == []


def test_deadline_bounds_the_whole_run(server: LoopbackServer) -> None:
    """Each answer takes 1.5 s (read timeout 5 s): a 0.4 s run cuts the first and starts no other."""
    cfg = replace(FAST, read_timeout_s=5.0, total_timeout_s=5.0, concurrency=1, deadline_s=0.4)
    frame = check_links([(str(i), f"{server.base}/slow?i={i}") for i in range(4)], config=cfg)
    assert frame[REASON].to_list() == ["deadline"] * 4
    assert len(server.hits) == 1  # one request was in flight; the rest never started


def test_check_links_inside_a_running_event_loop(server: LoopbackServer) -> None:
    async def from_async_code() -> list[str]:
        return check_links([("a", server.base + "/ok")], config=FAST)[URL_STATUS].to_list()

    assert asyncio.run(from_async_code()) == [VALID]
