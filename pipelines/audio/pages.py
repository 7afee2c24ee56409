"""Where a track page says its audio is, read with the standard library only (``html.parser``, ``json``).

A page names its audio in an HTML5 ``<audio src>`` or ``<audio><source src type>``, Open Graph
``og:audio`` (``:secure_url``, ``:url``), ``twitter:player:stream``, or JSON-LD (AudioObject /
MusicRecording ``contentUrl``, a nested ``audio``, ``@graph`` lists); or it links an oEmbed answer
(``<link rel="alternate" type="application/json+oembed">``) whose ``html`` or ``url`` holds it.
Relative links resolve against the page's ``<base href>``, else its final URL. Broken markup or JSON
yields what could be read, never an exception.
"""

import codecs
import json
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

from pipelines.audio.media import DOCUMENT_TYPES, PLAYLIST_TYPES, media_type

DIRECT = "direct"  # the link itself answered with audio
AUDIO_TAG, SOURCE_TAG = "audio_tag", "source_tag"
OG_AUDIO, TWITTER_STREAM, JSON_LD, OEMBED = "og_audio", "twitter_stream", "json_ld", "oembed"
RESOLVER_KINDS: tuple[str, ...] = (DIRECT, AUDIO_TAG, SOURCE_TAG, OG_AUDIO, TWITTER_STREAM, JSON_LD, OEMBED)
_PAGE_ORDER = (AUDIO_TAG, SOURCE_TAG, OG_AUDIO, TWITTER_STREAM, JSON_LD)  # the order candidates are tried in
_OG_KEYS = {"og:audio:secure_url": 0, "og:audio:url": 1, "og:audio": 1}  # secure first
_OEMBED_TYPES = frozenset({"application/json+oembed", "text/json+oembed"})
_JSONLD_AUDIO_TYPES = frozenset({"audioobject", "musicrecording"})
_JSONLD_MAX_DEPTH = 12
MAX_CANDIDATES_PER_KIND = 8


@dataclass(frozen=True)
class Candidate:
    """One audio link a page names, and how it named it (one of `RESOLVER_KINDS`)."""

    url: str
    kind: str


@dataclass(frozen=True)
class PageAudio:
    """A page's audio links in the order to try them, and its oEmbed link (absolute URLs)."""

    candidates: tuple[Candidate, ...]
    oembed_url: str | None


def _absolute(ref: str | None, base: str) -> str | None:
    """``ref`` resolved against ``base``; None unless it is an http(s) URL."""
    text = (ref or "").strip()
    if not text or text.startswith("#"):
        return None
    try:
        url = urljoin(base, text)
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return url if scheme in ("http", "https") else None


def _maybe_audio(declared_type: str | None) -> bool:
    """A link whose declared type is absent, audio or a container; not a playlist, page or image."""
    media = media_type(declared_type)
    if not media:
        return True
    if media in PLAYLIST_TYPES or media in DOCUMENT_TYPES:
        return False
    return not media.startswith(("image/", "text/", "font/"))


