"""The heal assets against real HTTP: a loopback server plays a music site (allowed explicitly)."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest

from pipelines import democorpus
from pipelines import schema as S
from pipelines.store import DATA_DIR

pytestmark = pytest.mark.integration


class _Site(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        if self.path.startswith("/moved/"):
            self.send_response(301)
            self.send_header("Location", "/tracks/" + self.path.rsplit("/", 1)[-1])
            self.end_headers()
        elif self.path.startswith("/tracks/"):
            self.send_response(200)
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()

    do_HEAD = _answer
    do_GET = _answer

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@pytest.fixture()
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_link_status_and_moved_urls_flow_into_music_tracks(site, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MOODSCAPE_HOME", str(tmp_path / "home"))
    rows = democorpus.musiccaps_rows(data_dir=DATA_DIR).head(3)
    urls = [f"{site}/tracks/a", f"{site}/moved/b", f"{site}/gone/c"]
    rows.with_columns(pl.Series(S.PERMALINK_URL, urls)).write_csv(tmp_path / "crawl.csv")
    from dagster import materialize

    from assets.definitions import all_assets, all_checks
    from assets.settings import MoodscapeSettings

    wanted = {"raw_tracks", "track_link_status", "audio_features", "music_tracks"}
    selected = [a for a in all_assets if {k.to_user_string() for k in a.keys} & wanted]
    checks = [c for c in all_checks if any(k.name == "link_check_error_rate" for k in c.check_keys)]
    settings = MoodscapeSettings(crawl=str(tmp_path / "crawl.csv"), link_allow_hosts="127.0.0.1")
    result = materialize([*selected, *checks], resources={"settings": settings})
    assert result.success
    from pipelines.store import table_path

    music = pl.read_parquet(table_path("music_tracks")).sort("permalink_url_original")
    by_url = {r["permalink_url_original"]: r for r in music.iter_rows(named=True)}
    assert by_url[urls[0]][S.URL_STATUS] == "VALID" and by_url[urls[0]][S.PERMALINK_URL] == urls[0]
    assert by_url[urls[1]][S.URL_STATUS] == "MOVED" and by_url[urls[1]][S.PERMALINK_URL] == f"{site}/tracks/b"
    assert by_url[urls[2]][S.URL_STATUS] == "DEAD"
    (check,) = result.get_asset_check_evaluations()
    assert check.passed  # every request got an HTTP answer: no network errors
