"""Filling what the crawl lacks, always with a recorded source and confidence.

- Metadata: genre and tags of tracks without them, by similarity-weighted votes of their nearest
  text neighbours (MiniLM) that do have them. Descriptions fall back to the track's vibe text, else
  a synthetic line restating its metadata, flagged ``synthetic`` (display only, never embedded).
"""

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines import schema as S
from pipelines.heal.genres import GENRE_CONFIDENCE
from pipelines.heal.neighbours import nearest
from pipelines.heal.textdoc import split_tags


@dataclass(frozen=True)
class MetadataImputationConfig:
    k: int = 15
    min_similarity: float = 0.45  # neighbours below this cosine do not vote
    min_share: float = 0.5  # winning genre must hold this share of the vote weight
    tag_share: float = 0.4  # an imputed tag must be carried by this share of the vote weight
    max_tags: int = 8


def impute_metadata(
    *, tracks: pl.DataFrame, text_vectors: np.ndarray, has_text: np.ndarray,
    config: MetadataImputationConfig = MetadataImputationConfig(),
) -> tuple[pl.DataFrame, dict]:
    """Impute genre and tags by kNN votes. ``text_vectors`` (n,384) aligned with ``tracks`` rows.

    Returns the tracks with ``genre``/``tags`` filled where confident, plus ``genre_source``,
    ``genre_confidence``, ``tags_source``, ``description_source``; and a metrics dict.

    Neighbours: ``neighbours.nearest`` (k + 1, self skipped) of the rows lacking a value among the
    rows that have one — exact below ``EXACT_MAX_PAIRS`` query × donor pairs, IVF above; ties by row.
    Time O(q·m·d) exact / O(q·m·d·nprobe/nlist) IVF for q queries and m donors, plus O(q·k·t)
    votes (t tags per donor); memory O(n·(d + k)) — one index copy of the donors, (q, k) results.
    """
    n = tracks.height
    genres = tracks.get_column(S.GENRE).to_list()
    tags = tracks.get_column(S.TAGS).to_list()
    has_genre = np.array([bool(g) for g in genres]) & has_text
    has_tags = np.array([bool(t) for t in tags]) & has_text
    need = np.where(has_text & ~(np.array([bool(g) for g in genres]) & np.array([bool(t) for t in tags])))[0]
    donors = np.where(has_genre | has_tags)[0]

    new_genres, genre_src, genre_conf = list(genres), [("observed" if g else None) for g in genres], [
        (1.0 if g else None) for g in genres
    ]
    new_tags, tags_src = list(tags), [("observed" if t else None) for t in tags]
    if len(need) and len(donors):
        found = nearest(vectors=text_vectors, base_rows=donors, query_rows=need, k=config.k + 1)
        genre_of = [g if ok else None for g, ok in zip(genres, has_genre.tolist())]
        split_cache: dict[str, list[str]] = {}
        tags_of: list[list[str] | None] = [None] * n
        for d in np.flatnonzero(has_tags).tolist():
            if tags[d] not in split_cache:
                split_cache[tags[d]] = [t.lower() for t in split_tags(tags[d])]
            tags_of[d] = split_cache[tags[d]]
        min_sim = config.min_similarity
        for row, srow, drow in zip(need.tolist(), found.sims.astype(np.float64).tolist(), found.rows.tolist()):
            want_genre, want_tags = not genres[row], not tags[row]
            genre_votes: defaultdict[str, float] = defaultdict(float)
            tag_votes: Counter[str] = Counter()
            total = 0.0
            for s, d in zip(srow, drow):
                if d < 0 or d == row or s < min_sim:
                    continue
                total += s
                if want_genre and genre_of[d] is not None:
                    genre_votes[genre_of[d]] += s
                if want_tags and tags_of[d] is not None:
                    for t in tags_of[d]:
                        tag_votes[t] += s
            if total <= 0:
                continue
            if want_genre and genre_votes:
                best, weight = max(genre_votes.items(), key=lambda kv: kv[1])
                share = weight / sum(genre_votes.values())
                if share >= config.min_share:
                    new_genres[row], genre_src[row], genre_conf[row] = best, "imputed", round(share, 4)
            if want_tags and tag_votes:
                chosen = [t for t, w in tag_votes.most_common(config.max_tags) if w / total >= config.tag_share]
                if chosen:
                    new_tags[row], tags_src[row] = ", ".join(chosen), "imputed"
    out = tracks.with_columns(
        pl.Series(S.GENRE, new_genres, dtype=pl.Utf8),
        pl.Series(S.TAGS, new_tags, dtype=pl.Utf8),
        pl.Series(S.GENRE_SOURCE, genre_src, dtype=pl.Utf8),
        pl.Series(GENRE_CONFIDENCE, genre_conf, dtype=pl.Float64),
        pl.Series(S.TAGS_SOURCE, tags_src, dtype=pl.Utf8),
        pl.Series(S.DESCRIPTION_SOURCE, [("observed" if d else None) for d in tracks.get_column(S.DESCRIPTION)],
                  dtype=pl.Utf8),
    )
    metrics = {
        "genre_null_before": float(np.mean([not g for g in genres])) if n else 0.0,
        "genre_null_after": float(np.mean([not g for g in new_genres])) if n else 0.0,
        "tags_null_before": float(np.mean([not t for t in tags])) if n else 0.0,
        "tags_null_after": float(np.mean([not t for t in new_tags])) if n else 0.0,
        "genre_imputed": int(sum(1 for s in genre_src if s == "imputed")),
        "tags_imputed": int(sum(1 for s in tags_src if s == "imputed")),
    }
    return out, metrics


def fill_descriptions(*, tracks: pl.DataFrame) -> pl.DataFrame:
    """Descriptions where the crawl has none: the track's own vibe text (``vibe_text``), else a
    synthetic line from its metadata ("A rock track by X from 1999") flagged ``synthetic``.

    Synthetic descriptions are display text only: they restate metadata the track already has, are
    never embedded (``text_doc`` is built from observed text before this runs) and never count as
    text evidence. Tracks with neither genre nor artist nor year stay null.
    O(n) time (one Python pass over the rows lacking a description) and O(n) memory.
    """
    desc = tracks.get_column(S.DESCRIPTION).to_list()
    source = tracks.get_column(S.DESCRIPTION_SOURCE).to_list() if S.DESCRIPTION_SOURCE in tracks.columns else [
        ("observed" if d else None) for d in desc]
    vibe = tracks.get_column(S.VIBE_TEXT).to_list()
    genre = tracks.get_column(S.GENRE).to_list()
    artist = tracks.get_column(S.ARTIST).to_list()
    year = tracks.get_column(S.YEAR).to_list()
    for i in range(len(desc)):
        if desc[i]:
            continue
        if vibe[i] and vibe[i].strip():
            desc[i], source[i] = vibe[i].strip(), "vibe_text"
            continue
        readable_artist = artist[i] if artist[i] and not artist[i].startswith("artist_") else None
        if not (genre[i] or readable_artist or year[i]):
            continue
        text = f"A {genre[i]} track" if genre[i] else "A track"
        if readable_artist:
            text += f" by {readable_artist}"
        if year[i]:
            text += f" from {year[i]}"
        desc[i], source[i] = text + ".", "synthetic"
    return tracks.with_columns(
        pl.Series(S.DESCRIPTION, desc, dtype=pl.Utf8), pl.Series(S.DESCRIPTION_SOURCE, source, dtype=pl.Utf8)
    )
