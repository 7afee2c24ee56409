"""``moodscape ingest`` / ``check-links`` through argparse, on real MusicCaps rows and a real
loopback HTTP server (127.0.0.1 only)."""

import argparse
import csv
import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from moodscape.healcli import CHECK_LINKS_COLUMNS, register
from pipelines import schema as S
from pipelines.heal.democorpus import musiccaps_rows
from pipelines.heal.ingest import CRAWL_DTYPES, QUARANTINE_DTYPES
from pipelines.store import DATA_DIR
from tests.helpers import LoopbackHandler

pytestmark = pytest.mark.skipif(not (DATA_DIR / "corpus" / "musiccaps.csv").exists(),
                                reason="bundled data/ missing")


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="moodscape")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


def _last_json(out: str) -> dict:
    lines = [line for line in out.splitlines() if line.strip()]
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def real_rows() -> list[dict]:
    """12 real MusicCaps crawl rows (track_id, description, tags, permalink_url, source)."""
    return musiccaps_rows(data_dir=DATA_DIR).head(12).to_dicts()


def _write_crawl(path: Path, rows: list[dict]) -> Path:
    cols = [S.TRACK_ID, S.DESCRIPTION, S.TAGS, S.PERMALINK_URL, S.PLAYBACK_COUNT, S.CREATED_AT, S.SOURCE]
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
    return path


