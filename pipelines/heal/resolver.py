"""Recovery of DEAD links: pluggable resolvers (another copy of the same track) and, for tracks
that stay dead, metadata inheritance from the most similar live track.

Resolvers implement ``LinkResolver``: ``name`` and ``resolve(*, title, artist, dead_url)`` →
``Resolution`` (url, source, score in [0, 1], matched_track_id) or None. ``resolve_dead_links``
tries them in order for every DEAD row and keeps the first answer. The built-in
``CatalogueResolver`` searches the local catalogue: another row of the same track (same normalised
title and artist — score 1.0 — or a near match, rapidfuzz ``token_sort_ratio`` on both title and
artist, score = the lower of the two / 100, kept at ≥ ``threshold``) whose link is live (VALID or
MOVED; a MOVED row offers its final URL). A re-upload or a mirror on another site is the typical
hit. Other resolvers (a search API of a streaming site, …) plug in with the same protocol.

Versions stay apart: "Song (Live)" and "Song" are different recordings, so brackets are kept in the
normalised title and the near-match threshold is high (0.92 by default).

Inheritance (``inherit_from_similar``): a DEAD track whose link nobody could recover still has its
text; its missing genre / tags are copied from the nearest live track by text embedding (cosine
≥ ``min_similarity``, a FAISS search in query blocks), with the donor's track id recorded.
"""

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import polars as pl
from rapidfuzz import fuzz, process

from pipelines import schema as S
from pipelines.heal.neighbours import nearest

LIVE_FOR_RESOLUTION = (S.VALID, S.MOVED)
ARTIST_BLOCK_CELLS = 4_000_000  # dead rows × catalogue artists scored per rapidfuzz cdist call


@dataclass(frozen=True)
class Resolution:
    """A live replacement for a dead link: where, found by whom, how sure, from which catalogue row."""

    url: str
    source: str
    score: float
    matched_track_id: str | None


@runtime_checkable
class LinkResolver(Protocol):
    """Finds a live URL for a track whose link is DEAD, or None."""

    name: str

    def resolve(self, *, title: str | None, artist: str | None, dead_url: str | None) -> Resolution | None: ...


_PUNCT = re.compile(r"[^\w()\[\]]+", re.UNICODE)
_FEAT = re.compile(r"\b(?:feat\.?|ft\.?|featuring)\b", re.IGNORECASE)


def normalise(text: str | None) -> str:
    """Case-folded, accent-free, punctuation-free text ("Beyoncé – Halo!" → "beyonce halo"); "" for None.
    Brackets stay (versions differ); "feat."/"ft." spellings become "feat"."""
    if not text:
        return ""
    t = text
    if not t.isascii():  # ASCII has no decompositions and no combining marks
        t = unicodedata.normalize("NFKD", t)
        t = "".join(c for c in t if not unicodedata.combining(c))
    t = t.casefold()
    t = _FEAT.sub(" feat ", t)
    t = _PUNCT.sub(" ", t)
    t = re.sub(r"\s*([()\[\]])\s*", r" \1 ", t)
    return " ".join(t.split())


