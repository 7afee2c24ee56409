"""The web page: ``GET /`` (server-rendered HTML), ``GET /mood-map`` (corpus mood density) and
``/static/*`` (app.js, style.css, favicon; nothing is loaded from a CDN, no build step).

The page itself talks only to the JSON API (``POST /recommend``, ``GET /mood-map``). Facts the
page needs per served version (genre list, year range, the 32×32 valence × arousal histogram)
are computed once per loaded bundle and cached, so a hot-reloaded version gets fresh ones.
"""

import html
import re
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from litestar import Response, Router, get
from litestar.datastructures import State
from litestar.enums import MediaType
from litestar.static_files import create_static_files_router

from pipelines import schema as S
from pipelines.index.bundle import Bundle
from pipelines.rank.types import DEFAULT_DIVERSITY

STATIC_DIR = Path(__file__).parent / "static"
MOOD_MAP_BINS = 32
MOOD_EXTENT = (-1.0, 1.0)
TOP_GENRES = 24  # genre checkboxes offered on the page (most frequent first)
_GENRE_SPLIT = re.compile(S.GENRE_SPLIT_PATTERN)  # the separators the ranking filter splits on

# Served with the page: everything comes from this origin; scripts and styles only from files.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class MoodMap(msgspec.Struct, kw_only=True):
    """Corpus density over valence × arousal. ``counts[a][v]``: tracks whose arousal falls in bin
    ``a`` and valence in bin ``v``; bin ``i`` spans ``extent[0] + i*w .. extent[0] + (i+1)*w`` with
    ``w = (extent[1]-extent[0]) / bins`` (low to high; the last bin includes its upper edge)."""

    store_version: str
    bins: int
    extent: tuple[float, float]
    counts: list[list[int]]
    max_count: int
    tracks: int
    tracks_with_mood: int


def mood_histogram(*, valence: np.ndarray, arousal: np.ndarray, bins: int = MOOD_MAP_BINS) -> np.ndarray:
    """(bins, bins) int64 counts indexed ``[arousal_bin, valence_bin]`` of the (n,) inputs.

    Rows where either value is NaN are dropped; values are clipped into MOOD_EXTENT so every
    track with a mood is counted exactly once.
    """
    v = np.asarray(valence, dtype=np.float64)
    a = np.asarray(arousal, dtype=np.float64)
    keep = ~(np.isnan(v) | np.isnan(a))
    lo, hi = MOOD_EXTENT
    counts, _, _ = np.histogram2d(
        np.clip(a[keep], lo, hi), np.clip(v[keep], lo, hi), bins=bins, range=[[lo, hi], [lo, hi]]
    )
    return counts.astype(np.int64)


def genre_counts(*, genres: list[str | None], top: int = TOP_GENRES) -> list[tuple[str, int]]:
    """The ``top`` most frequent genre names (lower-case, split on , | ; /) with their track counts."""
    counter: Counter[str] = Counter()
    for g in genres:
        if g:
            counter.update({p.strip().lower() for p in _GENRE_SPLIT.split(g) if p.strip()})
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


@dataclass(frozen=True)
class VersionFacts:
    """What the page needs to know about one loaded bundle."""

    store_version: str
    tracks: int
    genres: list[tuple[str, int]]
    min_year: int | None
    max_year: int | None
    mood_map: MoodMap


def version_facts(bundle: Bundle) -> VersionFacts:
    """Genre list, year range and the mood histogram of ``bundle`` (one pass over its table)."""
    t = bundle.tracks
    va = t.select(S.VALENCE, S.AROUSAL).to_numpy().astype(np.float64)
    counts = mood_histogram(valence=va[:, 0], arousal=va[:, 1])
    years = t[S.YEAR].drop_nulls()
    return VersionFacts(
        store_version=bundle.version,
        tracks=t.height,
        genres=genre_counts(genres=t[S.GENRE].to_list()),
        min_year=int(years.min()) if len(years) else None,
        max_year=int(years.max()) if len(years) else None,
        mood_map=MoodMap(
            store_version=bundle.version, bins=MOOD_MAP_BINS, extent=MOOD_EXTENT, counts=counts.tolist(),
            max_count=int(counts.max()) if counts.size else 0, tracks=t.height,
            tracks_with_mood=int(counts.sum()),
        ),
    )


class _FactsCache:
    """Facts per loaded bundle (keyed by identity + version + build time), last few kept."""

    def __init__(self, maxsize: int = 4) -> None:
        self._items: OrderedDict[tuple[Any, ...], VersionFacts] = OrderedDict()
        self._lock = threading.Lock()
        self._maxsize = maxsize

    def get(self, bundle: Bundle) -> VersionFacts:
        key = (id(bundle), str(bundle.folder), bundle.version, str(bundle.manifest.get("created_at")))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        facts = version_facts(bundle)  # outside the lock: two racing first requests both compute
        with self._lock:
            self._items[key] = facts
            while len(self._items) > self._maxsize:
                self._items.popitem(last=False)
        return facts


_FACTS = _FactsCache()


def _facts(state: State) -> VersionFacts:
    """Facts of the version currently served (leased from the hot-reload holder)."""
    with state.holder.lease() as rec:
        return _FACTS.get(rec.bundle)


