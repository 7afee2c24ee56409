"""Audio downloads through the link checker's network policy, against real loopback HTTP servers.

The served audio is a real clip bundled with librosa's examples. Only loopback addresses are ever
contacted: refusals of other ranges (10/8, 169.254.169.254, …) are proven by classification
(`NetworkPolicy.check_url`) and by a recording socket backend that sees no connection to them.
"""

import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from pipelines.audio.extract import extract_many, warmup
from pipelines.audio.features import FEATURE_COLUMNS, extract_features
from pipelines.audio.fetch import FetchConfig, fetch_audio
from pipelines.audio.media import download_stem, existing_download, existing_downloads, sniff_audio, url_audio_ext
from pipelines.audio.resolve import resolve_many
from pipelines.net.policy import NetworkPolicy
from tests.audio.clips import MUSIC, SHORT
from tests.helpers import LoopbackHandler
from tests.net.loopback import RecordingBackend

pytestmark = pytest.mark.skipif(not (SHORT.is_file() and MUSIC.is_file()), reason="bundled librosa clips missing")
LOOPBACK = NetworkPolicy(allow_hosts=frozenset({"127.0.0.1"}))
FAST = FetchConfig(connect_timeout_s=2.0, read_timeout_s=2.0, timeout_s=10.0, min_interval_s=0.0)

