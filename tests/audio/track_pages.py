"""Track pages of every kind the resolver reads, served by loopback test servers with real audio clips.

``page_routes(clips)`` maps a path per resolver kind to an HTML page (or oEmbed answer) whose audio
link points at a real Ogg clip on the same server; relative and absolute links are both used.
"""

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.audio.clips import OGG
from tests.net.loopback import LoopbackServer, Route, RouteHandler, serving

# One page per resolver kind (path → expected resolver), each naming a different clip.
KINDS = {
    "/t/audio-tag": "audio_tag",
    "/t/source-tag": "source_tag",
    "/t/og-audio": "og_audio",
    "/t/twitter": "twitter_stream",
    "/t/json-ld": "json_ld",
    "/t/oembed": "oembed",
}


def small_clips(n: int) -> list[Path]:
    """``n`` distinct real Ogg clips, smallest first (skips the test when the clips are missing)."""
    clips = sorted(OGG, key=lambda p: p.stat().st_size)[:n]
    if len(clips) < n:
        pytest.skip("bundled librosa clips missing")
    return clips


# Bundled librosa clips that are not music: LibriSpeech readings, birdsong, whale song, a dog's howl.
_NOT_MUSIC = re.compile(r"^\d+-\d+-\d+$|bird|humpback|pibble")


def music_clips(n: int) -> list[Path]:
    """``n`` distinct real music clips (Ogg), smallest first (skips the test when the clips are missing)."""
    clips = sorted((p for p in OGG if not _NOT_MUSIC.search(p.stem)), key=lambda p: p.stat().st_size)[:n]
    if len(clips) < n:
        pytest.skip("bundled librosa music clips missing")
    return clips


def html(head: str = "", body: str = "") -> bytes:
    return f"<!doctype html><html><head><title>a track</title>{head}</head><body>{body}</body></html>".encode()


def page(content: bytes, ctype: str = "text/html; charset=utf-8") -> Route:
    return lambda h: h.reply(200, body=content, ctype=ctype)


def audio_file(path: Path, ctype: str = "audio/ogg") -> Route:
    data = path.read_bytes()
    return lambda h: h.reply(200, body=data, ctype=ctype)


def redirect(location: str, status: int = 302) -> Route:
    return lambda h: h.reply(status, headers={"Location": location})


def _oembed_answer(h: RouteHandler) -> None:
    html_field = '<audio controls><source src="/a/oembed.ogg" type="audio/ogg"></audio>'
    body = json.dumps({"version": "1.0", "type": "rich", "title": "a track", "html": html_field}).encode()
    h.reply(200, body=body, ctype="application/json")


def page_routes(clips: list[Path]) -> dict[str, Route]:
    """One page per `KINDS` entry (clip i for kind i) plus the audio files and the oEmbed answer."""
    audio_tag, source_tag, og, twitter, jsonld, oembed = clips[:6]
    graph = {
        "@context": "https://schema.org",
        "@graph": [
            {"@type": "WebPage", "url": "/t/json-ld"},
            {"@type": "MusicRecording", "name": "a track",
             "audio": {"@type": "AudioObject", "contentUrl": "/a/json-ld.ogg", "encodingFormat": "audio/ogg"}},
        ],
    }
    return {
        "/t/audio-tag": page(html(body='<audio controls src="/a/audio-tag.ogg">no audio support</audio>')),
        "/t/source-tag": page(html(body='<div><audio controls><source src="../a/source-tag.ogg" type="audio/ogg">'
                                        "</audio></div>")),
        "/t/og-audio": page(html(head='<meta property="og:type" content="music.song">'
                                      '<meta property="og:audio" content="/a/og.ogg">'
                                      '<meta property="og:audio:type" content="audio/ogg">')),
        "/t/twitter": page(html(head='<meta name="twitter:card" content="player">'
                                     '<meta name="twitter:player" content="/player">'
                                     '<meta name="twitter:player:stream" content="a/../../a/twitter.ogg">')),
        "/t/json-ld": page(html(head=f'<script type="application/ld+json">{json.dumps(graph)}</script>')),
        "/t/oembed": page(html(head='<link rel="alternate" type="application/json+oembed" '
                                    'href="/oembed?url=/t/oembed&amp;format=json" title="a track">')),
        "/oembed": _oembed_answer,
        "/a/audio-tag.ogg": audio_file(audio_tag),
        "/a/source-tag.ogg": audio_file(source_tag),
        "/a/og.ogg": audio_file(og, "application/octet-stream"),
        "/a/twitter.ogg": audio_file(twitter),
        "/a/json-ld.ogg": audio_file(jsonld, "audio/ogg; codecs=vorbis"),
        "/a/oembed.ogg": audio_file(oembed),
        "/t/no-audio": page(html(body="<p>This track is private.</p><video src='/v.mp4'></video>")),
    }


def clip_of(clips: list[Path]) -> dict[str, Path]:
    """Which clip each `KINDS` page resolves to."""
    return dict(zip(KINDS, clips))


@contextmanager
def loopback_hosts(*hosts: str, routes: dict[str, Route]) -> Iterator[list[LoopbackServer]]:
    """One server per loopback address, all serving ``routes`` (skips when an address cannot be bound)."""
    with ExitStack() as stack:
        servers = []
        for host in hosts:
            try:
                servers.append(stack.enter_context(serving(routes=dict(routes), host=host)))
            except OSError as exc:
                pytest.skip(f"cannot bind {host}: {exc}")
        yield servers
