"""Resolving track links to real audio over real loopback HTTP: every resolver kind, pages without
audio, oEmbed failures, size caps, and redirects or links into addresses the policy refuses.

Only loopback addresses are contacted; refusals of other ranges are proven by classification and by a
recording socket backend that never sees a connection to them.
"""

from pathlib import Path

import pytest

from pipelines.audio.fetch import FetchConfig
from pipelines.audio.media import existing_download
from pipelines.audio.resolve import resolve_many
from pipelines.net.policy import NetworkPolicy
from tests.audio.track_pages import KINDS, audio_file, clip_of, html, loopback_hosts, page, page_routes, redirect
from tests.audio.track_pages import small_clips as _clips
from tests.net.loopback import RecordingBackend

FAST = FetchConfig(connect_timeout_s=2.0, read_timeout_s=2.0, timeout_s=10.0, min_interval_s=0.0)
PAGES_HOST = "127.0.0.2"
ONLY_PAGES = NetworkPolicy(allow_hosts=frozenset({PAGES_HOST}))


def test_every_resolver_kind_finds_its_real_clip(tmp_path: Path) -> None:
    clips = _clips(6)
    with loopback_hosts(PAGES_HOST, routes=page_routes(clips)) as (site,):
        urls = [f"{site.base}{path}" for path in KINDS]
        got = resolve_many(urls=urls, dest_dir=tmp_path, policy=ONLY_PAGES, config=FAST)
        for url, (path, kind) in zip(urls, KINDS.items()):
            res = got[url]
            assert (res.reason, res.resolver) == ("ok", kind), (path, res)
            assert res.result.path.read_bytes() == clip_of(clips)[path].read_bytes()
            assert res.result.path.suffix == ".ogg" and res.audio_url.startswith(f"{site.base}/a/")
        assert got[f"{site.base}/t/oembed"].audio_url == f"{site.base}/a/oembed.ogg"
        assert "/oembed?url=/t/oembed&format=json" in site.paths()  # the entity-decoded oEmbed link
        # a second run reuses every download: pages are read again, no audio is requested again
        before = site.paths()
        again = resolve_many(urls=urls, dest_dir=tmp_path, policy=ONLY_PAGES, config=FAST)
        assert all(r.reason == "reused" and r.ok for r in again.values())
        assert not [p for p in site.paths()[len(before):] if p.startswith("/a/")]


def test_pages_without_audio_broken_oembed_and_fallbacks(tmp_path: Path) -> None:
    clip = _clips(1)[0]
    routes = {
        **page_routes(_clips(6)),
        "/clip": audio_file(clip),
        "/clip2": audio_file(clip),
        "/t/first-dead": page(html(head='<meta property="og:audio" content="/gone.ogg">',
                                   body='<audio src="/missing.ogg"></audio><audio src="/clip2"></audio>')),
        "/t/dead-audio": page(html(head='<meta property="og:audio" content="/gone.ogg">')),
        "/t/html-audio": page(html(body='<audio src="/t/no-audio"></audio>')),
        "/t/bad-oembed": page(html(head='<link rel="alternate" type="application/json+oembed" href="/o/bad">')),
        "/o/bad": page(b"<html>oops</html>", "text/html"),
        "/t/empty-oembed": page(html(head='<link rel="alternate" type="application/json+oembed" href="/o/empty">')),
        "/o/empty": page(b'{"type": "video", "html": "<iframe src=\\"/player\\"></iframe>"}', "application/json"),
        "/t/oembed-404": page(html(head='<link rel="alternate" type="application/json+oembed" href="/o/none">')),
        "/t/pdf": page(b"%PDF-1.4", "application/pdf"),
        "/t/moved": redirect("/t/audio-tag", 301),
    }
    with loopback_hosts(PAGES_HOST, routes=routes) as (site,):
        names = ["/clip", "/t/first-dead", "/t/dead-audio", "/t/html-audio", "/t/no-audio", "/t/bad-oembed",
                 "/t/empty-oembed", "/t/oembed-404", "/t/pdf", "/t/moved", "/nowhere"]
        got = resolve_many(urls=[site.base + n for n in names], dest_dir=tmp_path, policy=ONLY_PAGES, config=FAST)
        outcome = {n: (got[site.base + n].reason, got[site.base + n].resolver) for n in names}
    assert outcome == {
        "/clip": ("ok", "direct"),
        "/t/first-dead": ("ok", "audio_tag"),  # /missing.ogg failed, the next audio link served
        "/t/dead-audio": ("http_404", "og_audio"),
        "/t/html-audio": ("not_audio:text/html", "audio_tag"),
        "/t/no-audio": ("page_without_audio", None),
        "/t/bad-oembed": ("oembed_invalid", "oembed"),
        "/t/empty-oembed": ("oembed_without_audio", "oembed"),
        "/t/oembed-404": ("http_404", "oembed"),
        "/t/pdf": ("not_audio:application/pdf", None),
        "/t/moved": ("ok", "audio_tag"),  # relative links resolve against the page's final URL
        "/nowhere": ("http_404", None),
    }
    assert got[site.base + "/t/first-dead"].audio_url == f"{site.base}/clip2"
    assert got[site.base + "/t/dead-audio"].audio_url == f"{site.base}/gone.ogg"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def _unbounded_page(size: int):
    """A 200 HTML page of ``size`` bytes sent without Content-Length (the body ends when the connection closes)."""
    def route(h) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Connection", "close")
        h.end_headers()
        try:
            h.wfile.write(b"<html>" + b" " * size)
        except (BrokenPipeError, ConnectionResetError):
            pass
        h.close_connection = True
    return route