Route = Callable[["_Handler"], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, *, host: str, routes: dict[str, Route]) -> None:
        super().__init__((host, 0), _Handler)
        self.routes = routes
        self.lock = threading.Lock()
        self.hits: list[str] = []

    @property
    def base(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"


class _Handler(LoopbackHandler):
    server: _Server

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.hits.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            self.reply(404, body=b"<html>not found</html>", ctype="text/html")
        else:
            route(self)



def _file(path: Path, ctype: str | None) -> Route:
    data = path.read_bytes()
    return lambda h: h.reply(200, body=data, ctype=ctype)


def _redirect(location: str) -> Route:
    return lambda h: h.reply(302, headers={"Location": location})


def _serve(*, host: str, routes: dict[str, Route]) -> _Server:
    srv = _Server(host=host, routes=routes)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv


@pytest.fixture()
def site() -> Iterator[_Server]:
    srv = _serve(host="127.0.0.1", routes={
        "/clip.ogg": _file(SHORT, "audio/ogg"),
        "/music.ogg": _file(MUSIC, "audio/ogg; codecs=vorbis"),
        "/download": _file(SHORT, "application/octet-stream"),
        "/page": lambda h: h.reply(200, body=b"<!doctype html><html>a track page</html>",
                                   ctype="text/html; charset=utf-8"),
        "/lying.mp3": lambda h: h.reply(200, body=b"<!DOCTYPE html><html><body>login</body></html>",
                                        ctype="audio/mpeg"),
        "/zeros.bin": lambda h: h.reply(200, body=bytes(4096), ctype="application/octet-stream"),
        "/playlist.m3u8": lambda h: h.reply(200, body=b"#EXTM3U\n#EXTINF:30,\nclip.ogg\n", ctype="audio/x-mpegurl"),
        "/moved": _redirect("/clip.ogg"),
        "/to-private": _redirect("http://10.0.0.1/clip.ogg"),
        "/to-metadata": _redirect("http://169.254.169.254/latest/meta-data/"),
    })
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    warmup()


def test_fetch_real_clip_and_extract_features(site: _Server, tmp_path: Path) -> None:
    res = fetch_audio(url=f"{site.base}/clip.ogg", dest_dir=tmp_path, policy=LOOPBACK)
    assert res.reason == "ok" and res.ok and res.http_code == 200 and res.content_type == "audio/ogg"
    assert res.bytes == SHORT.stat().st_size and res.path.read_bytes() == SHORT.read_bytes()
    assert res.path.suffix == ".ogg" and existing_download(url=f"{site.base}/clip.ogg", dest_dir=tmp_path) == res.path
    assert [p.name for p in tmp_path.iterdir()] == [res.path.name]  # no temp file left behind
    fetched = extract_features(path=res.path, duration=10.0)
    direct = extract_features(path=SHORT, duration=10.0)
    assert set(fetched) == set(FEATURE_COLUMNS)
    assert all(fetched[c] == pytest.approx(direct[c]) for c in FEATURE_COLUMNS)


def test_redirect_octet_stream_and_refusals_never_raise(site: _Server, tmp_path: Path) -> None:
    b = site.base
    urls = [f"{b}/moved", f"{b}/download", f"{b}/page", f"{b}/lying.mp3", f"{b}/zeros.bin", f"{b}/nope",
            f"{b}/clip.ogg", f"{b}/playlist.m3u8", "ftp://example.org/a.mp3", "not a url", None]
    out = [fetch_audio(url=u, dest_dir=tmp_path, policy=LOOPBACK) for u in urls]
    reasons = [r.reason for r in out]
    assert reasons == ["ok", "ok", "not_audio:text/html", "not_audio:sniffed", "not_audio:sniffed", "http_404",
                       "ok", "not_audio:audio/x-mpegurl", "blocked:scheme_not_allowed",
                       "blocked:scheme_not_allowed", "no_url"]
    assert out[0].final_url == f"{b}/clip.ogg" and out[0].path.read_bytes() == SHORT.read_bytes()
    assert out[1].path.suffix == ".ogg"  # octet-stream accepted because the bytes are an Ogg stream
    assert out[5].http_code == 404 and out[5].path is None
    assert all(r.path is None and r.bytes == 0 for r in out[2:6])
    assert site.hits.count("/clip.ogg") == 2  # once via /moved, once directly
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # refused bodies left no temp files


def test_a_link_listed_twice_is_resolved_once(site: _Server, tmp_path: Path) -> None:
    url = f"{site.base}/clip.ogg"
    got = resolve_many(urls=[url, f" {url} ", url], dest_dir=tmp_path, policy=LOOPBACK, config=FAST)
    assert list(got) == [url] and got[url].reason == "ok" and got[url].resolver == "direct"
    assert site.hits == ["/clip.ogg"]


def test_oversized_body_is_cut_at_max_bytes_and_still_decodes(site: _Server, tmp_path: Path) -> None:
    cap = 200_000  # ~10 s of this 734 kB Vorbis clip
    res = fetch_audio(url=f"{site.base}/music.ogg", dest_dir=tmp_path, policy=LOOPBACK, max_bytes=cap)
    assert res.reason == "truncated" and res.bytes == cap and res.path.stat().st_size == cap
    assert res.path.read_bytes() == MUSIC.read_bytes()[:cap]
    df = extract_many(items=[("cut", str(res.path))], workers=1, duration=5.0)
    assert df["audio_error"][0] is None and df["tempo"][0] is not None
    whole = fetch_audio(url=f"{site.base}/music.ogg", dest_dir=tmp_path / "whole", policy=LOOPBACK)
    assert whole.reason == "ok" and whole.bytes == MUSIC.stat().st_size


def test_without_allowing_loopback_nothing_is_requested(site: _Server, tmp_path: Path) -> None:
    backend = RecordingBackend()
    res = fetch_audio(url=f"{site.base}/clip.ogg", dest_dir=tmp_path, policy=NetworkPolicy(), network_backend=backend)
    assert (res.reason, res.path) == ("blocked:loopback", None)
    # a host name that resolves to loopback is refused at resolution, before any socket
    port = site.server_address[1]
    res2 = fetch_audio(url=f"http://localhost:{port}/clip.ogg", dest_dir=tmp_path, policy=NetworkPolicy(),
                       network_backend=backend)
    assert res2.reason == "blocked:loopback"
    assert site.hits == [] and backend.connects == [] and list(tmp_path.iterdir()) == []


def test_offline_sends_nothing(site: _Server, tmp_path: Path) -> None:
    res = fetch_audio(url=f"{site.base}/clip.ogg", dest_dir=tmp_path, policy=LOOPBACK, offline=True)
    assert res.reason == "offline" and site.hits == []


def test_redirects_to_other_ranges_are_refused_by_classification(site: _Server, tmp_path: Path) -> None:
    backend = RecordingBackend()
    out = [fetch_audio(url=f"{site.base}/{p}", dest_dir=tmp_path, policy=LOOPBACK, network_backend=backend)
           for p in ("to-private", "to-metadata")]
    assert [r.reason for r in out] == ["blocked:private", "blocked:metadata"]
    assert out[0].final_url == "http://10.0.0.1/clip.ogg" and out[0].http_code == 302
    assert {h for h, _ in backend.connects} == {"127.0.0.1"}  # never a socket to 10.0.0.1 / 169.254.169.254
    # the same classification for other spellings and ranges, without any connection
    for url, reason in [("http://192.168.1.20/a.mp3", "private"), ("http://[::1]/a.mp3", "loopback"),
                        ("http://2130706433/a.mp3", "loopback"), ("http://100.64.0.1/a.mp3", "cgnat"),
                        ("http://[fd00:ec2::254]/", "metadata"), ("http://0x7f.1/a.mp3", "loopback")]:
        assert NetworkPolicy().check_url(url) == (False, reason)
        assert fetch_audio(url=url, dest_dir=tmp_path, policy=NetworkPolicy()).reason == f"blocked:{reason}"


def test_redirect_from_allowed_loopback_to_another_loopback_address_is_blocked(site: _Server, tmp_path: Path) -> None:
    try:
        second = _serve(host="127.0.0.2", routes={"/secret.ogg": _file(SHORT, "audio/ogg")})
    except OSError as exc:
        pytest.skip(f"cannot bind 127.0.0.2: {exc}")
    try:
        site.routes["/to-second"] = _redirect(f"{second.base}/secret.ogg")
        backend = RecordingBackend()
        res = fetch_audio(url=f"{site.base}/to-second", dest_dir=tmp_path, policy=LOOPBACK, network_backend=backend)
        assert res.reason == "blocked:loopback" and res.path is None
        assert second.hits == [] and {h for h, _ in backend.connects} == {"127.0.0.1"}
        # control: allowing the second address lets the same redirect through (the server can see hits)
        both = NetworkPolicy(allow_hosts=frozenset({"127.0.0.1", "127.0.0.2"}))
        ok = fetch_audio(url=f"{site.base}/to-second", dest_dir=tmp_path, policy=both)
        assert ok.reason == "ok" and second.hits == ["/secret.ogg"]
    finally:
        second.shutdown()
        second.server_close()


def test_audio_url_and_container_sniffing() -> None:
    assert url_audio_ext("https://x.org/a/B.MP3?sig=1") == ".mp3" and url_audio_ext("https://x.org/track/12") is None
    assert sniff_audio(SHORT.read_bytes()[:64]) == ".ogg" and sniff_audio(b"<html>") is None


def test_all_finished_downloads_are_listed_once_as_the_per_url_lookup_finds_them(tmp_path) -> None:
    urls = [f"http://127.0.0.1:9/clip{i}" for i in range(4)]
    stems = [download_stem(u) for u in urls]
    (tmp_path / f"{stems[0]}.ogg").write_bytes(b"OggS-data")
    (tmp_path / f"{stems[1]}.mp3.part").write_bytes(b"half")  # unfinished
    (tmp_path / f"{stems[2]}.wav").write_bytes(b"")  # empty
    (tmp_path / f"{stems[3]}.flac").write_bytes(b"fLaC-data")
    listed = existing_downloads(dest_dir=tmp_path)
    assert listed == {s: p for s, u in zip(stems, urls) if (p := existing_download(url=u, dest_dir=tmp_path))}
    assert set(listed) == {stems[0], stems[3]}
    assert existing_downloads(dest_dir=tmp_path / "missing") == {}
