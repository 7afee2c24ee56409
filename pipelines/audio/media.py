"""What a body or URL is: audio containers sniffed from their first bytes, media types, and the file
name a downloaded URL is kept under (``<sha256(url)[:24]><ext>``, found again by `existing_download`).
"""

import hashlib
import os
from pathlib import Path

import httpx

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp3", ".ogg", ".oga", ".opus", ".wav", ".wave", ".flac", ".m4a", ".aac", ".aif", ".aiff", ".webm", ".mka"}
)
# Non-audio/* media types that carry audio.
_AUDIO_TYPES = frozenset({"application/ogg", "application/x-ogg", "video/ogg", "video/webm", "audio/webm"})
# audio/* types that are playlists (text pointing at streams), not audio.
PLAYLIST_TYPES = frozenset(
    {"audio/mpegurl", "audio/x-mpegurl", "application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/x-scpls"}
)
GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", "application/binary", ""})
# Bodies a track page or an oEmbed answer may come as.
DOCUMENT_TYPES = frozenset(
    {
        "text/html", "application/xhtml+xml", "text/xml", "application/xml", "text/plain", "application/json",
        "text/json", "application/ld+json", "application/json+oembed", "text/javascript", "application/javascript",
    }
)
TYPE_EXT = {
    "audio/mpeg": ".mp3", "audio/mp3": ".mp3", "audio/ogg": ".ogg", "application/ogg": ".ogg",
    "audio/opus": ".opus", "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav",
    "audio/flac": ".flac", "audio/x-flac": ".flac", "audio/mp4": ".m4a", "audio/x-m4a": ".m4a",
    "audio/aac": ".aac", "audio/aiff": ".aiff", "audio/x-aiff": ".aiff", "audio/webm": ".webm",
}
_TEXT_STARTS = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{", b"[", b"#extm3u", b"<!--")


def media_type(value: str | None) -> str:
    """The bare media type of a Content-Type value (``audio/ogg; codecs=x`` → ``audio/ogg``), lower case."""
    return (value or "").split(";", 1)[0].strip().lower()


def is_audio_type(media: str) -> bool:
    """Whether a bare media type declares audio (``audio/*`` except playlists, Ogg/WebM containers)."""
    return (media.startswith("audio/") and media not in PLAYLIST_TYPES) or media in _AUDIO_TYPES


def url_audio_ext(url: str | httpx.URL | None) -> str | None:
    """The audio file extension the URL's path ends in, or None."""
    if not url:
        return None
    try:
        path = (url if isinstance(url, httpx.URL) else httpx.URL(url.strip())).path
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    suffix = Path(path).suffix.lower()
    return suffix if suffix in AUDIO_EXTENSIONS else None


def sniff_audio(head: bytes) -> str | None:
    """File extension of the audio container the first bytes announce, or None when unknown."""
    if head.startswith(b"OggS"):
        return ".ogg"
    if head.startswith(b"fLaC"):
        return ".flac"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return ".mp3" if not (len(head) > 1 and head[1] & 0x06 == 0) else ".aac"  # layer bits 00 = ADTS
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return ".wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return ".aiff"
    if head[4:8] == b"ftyp":
        return ".m4a"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ".webm"
    return None


def looks_like_text(head: bytes) -> bool:
    """Whether a body starts like markup, JSON or a playlist (after leading whitespace)."""
    return head[:512].lstrip().lower().startswith(_TEXT_STARTS)


def download_stem(url: str) -> str:
    """File stem a URL downloads to: the first 24 hex digits of sha256(url)."""
    return hashlib.sha256(url.strip().encode("utf-8")).hexdigest()[:24]


def existing_download(*, url: str, dest_dir: Path) -> Path | None:
    """The file an earlier download of ``url`` left in ``dest_dir``, or None."""
    stem = download_stem(url)
    for path in sorted(Path(dest_dir).glob(f"{stem}.*")):
        if path.suffix != ".part" and path.is_file() and path.stat().st_size > 0:
            return path
    return None


def existing_downloads(*, dest_dir: Path) -> dict[str, Path]:
    """Every finished download in ``dest_dir`` by its stem (what ``existing_download`` finds, for
    all URLs at once: one directory listing instead of one glob per URL)."""
    found: dict[str, Path] = {}
    try:
        entries = sorted(os.scandir(dest_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return found
    for entry in entries:
        stem, dot, _ = entry.name.partition(".")
        if not dot or entry.name.endswith(".part") or stem in found:
            continue
        if entry.is_file() and entry.stat().st_size > 0:
            found[stem] = Path(entry.path)
    return found