def render_page(facts: VersionFacts) -> str:
    """The HTML of ``/`` for one served version (every dynamic value escaped)."""
    e = html.escape
    genre_items = "\n".join(
        f'<li><label><input type="checkbox" name="genre" value="{e(g)}"> {e(g)} '
        f'<span class="count">{n}</span></label></li>'
        for g, n in facts.genres
    ) or '<li class="muted">No genres in this version.</li>'
    lo = "" if facts.min_year is None else str(facts.min_year)
    hi = "" if facts.max_year is None else str(facts.max_year)
    year_attrs = f'min="{lo}" max="{hi}"' if lo else 'min="0" max="3000"'
    year_hint = f"{lo}–{hi}" if lo else "no years known in this version"
    version = e(facts.store_version)
    tagline = (
        '<p class="tagline">Describe a mood, a moment or a sound. '
        f'<span class="muted">Version {version} · {facts.tracks:,} tracks</span></p>'
    )
    map_label = (
        "Mood map: corpus density by valence (left unpleasant, right pleasant) "
        "and arousal (bottom calm, top energetic)"
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Moodscape — find music by mood</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/style.css">
<script src="/static/app.js" defer></script>
</head>
<body>
<a class="skip-link" href="#results-title">Skip to results</a>
<header class="site-header">
  <h1>Moodscape</h1>
  {tagline}
</header>
<main id="app" data-store-version="{version}" data-default-diversity="{DEFAULT_DIVERSITY}">
  <section class="search" aria-label="Search">
    <form id="search-form" role="search" autocomplete="off">
      <label for="q">What do you want to hear?</label>
      <div class="search-row">
        <input type="search" id="q" name="q" maxlength="512" autofocus
               placeholder="e.g. calm piano for a rainy morning" aria-describedby="status">
        <button type="submit">Search</button>
      </div>
    </form>
    <p id="status" class="status" role="status" aria-live="polite"></p>
    <div id="seeds" class="chips-block" hidden>
      <h2 class="small-heading" id="seeds-title">More like</h2>
      <ul id="seed-list" class="chips" aria-labelledby="seeds-title"></ul>
      <button type="button" id="clear-seeds" class="link-button">Clear</button>
    </div>
  </section>

  <aside class="side">
    <section class="map-panel" aria-labelledby="map-title">
      <h2 id="map-title">Mood map</h2>
      <svg id="mood-map" viewBox="0 0 320 320" role="group"
           aria-label="{map_label}">
      </svg>
      <p class="hint" id="map-hint">Drag the ring, click the map, or focus the ring and use the arrow keys
        (Shift for big steps, Escape to go back to the detected mood) to set a target mood.</p>
      <p id="mood-readout" class="readout" aria-live="polite"></p>
      <button type="button" id="reset-target" disabled>Use the detected mood</button>
    </section>

    <details class="filters" id="filters" open>
      <summary>Filters</summary>
      <fieldset>
        <legend>Year <span class="muted">({e(year_hint)})</span></legend>
        <div class="year-row">
          <label for="min-year">From</label>
          <input type="number" id="min-year" inputmode="numeric" {year_attrs} placeholder="{e(lo) or 'any'}">
          <label for="max-year">to</label>
          <input type="number" id="max-year" inputmode="numeric" {year_attrs} placeholder="{e(hi) or 'any'}">
        </div>
      </fieldset>
      <fieldset>
        <legend>Genres <span class="muted">(any of)</span></legend>
        <ul class="genre-list" id="genre-list">
{genre_items}
        </ul>
      </fieldset>
      <fieldset>
        <legend>Excluded artists</legend>
        <ul id="excluded-artists" class="chips" aria-label="Excluded artists"></ul>
        <div class="exclude-row">
          <label for="exclude-artist" class="visually-hidden">Artist to exclude</label>
          <input type="text" id="exclude-artist" placeholder="Artist name">
          <button type="button" id="exclude-artist-add">Exclude</button>
        </div>
      </fieldset>
      <div class="diversity">
        <label for="diversity">Diversity</label>
        <input type="range" id="diversity" min="0" max="1" step="0.05" value="{DEFAULT_DIVERSITY}"
               aria-describedby="diversity-hint">
        <output id="diversity-value" for="diversity">{DEFAULT_DIVERSITY:.2f}</output>
        <p class="hint" id="diversity-hint">Low: closest matches. High: more varied results.</p>
      </div>
    </details>
  </aside>

  <section class="results-panel" aria-labelledby="results-title">
    <h2 id="results-title" tabindex="-1">Results</h2>
    <p class="legend muted" aria-hidden="true">Score bar:
      <span class="key seg-text"></span>text <span class="key seg-audio"></span>audio
      <span class="key seg-mood"></span>mood <span class="key seg-collab"></span>popular in its cluster
      <span class="key seg-penalty"></span>popularity penalty</p>
    <ol id="results" class="results" aria-live="polite" aria-busy="false"></ol>
  </section>
</main>
<footer class="site-footer muted">Moodscape · <a href="/schema/swagger">API</a> · <a href="/health">health</a></footer>
</body>
</html>
"""


@get("/", media_type=MediaType.HTML, include_in_schema=False, sync_to_thread=False)
def index(state: State) -> Response[str]:
    """The search page of the served version."""
    facts = _facts(state)
    return Response(
        render_page(facts),
        media_type=MediaType.HTML,
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
    )


@get("/mood-map", sync_to_thread=False)
def mood_map(state: State) -> Response[MoodMap]:
    """Corpus density over valence × arousal of the served version (MOOD_MAP_BINS² histogram)."""
    facts = _facts(state)
    return Response(facts.mood_map, headers={"ETag": f'"{facts.store_version}"', "Cache-Control": "no-cache"})


def web_router() -> Router:
    """A fresh router with the page, ``/mood-map`` and ``/static`` (one per app instance)."""
    static = create_static_files_router(
        path="/static", directories=[STATIC_DIR], include_in_schema=False, name="static",
    )
    return Router(path="/", route_handlers=[index, mood_map, static])
