"""Reading a track page for its audio links: each way a page can name them, broken markup and JSON."""

import json

from pipelines.audio.pages import (
    AUDIO_TAG,
    JSON_LD,
    OEMBED,
    OG_AUDIO,
    SOURCE_TAG,
    TWITTER_STREAM,
    decode,
    oembed_audio,
    page_audio,
)

BASE = "https://music.example/artist/track?ref=x"


def _found(markup: str, base: str = BASE) -> list[tuple[str, str]]:
    got = page_audio(body=markup.encode(), content_type="text/html", base_url=base)
    return [(c.kind, c.url) for c in got.candidates]


def test_each_kind_in_order_with_relative_links_resolved() -> None:
    markup = """<html><head>
      <meta property="og:audio" content="/og.mp3"><meta property="og:audio:secure_url" content="https://cdn.example/og-s.mp3">
      <meta name="twitter:player:stream" content="stream.ogg">
      <script type="application/ld+json">{"@type": "AudioObject", "contentUrl": "//cdn.example/ld.ogg"}</script>
    </head><body>
      <audio src="a.ogg"></audio>
      <audio controls><source src="s.webm" type="audio/webm"><source src="s.m3u8" type="application/x-mpegURL">
        <source src="s.mp3"></audio>
      <video><source src="movie.mp4" type="video/mp4"></video>
    </body></html>"""
    assert _found(markup) == [
        (AUDIO_TAG, "https://music.example/artist/a.ogg"),
        (SOURCE_TAG, "https://music.example/artist/s.webm"),  # the HLS playlist is no audio file
        (SOURCE_TAG, "https://music.example/artist/s.mp3"),
        (OG_AUDIO, "https://cdn.example/og-s.mp3"),  # secure_url before og:audio
        (OG_AUDIO, "https://music.example/og.mp3"),
        (TWITTER_STREAM, "https://music.example/artist/stream.ogg"),
        (JSON_LD, "https://cdn.example/ld.ogg"),  # protocol-relative → the page's scheme
    ]


def test_base_href_entities_duplicates_and_non_http_links() -> None:
    markup = """<base href="https://static.example/media/"><audio src="x.ogg?a=1&amp;b=2"></audio>
      <meta property="og:audio:url" content="x.ogg?a=1&amp;b=2">
      <audio src="data:audio/ogg;base64,AAAA"></audio><audio src="javascript:alert(1)"></audio>
      <audio src="  "></audio><meta property="og:audio" content="ftp://files.example/a.mp3">"""
    assert _found(markup) == [(AUDIO_TAG, "https://static.example/media/x.ogg?a=1&b=2")]


def test_json_ld_graph_nested_audio_lists_and_namespaced_types() -> None:
    doc = {
        "@context": "https://schema.org",
        "@graph": [
            {"@type": "WebSite", "url": "https://music.example/"},
            {"@type": ["MusicRecording", "Thing"], "url": "https://music.example/t/1",
             "audio": [{"@type": "schema:AudioObject", "contentUrl": "/1.mp3"}, "https://cdn.example/2.ogg"]},
            {"@type": "MusicPlaylist", "track": [{"@type": "http://schema.org/MusicRecording",
                                                  "contentUrl": ["/3.flac"]}]},
            {"@type": "ImageObject", "contentUrl": "/cover.jpg"},
        ],
    }
    markup = f'<script type="application/ld+json">{json.dumps(doc)}</script>'
    markup += '<script type="application/ld+json">{"@type": "AudioObject", "contentUrl": broken</script>'
    assert _found(markup) == [
        (JSON_LD, "https://music.example/1.mp3"),
        (JSON_LD, "https://cdn.example/2.ogg"),
        (JSON_LD, "https://music.example/3.flac"),
    ]


def test_oembed_link_and_answers() -> None:
    got = page_audio(body=b'<link rel="alternate" type="application/json+oembed" href="/oembed?u=1&amp;f=json">'
                          b'<link rel="alternate" type="text/xml+oembed" href="/oembed.xml">',
                     content_type="text/html", base_url=BASE)
    assert got.candidates == () and got.oembed_url == "https://music.example/oembed?u=1&f=json"
    rich = json.dumps({"type": "rich", "html": '<iframe src="/player"></iframe><audio src="/o.ogg"></audio>',
                       "url": "https://cdn.example/o2.mp3"}).encode()
    assert [(c.kind, c.url) for c in oembed_audio(body=rich, base_url="https://api.example/oembed")] == [
        (OEMBED, "https://api.example/o.ogg"), (OEMBED, "https://cdn.example/o2.mp3"),
    ]
    photo = json.dumps({"type": "photo", "url": "https://cdn.example/cover.jpg"}).encode()
    assert oembed_audio(body=photo, base_url=BASE) == ()
    assert oembed_audio(body=b"<html>not json</html>", base_url=BASE) is None
    assert oembed_audio(body=b"[1, 2]", base_url=BASE) is None


def test_broken_markup_and_charsets_never_raise() -> None:
    broken = ('<html><head><meta property="og:audio" content="/ok.ogg"><<<>>><!-- unclosed <audio src="/no.ogg"'
              "<script type='application/ld+json'>{\"@type\": \"AudioObject\", \"contentUrl\": \"/late.ogg\"}")
    found = _found(broken)
    assert found[0] == (OG_AUDIO, "https://music.example/ok.ogg")
    assert (AUDIO_TAG, "https://music.example/no.ogg") not in found  # inside a comment
    assert _found("") == [] and _found("\x00\xff<<</audio></source>") == []
    latin = '<audio src="/caf\xe9.ogg"></audio>'.encode("latin-1")
    assert page_audio(body=latin, content_type="text/html; charset=ISO-8859-1", base_url=BASE).candidates[0].url == (
        "https://music.example/caf\xe9.ogg"
    )
    assert decode(b"ok", "text/html; charset=no-such-charset") == "ok"
