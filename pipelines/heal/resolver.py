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
≥ ``min_similarity``), with the donor's track id recorded.
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

LIVE_FOR_RESOLUTION = (S.VALID, S.MOVED)


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
    t = unicodedata.normalize("NFKD", text)
    t = "".join(c for c in t if not unicodedata.combining(c)).casefold()
    t = _FEAT.sub(" feat ", t)
    t = _PUNCT.sub(" ", t)
    t = re.sub(r"\s*([()\[\]])\s*", r" \1 ", t)
    return " ".join(t.split())


class CatalogueResolver:
    """Searches the local catalogue for a live copy of the same track (see the module docstring)."""

    name = "catalogue"

    def __init__(self, *, catalogue: pl.DataFrame, threshold: float = 0.92) -> None:
        """catalogue: frame with ``track_id``, ``title``, ``artist``, ``permalink_url``, ``url_status``
        (and optionally ``final_url``); only rows with a live link, a title and an artist are used."""
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

    def __len__(self) -> int:
        return len(self._ids)

    def resolve(self, *, title: str | None, artist: str | None, dead_url: str | None) -> Resolution | None:
        t, a = normalise(title), normalise(artist)
        if not t or not a:
            return None
        for i in self._exact.get((t, a), []):
            if self._urls[i] != dead_url:
                return Resolution(url=self._urls[i], source=self.name, score=1.0, matched_track_id=self._ids[i])
        cutoff = 100.0 * self.threshold
        best: tuple[float, int] | None = None
        for key, artist_score, _ in process.extract(a, self._artist_keys, scorer=fuzz.token_sort_ratio,
                                                    score_cutoff=cutoff, limit=5):
            rows = [i for i in self._by_artist[key] if self._urls[i] != dead_url]
            if not rows:
                continue
            hit = process.extractOne(t, [self._titles[i] for i in rows], scorer=fuzz.token_sort_ratio,
                                     score_cutoff=cutoff)
            if hit is None:
                continue
            score = min(artist_score, hit[1]) / 100.0
            if best is None or score > best[0]:
                best = (score, rows[hit[2]])
        if best is None:
            return None
        i = best[1]
        return Resolution(url=self._urls[i], source=self.name, score=round(best[0], 4), matched_track_id=self._ids[i])


def resolve_dead_links(*, tracks: pl.DataFrame, resolvers: Sequence[LinkResolver]) -> pl.DataFrame:
    """Tracks (``track_id``, ``title``, ``artist``, ``permalink_url``, ``url_status``) → one row per
    DEAD track that some resolver recovered: (k, 5) ``track_id``, ``permalink_url`` (the new URL),
    ``url_resolution_source``, ``url_resolution_score`` Float64, ``url_resolved_from``. The first
    resolver (in order) with an answer wins; a resolver never returns the track itself."""
    schema = {S.TRACK_ID: pl.Utf8, S.PERMALINK_URL: pl.Utf8, S.URL_RESOLUTION_SOURCE: pl.Utf8,
              S.URL_RESOLUTION_SCORE: pl.Float64, S.URL_RESOLVED_FROM: pl.Utf8}
    dead = tracks.filter(pl.col(S.URL_STATUS) == S.DEAD)
    out: list[dict[str, object]] = []
    for r in dead.select(S.TRACK_ID, S.TITLE, S.ARTIST, S.PERMALINK_URL).iter_rows(named=True):
        for resolver in resolvers:
            got = resolver.resolve(title=r[S.TITLE], artist=r[S.ARTIST], dead_url=r[S.PERMALINK_URL])
            if got is not None and got.matched_track_id != r[S.TRACK_ID] and got.url != r[S.PERMALINK_URL]:
                out.append({S.TRACK_ID: r[S.TRACK_ID], S.PERMALINK_URL: got.url, S.URL_RESOLUTION_SOURCE: got.source,
                            S.URL_RESOLUTION_SCORE: float(got.score), S.URL_RESOLVED_FROM: got.matched_track_id})
                break
    return pl.DataFrame(out, schema=schema)


def apply_resolutions(*, tracks: pl.DataFrame, resolutions: pl.DataFrame) -> pl.DataFrame:
    """Tracks with recovered DEAD links replaced: ``permalink_url`` ← the resolver's URL. The
    ``url_status`` column is left as checked (DEAD, of the original URL); the caller decides how to
    serve a resolved row. ``permalink_url_original`` keeps the crawled URL (added when missing);
    ``url_resolution_source`` / ``url_resolution_score`` / ``url_resolved_from`` record what
    happened (null where nothing was resolved). Shape (n, columns + 3), input order kept."""
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
    ≥ ``min_similarity``.

    vectors (n, d) float32 L2-normalised; has_text, recipients, donors (n,) bool; genres, tags (n,)
    observed values (None = missing). Returns (k, 7): ``track_id``, ``genre``, ``genre_donor``,
    ``tags``, ``tags_donor``, ``genre_similarity``, ``tags_similarity`` — one row per recipient that
    inherited at least one value; a value not inherited is null.
    """
    schema = {S.TRACK_ID: pl.Utf8, S.GENRE: pl.Utf8, "genre_donor": pl.Utf8, S.TAGS: pl.Utf8, "tags_donor": pl.Utf8,
              "genre_similarity": pl.Float64, "tags_similarity": pl.Float64}
    n = len(track_ids)
    if not (vectors.shape[0] == n == len(has_text) == len(recipients) == len(donors) == len(genres) == len(tags)):
        raise ValueError("inherit_from_similar: every input must have one row per track")
    g_missing = np.array([not g for g in genres])
    t_missing = np.array([not t for t in tags])
    rec = np.where(recipients & has_text & (g_missing | t_missing))[0]
    if len(rec) == 0:
        return pl.DataFrame(schema=schema)
    sims = vectors[rec] @ vectors.T  # (r, n)
    rows = []
    for field_missing, donor_ok in ((g_missing, donors & has_text & ~g_missing),
                                    (t_missing, donors & has_text & ~t_missing)):
        best = np.full(len(rec), -1, dtype=np.int64)
        best_sim = np.full(len(rec), np.nan)
        if donor_ok.any():
            masked = np.where(donor_ok[None, :], sims, -np.inf)
            masked[np.arange(len(rec)), rec] = -np.inf  # never one's own donor
            j = masked.argmax(axis=1)
            s = masked[np.arange(len(rec)), j]
            ok = field_missing[rec] & (s >= min_similarity)
            best[ok], best_sim[ok] = j[ok], s[ok]
        rows.append((best, best_sim))
    (gj, gs), (tj, ts) = rows
    out = []
    for k, i in enumerate(rec):
        if gj[k] < 0 and tj[k] < 0:
            continue
        out.append({
            S.TRACK_ID: track_ids[i],
            S.GENRE: genres[gj[k]] if gj[k] >= 0 else None, "genre_donor": track_ids[gj[k]] if gj[k] >= 0 else None,
            S.TAGS: tags[tj[k]] if tj[k] >= 0 else None, "tags_donor": track_ids[tj[k]] if tj[k] >= 0 else None,
            "genre_similarity": float(gs[k]) if gj[k] >= 0 else None,
            "tags_similarity": float(ts[k]) if tj[k] >= 0 else None,
        })
    return pl.DataFrame(out, schema=schema)


__all__ = ["Resolution", "LinkResolver", "CatalogueResolver", "normalise", "resolve_dead_links", "apply_resolutions",
           "inherit_from_similar"]