def test_pages_and_oembed_answers_over_the_size_cap_are_refused(tmp_path: Path) -> None:
    cap = 64 * 1024
    routes = {
        **page_routes(_clips(6)),
        "/t/huge": page(html(body="x" * (2 * cap))),  # declared length over the cap: refused unread
        "/t/endless": _unbounded_page(4 * cap),  # no declared length: cut while streaming
        "/t/big-oembed": page(html(head='<link rel="alternate" type="application/json+oembed" href="/o/big">')),
        "/o/big": page(b'{"html": "' + b" " * (2 * cap) + b'"}', "application/json"),
    }
    config = FetchConfig(connect_timeout_s=2.0, read_timeout_s=2.0, timeout_s=10.0, min_interval_s=0.0,
                         page_max_bytes=cap, max_bytes=cap)
    with loopback_hosts(PAGES_HOST, routes=routes) as (site,):
        names = ["/t/huge", "/t/endless", "/t/big-oembed", "/t/audio-tag"]
        got = resolve_many(urls=[site.base + n for n in names], dest_dir=tmp_path, policy=ONLY_PAGES, config=config)
    reasons = [got[site.base + n].reason for n in names]
    assert reasons == ["page_too_large", "page_too_large", "oembed_too_large", reasons[3]]
    # the audio itself is not refused over the cap: its first `cap` bytes are kept
    audio = got[site.base + "/t/audio-tag"].result
    assert audio.ok and audio.bytes <= cap and reasons[3] in {"ok", "truncated"}


def test_links_and_redirect_hops_into_refused_addresses_are_blocked(tmp_path: Path) -> None:
    clip = _clips(1)[0]
    with loopback_hosts(PAGES_HOST, "127.0.0.3", routes={"/secret.ogg": audio_file(clip)}) as (site, other):
        site.routes.update({
            "/t/to-private": page(html(head='<meta property="og:audio" content="/r/private">')),
            "/r/private": redirect("http://10.0.0.1/a.ogg"),
            "/t/to-metadata": redirect("http://169.254.169.254/latest/meta-data/"),
            "/t/to-other": page(html(body=f'<audio src="{other.base}/secret.ogg"></audio>')),
            "/t/via-other": page(html(body='<audio src="/r/other"></audio>')),
            "/r/other": redirect(f"{other.base}/secret.ogg", 307),
            "/t/oembed-private": page(html(head='<link rel="alternate" type="application/json+oembed" '
                                                'href="http://192.168.1.9/oembed">')),
            "/t/decimal": page(html(body='<audio src="http://2130706433/secret.ogg"></audio>')),
        })
        backend = RecordingBackend()
        names = ["/t/to-private", "/t/to-metadata", "/t/to-other", "/t/via-other", "/t/oembed-private", "/t/decimal"]
        got = resolve_many(urls=[site.base + n for n in names], dest_dir=tmp_path, policy=ONLY_PAGES, config=FAST,
                           network_backend=backend)
        reasons = {n: got[site.base + n].reason for n in names}
        assert reasons == {
            "/t/to-private": "blocked:private",
            "/t/to-metadata": "blocked:metadata",
            "/t/to-other": "blocked:loopback",  # loopback, but not an allowed address
            "/t/via-other": "blocked:loopback",
            "/t/oembed-private": "blocked:private",
            "/t/decimal": "blocked:loopback",  # 2130706433 is 127.0.0.1
        }
        assert other.hits == [] and {h for h, _ in backend.connects} == {PAGES_HOST}
        assert got[site.base + "/t/via-other"].result.final_url == f"{other.base}/secret.ogg"
        # control: allowing the second address lets the same links through (its server sees them)
        both = NetworkPolicy(allow_hosts=frozenset({PAGES_HOST, "127.0.0.3"}))
        ok = resolve_many(urls=[site.base + "/t/to-other"], dest_dir=tmp_path / "ok", policy=both, config=FAST)
        assert ok[site.base + "/t/to-other"].reason == "ok" and other.paths() == ["/secret.ogg"]
    assert not list(tmp_path.glob("*.ogg"))


def test_without_allowing_loopback_and_offline_nothing_is_sent(tmp_path: Path) -> None:
    with loopback_hosts(PAGES_HOST, routes=page_routes(_clips(6))) as (site,):
        url = f"{site.base}/t/audio-tag"
        backend = RecordingBackend()
        refused = resolve_many(urls=[url], dest_dir=tmp_path, policy=NetworkPolicy(), config=FAST,
                               network_backend=backend)
        offline = resolve_many(urls=[url], dest_dir=tmp_path, policy=ONLY_PAGES,
                               config=FetchConfig(offline=True), network_backend=backend)
        assert refused[url].reason == "blocked:loopback" and offline[url].reason == "offline"
        assert site.hits == [] and backend.connects == [] and list(tmp_path.iterdir()) == []
        assert existing_download(url=url, dest_dir=tmp_path) is None


@pytest.mark.parametrize("limit", [1, 3])
def test_at_most_max_candidates_audio_links_are_tried(tmp_path: Path, limit: int) -> None:
    from pipelines.audio.fetch import AudioFetcher
    from pipelines.audio.resolve import resolve_audio
    from pipelines.net.client import run_sync

    body = "".join(f'<audio src="/missing/{i}.ogg"></audio>' for i in range(6))
    with loopback_hosts(PAGES_HOST, routes={"/t/many": page(html(body=body))}) as (site,):

        async def go():
            async with AudioFetcher(policy=ONLY_PAGES, config=FAST) as fetcher:
                return await resolve_audio(fetcher, url=f"{site.base}/t/many", dest_dir=tmp_path,
                                           max_candidates=limit)

        res = run_sync(go)
        assert res.reason == "http_404" and res.audio_url == f"{site.base}/missing/0.ogg"
        assert [p for p in site.paths() if p.startswith("/missing/")] == [f"/missing/{i}.ogg" for i in range(limit)]