# --------------------------------------------------------------------------- ingest
def test_ingest_writes_tables_and_json_summary(tmp_path: Path, real_rows: list[dict],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rows = [dict(r) for r in real_rows]
    # damage: two bad play counts, one impossible date, one with no identity at all
    rows[1][S.PLAYBACK_COUNT] = "lots"
    rows[2][S.PLAYBACK_COUNT] = "1.234"  # ambiguous (thousands or decimal?) → quarantine
    rows[3][S.CREATED_AT] = "05/01/2020"
    rows[4] = {S.DESCRIPTION: rows[4][S.DESCRIPTION]}  # no track_id, no permalink, no title+artist
    rows[5][S.PLAYBACK_COUNT] = "1,234"  # unambiguous → 1234
    # duplicates: an exact repeat of row 0 by track_id, and an id-less repeat of row 6's permalink
    dup_id = dict(rows[0], **{S.TAGS: (rows[0][S.TAGS] or "") + ", extra tag"})
    dup_url = dict(rows[6], **{S.TRACK_ID: None, S.PERMALINK_URL: rows[6][S.PERMALINK_URL] + "&utm_source=x"})
    rows += [dup_id, dup_url]
    crawl = _write_crawl(tmp_path / "crawl.csv", rows)
    out = tmp_path / "out"

    assert _run(["ingest", str(crawl), "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    summary = _last_json(captured.out)
    assert set(summary) == {"rows_in", "ingested", "quarantined", "duplicates_merged"}
    assert summary == {"rows_in": 14, "ingested": 8, "quarantined": 4, "duplicates_merged": 2}
    assert summary["rows_in"] == summary["ingested"] + summary["quarantined"] + summary["duplicates_merged"]
    assert "quarantined" in captured.err and "bad playback_count" in captured.err

    tracks = pl.read_parquet(out / "tracks.parquet")
    quarantine = pl.read_parquet(out / "quarantine.parquet")
    assert dict(tracks.schema) == CRAWL_DTYPES and dict(quarantine.schema) == QUARANTINE_DTYPES
    assert tracks.height == 8 and quarantine.height == 4
    assert sorted(quarantine[S.ROW_NUMBER].to_list()) == [2, 3, 4, 5]
    assert all(quarantine[S.REASON].to_list())
    by_id = {r[S.TRACK_ID]: r for r in tracks.iter_rows(named=True)}
    assert by_id[rows[5][S.TRACK_ID]][S.PLAYBACK_COUNT] == 1234
    assert "extra tag" in by_id[rows[0][S.TRACK_ID]][S.TAGS]  # merged duplicate kept the union of tags
    # no temp files left beside the outputs
    assert sorted(p.name for p in out.iterdir()) == ["quarantine.parquet", "tracks.parquet"]


def test_ingest_progress_goes_to_stderr_not_stdout(tmp_path: Path, real_rows: list[dict],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    crawl = _write_crawl(tmp_path / "crawl.csv", real_rows)
    assert _run(["ingest", str(crawl), "--out", str(tmp_path / "o")]) == 0
    captured = capsys.readouterr()
    assert [line for line in captured.out.splitlines() if line.strip()] == [captured.out.strip()]
    assert _last_json(captured.out) == {"rows_in": 12, "ingested": 12, "quarantined": 0, "duplicates_merged": 0}


@pytest.mark.parametrize("name", ["garbage.csv", "garbage.parquet", "garbage.jsonl", "bom16.csv", "missing.csv"])
def test_ingest_unreadable_file_exits_2(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    if name == "bom16.csv":
        path.write_bytes(b"\xff\xfe" + b"abc")  # UTF-16 byte-order mark, then an odd byte count
    elif name != "missing.csv":
        # deterministic binary garbage (no crawl header, not Parquet, not JSON)
        path.write_bytes(bytes((i * 197 + 89) % 256 for i in range(4096)))
    out = tmp_path / "out"
    assert _run(["ingest", str(path), "--out", str(out), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and str(path) in captured.err
    assert captured.out == ""
    assert not out.exists()


# --------------------------------------------------------------------------- check-links
class _Handler(LoopbackHandler):

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.hits.append((self.command, self.path))  # type: ignore[attr-defined]
        status, headers, body = {
            "/ok": (200, {}, b"hello"),
            "/gone": (404, {}, b"not found"),
            "/moved": (301, {"Location": "/ok"}, b""),
        }.get(self.path.split("?", 1)[0], (404, {}, b""))
        self.reply(status, headers=headers, body=body)


@pytest.fixture()
def server() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.lock = threading.Lock()  # type: ignore[attr-defined]
    srv.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _links_csv(path: Path, rows: list[tuple[str, str]], url_col: str = "permalink_url") -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["track_id", "title", url_col])
        for tid, url in rows:
            w.writerow([tid, "", url])
    return path


def test_check_links_against_loopback_server(tmp_path: Path, server: ThreadingHTTPServer,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    base = f"http://127.0.0.1:{server.server_address[1]}"
    inp = _links_csv(tmp_path / "links.csv", [("a", base + "/ok"), ("b", base + "/gone"),
                                              ("c", base + "/moved"), ("d", "")])
    out = tmp_path / "status.csv"
    code = _run(["check-links", str(inp), "--out", str(out), "--allow-host", "127.0.0.1",
                 "--concurrency", "2", "--per-host", "2", "--timeout", "5", "--json", "--quiet"])
    assert code == 0
    captured = capsys.readouterr()
    report = _last_json(captured.out)
    assert report["rows"] == 4
    assert report["status_counts"] == {"VALID": 1, "DEAD": 1, "MOVED": 1, "UNKNOWN": 1}

    frame = pl.read_csv(out, infer_schema_length=0)
    assert tuple(frame.columns) == CHECK_LINKS_COLUMNS
    rows = {r["track_id"]: r for r in frame.iter_rows(named=True)}
    assert (rows["a"]["status"], rows["a"]["http_code"], rows["a"]["reason"]) == ("VALID", "200", "ok")
    assert (rows["b"]["status"], rows["b"]["http_code"], rows["b"]["reason"]) == ("DEAD", "404", "http_404")
    assert (rows["c"]["status"], rows["c"]["final_url"]) == ("MOVED", base + "/ok")
    assert (rows["d"]["status"], rows["d"]["reason"]) == ("UNKNOWN", "no_url")
    assert {p for _, p in server.hits} == {"/ok", "/gone", "/moved"}


def test_check_links_without_allow_host_blocks_loopback(tmp_path: Path, server: ThreadingHTTPServer,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    base = f"http://127.0.0.1:{server.server_address[1]}"
    inp = _links_csv(tmp_path / "links.csv", [("a", base + "/ok")], url_col="url")  # `url` column accepted
    out = tmp_path / "status.csv"
    assert _run(["check-links", str(inp), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "BLOCKED" in text and "total" in text
    assert pl.read_csv(out)["reason"].to_list() == ["loopback"]
    assert server.hits == []  # type: ignore[attr-defined]


def test_check_links_offline_sends_nothing(tmp_path: Path, server: ThreadingHTTPServer,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    base = f"http://127.0.0.1:{server.server_address[1]}"
    inp = _links_csv(tmp_path / "links.csv", [("a", base + "/ok"), ("b", base + "/gone")])
    out = tmp_path / "status.csv"
    assert _run(["check-links", str(inp), "--out", str(out), "--allow-host", "127.0.0.1",
                 "--offline", "--json", "--quiet"]) == 0
    report = _last_json(capsys.readouterr().out)
    assert report["status_counts"] == {"UNKNOWN": 2} and report["reason_counts"] == {"offline": 2}
    assert pl.read_csv(out)["reason"].to_list() == ["offline", "offline"]
    assert server.hits == []  # type: ignore[attr-defined]


def test_check_links_missing_columns_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inp = tmp_path / "bad.csv"
    inp.write_text("id,link\n1,http://127.0.0.1/\n", encoding="utf-8")
    out = tmp_path / "status.csv"
    assert _run(["check-links", str(inp), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "missing column(s)" in err and "track_id" in err and "permalink_url" in err
    assert not out.exists()
    # only the URL column missing: the message names just that one
    inp.write_text("track_id,link\n1,http://127.0.0.1/\n", encoding="utf-8")
    assert _run(["check-links", str(inp), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "permalink_url (or url)" in err and "track_id," not in err.split("found:")[0]