class CatalogueResolver:
    """Searches the local catalogue for a live copy of the same track (see the module docstring)."""

    name = "catalogue"

    def __init__(self, *, catalogue: pl.DataFrame, threshold: float = 0.92) -> None:
        """catalogue: frame with ``track_id``, ``title``, ``artist``, ``permalink_url``, ``url_status``
        (and optionally ``final_url``); only rows with a live link, a title and an artist are used.
        O(n) time and memory: hashed (title, artist) keys and per-artist row lists."""
        live = catalogue.filter(
            pl.col(S.URL_STATUS).is_in(LIVE_FOR_RESOLUTION) & pl.col(S.TITLE).is_not_null()
            & pl.col(S.ARTIST).is_not_null() & pl.col(S.PERMALINK_URL).is_not_null()
        )
        final = pl.col(S.FINAL_URL) if S.FINAL_URL in live.columns else pl.lit(None, dtype=pl.Utf8)
        live = live.with_columns(
            pl.when((pl.col(S.URL_STATUS) == S.MOVED) & final.is_not_null()).then(final)
            .otherwise(pl.col(S.PERMALINK_URL)).alias("_url")
        )
        self.threshold = float(threshold)
        self._ids: list[str] = live.get_column(S.TRACK_ID).to_list()
        self._urls: list[str] = live.get_column("_url").to_list()
        self._titles = [normalise(t) for t in live.get_column(S.TITLE).to_list()]
        self._artists = [normalise(a) for a in live.get_column(S.ARTIST).to_list()]
        self._exact: dict[tuple[str, str], list[int]] = {}
        self._by_artist: dict[str, list[int]] = {}
        for i, (t, a) in enumerate(zip(self._titles, self._artists)):
            self._exact.setdefault((t, a), []).append(i)
            self._by_artist.setdefault(a, []).append(i)
        self._artist_keys = list(self._by_artist)
        self._artist_sorted = [_sorted_tokens(a) for a in self._artist_keys]
        self._artist_titles: dict[str, list[str]] = {}  # filled on first use
        self._artist_urls: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def resolve(self, *, title: str | None, artist: str | None, dead_url: str | None) -> Resolution | None:
        return self.resolve_many(titles=[title], artists=[artist], dead_urls=[dead_url])[0]

    def resolve_many(
        self, *, titles: Sequence[str | None], artists: Sequence[str | None], dead_urls: Sequence[str | None],
    ) -> list[Resolution | None]:
        """``resolve`` for many dead rows at once (same answers, row by row).

        Exact copies: one hash lookup per row. Near copies: the artist is scored against every
        catalogue artist with rapidfuzz ``cdist`` (token-sorted ``ratio`` = ``token_sort_ratio``)
        ``ARTIST_BLOCK_CELLS`` cells at a time, the few above the threshold rescored exactly.
        Time O(r·A) string comparisons (r rows, A catalogue artists), memory O(A + block).
        """
        out: list[Resolution | None] = [None] * len(titles)
        fuzzy: list[tuple[int, str, str]] = []
        for q, (title, artist, dead_url) in enumerate(zip(titles, artists, dead_urls)):
            t, a = normalise(title), normalise(artist)
            if not t or not a:
                continue
            for i in self._exact.get((t, a), []):
                if self._urls[i] != dead_url:
                    out[q] = Resolution(url=self._urls[i], source=self.name, score=1.0, matched_track_id=self._ids[i])
                    break
            else:
                fuzzy.append((q, t, a))
        if not fuzzy or not self._artist_keys:
            return out
        cutoff = 100.0 * self.threshold
        block = max(1, ARTIST_BLOCK_CELLS // len(self._artist_keys))
        for start in range(0, len(fuzzy), block):
            part = fuzzy[start:start + block]
            rough = process.cdist([_sorted_tokens(a) for _, _, a in part], self._artist_sorted, scorer=fuzz.ratio,
                                  score_cutoff=max(0.0, cutoff - 1.0), dtype=np.float32, workers=-1)
            for (q, t, a), row in zip(part, rough):
                candidates = np.flatnonzero(row)
                if len(candidates) > 5:  # only those that can be among the five best (float32 scores)
                    scores = row[candidates]
                    candidates = candidates[scores >= np.partition(scores, -5)[-5] - 0.01]
                out[q] = self._near(t=t, a=a, candidates=candidates.tolist(), dead_url=dead_urls[q], cutoff=cutoff)
        return out

    def _near(self, *, t: str, a: str, candidates: list[int], dead_url: str | None, cutoff: float) -> Resolution | None:
        """Best near copy among the catalogue artists ``candidates`` (the five best-scoring artists,
        ties by catalogue order, as ``process.extract(limit=5)``), title scored within each."""
        scored = []
        for j in candidates:
            s = fuzz.token_sort_ratio(a, self._artist_keys[j], score_cutoff=cutoff)
            if s >= cutoff:
                scored.append((-s, j))
        best: tuple[float, int] | None = None
        t_sorted = _sorted_tokens(t)  # ratio of token-sorted strings is token_sort_ratio
        for neg, j in sorted(scored)[:5]:
            key = self._artist_keys[j]
            rows = self._by_artist[key]
            if dead_url in self._url_of_artist(key):
                rows = [i for i in rows if self._urls[i] != dead_url]
                titles = [_sorted_tokens(self._titles[i]) for i in rows]
            else:
                titles = self._titles_of_artist(key)
            if not rows:
                continue
            hit = process.extractOne(t_sorted, titles, scorer=fuzz.ratio, score_cutoff=cutoff)
            if hit is None:
                continue
            score = min(-neg, hit[1]) / 100.0
            if best is None or score > best[0]:
                best = (score, rows[hit[2]])
        if best is None:
            return None
        i = best[1]
        return Resolution(url=self._urls[i], source=self.name, score=round(best[0], 4), matched_track_id=self._ids[i])


    def _titles_of_artist(self, key: str) -> list[str]:
        if key not in self._artist_titles:
            self._artist_titles[key] = [_sorted_tokens(self._titles[i]) for i in self._by_artist[key]]
        return self._artist_titles[key]

    def _url_of_artist(self, key: str) -> set[str]:
        if key not in self._artist_urls:
            self._artist_urls[key] = {self._urls[i] for i in self._by_artist[key]}
        return self._artist_urls[key]


def _sorted_tokens(text: str) -> str:
    return " ".join(sorted(text.split()))


def resolve_dead_links(*, tracks: pl.DataFrame, resolvers: Sequence[LinkResolver]) -> pl.DataFrame:
    """Tracks (``track_id``, ``title``, ``artist``, ``permalink_url``, ``url_status``) → one row per
    DEAD track that some resolver recovered: (k, 5) ``track_id``, ``permalink_url`` (the new URL),
    ``url_resolution_source``, ``url_resolution_score`` Float64, ``url_resolved_from``. The first
    resolver (in order) with an answer wins; a resolver never returns the track itself.

    Resolvers with ``resolve_many`` get every pending row in one call, others one row at a time.
    Time O(r) resolver calls for r DEAD rows (plus the resolvers' own cost); memory O(r)."""
    schema = {S.TRACK_ID: pl.Utf8, S.PERMALINK_URL: pl.Utf8, S.URL_RESOLUTION_SOURCE: pl.Utf8,
              S.URL_RESOLUTION_SCORE: pl.Float64, S.URL_RESOLVED_FROM: pl.Utf8}
    dead = tracks.filter(pl.col(S.URL_STATUS) == S.DEAD)
    ids, titles, artists, urls = (dead.get_column(c).to_list() for c in (S.TRACK_ID, S.TITLE, S.ARTIST,
                                                                          S.PERMALINK_URL))
    found: dict[int, Resolution] = {}
    pending = list(range(len(ids)))
    for resolver in resolvers:
        if not pending:
            break
        many = getattr(resolver, "resolve_many", None)
        if many is not None:
            got = many(titles=[titles[i] for i in pending], artists=[artists[i] for i in pending],
                       dead_urls=[urls[i] for i in pending])
        else:
            got = [resolver.resolve(title=titles[i], artist=artists[i], dead_url=urls[i]) for i in pending]
        for i, res in zip(pending, got):
            if res is not None and res.matched_track_id != ids[i] and res.url != urls[i]:
                found[i] = res
        pending = [i for i in pending if i not in found]
    rows = sorted(found)
    return pl.DataFrame({
        S.TRACK_ID: [ids[i] for i in rows], S.PERMALINK_URL: [found[i].url for i in rows],
        S.URL_RESOLUTION_SOURCE: [found[i].source for i in rows],
        S.URL_RESOLUTION_SCORE: [float(found[i].score) for i in rows],
        S.URL_RESOLVED_FROM: [found[i].matched_track_id for i in rows],
    }, schema=schema)


def apply_resolutions(*, tracks: pl.DataFrame, resolutions: pl.DataFrame) -> pl.DataFrame:
    """Tracks with recovered DEAD links replaced: ``permalink_url`` ← the resolver's URL. The
    ``url_status`` column is left as checked (DEAD, of the original URL); the caller decides how to
    serve a resolved row. ``permalink_url_original`` keeps the crawled URL (added when missing);
    ``url_resolution_source`` / ``url_resolution_score`` / ``url_resolved_from`` record what
    happened (null where nothing was resolved). Shape (n, columns + 3), input order kept.
    O(n) time and memory: one hash join on ``track_id``."""
    if S.URL_ORIGINAL not in tracks.columns:
        tracks = tracks.with_columns(pl.col(S.PERMALINK_URL).alias(S.URL_ORIGINAL))
    res = resolutions.rename({S.PERMALINK_URL: "_resolved_url"})
    out = tracks.join(res, on=S.TRACK_ID, how="left", maintain_order="left")
    return out.with_columns(
        pl.coalesce(pl.col("_resolved_url"), pl.col(S.PERMALINK_URL)).alias(S.PERMALINK_URL)
    ).drop("_resolved_url")


def inherit_from_similar(
    *,
    track_ids: Sequence[str],
    vectors: np.ndarray,
    has_text: np.ndarray,
    recipients: np.ndarray,
    donors: np.ndarray,
    genres: Sequence[str | None],
    tags: Sequence[str | None],
    min_similarity: float = 0.5,
) -> pl.DataFrame:
    """Each recipient with text and a missing genre or tags takes them from its most
    similar donor (cosine of L2-normalised text vectors) that has the value, when the similarity is
    ≥ ``min_similarity``; among equally similar donors the first row wins, a row is never its own donor.

    vectors (n, d) float32 L2-normalised; has_text, recipients, donors (n,) bool; genres, tags (n,)
    observed values (None = missing). Returns (k, 7): ``track_id``, ``genre``, ``genre_donor``,
    ``tags``, ``tags_donor``, ``genre_similarity``, ``tags_similarity`` — one row per recipient that
    inherited at least one value; a value not inherited is null.

    Per field, one FAISS search (``neighbours.nearest``, k = 2 to skip oneself) of the recipients
    missing it over the donors that have it, in blocks of ``QUERY_BLOCK`` queries. Time O(r·m·d)
    exact (r recipients, m donors), IVF above ``EXACT_MAX_PAIRS`` pairs; memory O(n·d) — one index
    copy of the donors, never an r × m similarity matrix.
    """
    schema = {S.TRACK_ID: pl.Utf8, S.GENRE: pl.Utf8, "genre_donor": pl.Utf8, S.TAGS: pl.Utf8, "tags_donor": pl.Utf8,
              "genre_similarity": pl.Float64, "tags_similarity": pl.Float64}
    n = len(track_ids)
    if not (vectors.shape[0] == n == len(has_text) == len(recipients) == len(donors) == len(genres) == len(tags)):
        raise ValueError("inherit_from_similar: every input must have one row per track")
    g_missing = np.array([not g for g in genres], dtype=bool)
    t_missing = np.array([not t for t in tags], dtype=bool)
    has_text, recipients, donors = (np.asarray(x, dtype=bool) for x in (has_text, recipients, donors))
    rec = np.flatnonzero(recipients & has_text & (g_missing | t_missing))
    if len(rec) == 0:
        return pl.DataFrame(schema=schema)
    picks = []
    for field_missing in (g_missing, t_missing):
        best = np.full(len(rec), -1, dtype=np.int64)
        best_sim = np.full(len(rec), np.nan)
        want = np.flatnonzero(field_missing[rec])
        found = nearest(vectors=vectors, base_rows=np.flatnonzero(donors & has_text & ~field_missing),
                        query_rows=rec[want], k=2)
        self_first = found.rows[:, 0] == rec[want]
        j = np.where(self_first, found.rows[:, 1], found.rows[:, 0])
        s = np.where(self_first, found.sims[:, 1], found.sims[:, 0]).astype(np.float64)
        ok = (j >= 0) & (s >= min_similarity)
        best[want[ok]], best_sim[want[ok]] = j[ok], s[ok]
        picks.append((best, best_sim))
    (gj, gs), (tj, ts) = picks
    keep = (gj >= 0) | (tj >= 0)
    rec, gj, gs, tj, ts = rec[keep], gj[keep], gs[keep], tj[keep], ts[keep]
    ids = pl.Series(list(track_ids), dtype=pl.Utf8)
    return pl.DataFrame({
        S.TRACK_ID: ids.gather(rec),
        S.GENRE: _take(pl.Series(list(genres), dtype=pl.Utf8), gj), "genre_donor": _take(ids, gj),
        S.TAGS: _take(pl.Series(list(tags), dtype=pl.Utf8), tj), "tags_donor": _take(ids, tj),
        "genre_similarity": pl.Series(np.where(gj >= 0, gs, np.nan)).fill_nan(None),
        "tags_similarity": pl.Series(np.where(tj >= 0, ts, np.nan)).fill_nan(None),
    }, schema=schema)


def _take(values: pl.Series, idx: np.ndarray) -> pl.Series:
    """values[idx], null where idx < 0."""
    missing = pl.Series([None] * len(idx), dtype=values.dtype)
    return values.gather(np.maximum(idx, 0)).zip_with(pl.Series(idx >= 0), missing)


__all__ = ["Resolution", "LinkResolver", "CatalogueResolver", "normalise", "resolve_dead_links", "apply_resolutions",
           "inherit_from_similar"]