class _Collector(HTMLParser):
    """Collects audio links, ``<base href>``, the oEmbed link and JSON-LD script texts of one document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.oembed: str | None = None
        self.found: dict[str, list[tuple[int, str]]] = {kind: [] for kind in _PAGE_ORDER}
        self.scripts: list[str] = []
        self._audio_depth = 0
        self._script: list[str] | None = None

    def add(self, kind: str, url: str | None, declared_type: str | None = None, rank: int = 0) -> None:
        if url and _maybe_audio(declared_type) and len(self.found[kind]) < MAX_CANDIDATES_PER_KIND:
            self.found[kind].append((rank, url))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "").strip() for k, v in attrs if k}
        if tag == "base" and self.base is None and a.get("href"):
            self.base = a["href"]
        elif tag == "audio":
            self._audio_depth += 1
            self.add(AUDIO_TAG, a.get("src"), a.get("type"))
        elif tag == "source" and self._audio_depth:
            self.add(SOURCE_TAG, a.get("src"), a.get("type"))
        elif tag == "meta":
            key = (a.get("property") or a.get("name") or "").lower()
            if key in _OG_KEYS:
                self.add(OG_AUDIO, a.get("content"), rank=_OG_KEYS[key])
            elif key == "twitter:player:stream":
                self.add(TWITTER_STREAM, a.get("content"))
        elif tag == "link":
            rel = a.get("rel", "").lower().split()
            if "alternate" in rel and media_type(a.get("type")) in _OEMBED_TYPES and self.oembed is None:
                self.oembed = a.get("href") or None
        elif tag == "script" and media_type(a.get("type")) == "application/ld+json":
            self._script = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "audio" and self._audio_depth:
            self._audio_depth -= 1
        elif tag == "script":
            self.end_script()

    def end_script(self) -> None:
        if self._script is not None:
            self.scripts.append("".join(self._script))
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script.append(data)


def _collect(text: str) -> _Collector:
    collector = _Collector()
    try:
        collector.feed(text)
        collector.close()
    except Exception:  # a parser failure keeps what was read so far
        pass
    collector.end_script()  # an unterminated JSON-LD script: keep its text
    return collector


def decode(body: bytes, content_type: str | None) -> str:
    """A body as text: the charset its Content-Type names (when known), else UTF-8, never failing."""
    charset = ""
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip("\"'")
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = ""
    return body.decode(charset or "utf-8", errors="replace")


def _type_names(node: dict) -> set[str]:
    raw = node.get("@type")
    names = raw if isinstance(raw, list) else [raw]
    return {str(n).rsplit("/", 1)[-1].rsplit(":", 1)[-1].lower() for n in names if isinstance(n, str)}


def _walk_jsonld(node: Any, out: list[str], depth: int = 0, *, audio: bool = False) -> None:
    """contentUrl of every AudioObject / MusicRecording, and every ``audio`` given as a URL, in document order."""
    if depth > _JSONLD_MAX_DEPTH or len(out) >= MAX_CANDIDATES_PER_KIND:
        return
    if isinstance(node, str):
        if audio:
            out.append(node)
    elif isinstance(node, list):
        for item in node:
            _walk_jsonld(item, out, depth + 1, audio=audio)
    elif isinstance(node, dict):
        if _type_names(node) & _JSONLD_AUDIO_TYPES:
            _walk_jsonld(node.get("contentUrl") or node.get("contentURL"), out, depth + 1, audio=True)
        for key, value in node.items():
            if key == "audio":
                _walk_jsonld(value, out, depth + 1, audio=True)
            elif isinstance(value, (dict, list)) and key != "@context":
                _walk_jsonld(value, out, depth + 1)


def jsonld_audio(scripts: list[str]) -> list[str]:
    """Audio URLs (as written) in JSON-LD script texts; a script that is not JSON is skipped."""
    out: list[str] = []
    for text in scripts:
        cleaned = text.strip().removeprefix("<!--").removesuffix("-->").strip()
        try:
            data = json.loads(cleaned)
        except ValueError:
            continue
        _walk_jsonld(data, out)
    return out


def page_audio(*, body: bytes, content_type: str | None, base_url: str) -> PageAudio:
    """The audio links of one page (in `RESOLVER_KINDS` order, duplicates dropped) and its oEmbed link."""
    found = _collect(decode(body, content_type))
    base = _absolute(found.base, base_url) or base_url
    for url in jsonld_audio(found.scripts):
        found.add(JSON_LD, url)
    candidates: list[Candidate] = []
    seen: set[str] = set()
    for kind in _PAGE_ORDER:
        for _rank, ref in sorted(found.found[kind], key=lambda item: item[0]):  # stable: document order
            url = _absolute(ref, base)
            if url is not None and url not in seen:
                seen.add(url)
                candidates.append(Candidate(url=url, kind=kind))
    return PageAudio(candidates=tuple(candidates), oembed_url=_absolute(found.oembed, base))


def oembed_audio(*, body: bytes, base_url: str) -> tuple[Candidate, ...] | None:
    """The audio links of an oEmbed answer: ``<audio>``/``<source>`` in its ``html``, then its ``url``
    (unless a photo); None when the body is not a JSON object."""
    try:
        data = json.loads(decode(body, None))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    refs: list[str] = []
    html = data.get("html")
    if isinstance(html, str):
        inner = _collect(html)
        refs += [url for kind in (AUDIO_TAG, SOURCE_TAG) for _rank, url in inner.found[kind]]
    if isinstance(data.get("url"), str) and str(data.get("type", "")).lower() != "photo":
        refs.append(data["url"])
    urls = [u for u in (_absolute(r, base_url) for r in refs) if u is not None]
    return tuple(Candidate(url=u, kind=OEMBED) for u in dict.fromkeys(urls))
