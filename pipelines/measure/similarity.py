"""Audio-only "sounds like": for each track with extracted audio, its k nearest other tracks (among
tracks with extracted audio) and the share of them in its genre (precision@k, leave-one-out).

Genres are used for scoring only; every similarity here is computed from audio alone.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from pipelines import schema as S
from pipelines.audio.features import FEATURE_COLUMNS
from pipelines.audio.space import BACKBONE_EMBEDDINGS, stack_embeddings

SIMILAR_K = 10
# The timbre/harmony subset of the librosa vector: MFCC, chroma and spectral-contrast statistics.
TIMBRE_PREFIXES: tuple[str, ...] = ("mfcc_", "chroma_", "spectral_contrast_")
TIMBRE_COLUMNS: tuple[str, ...] = tuple(c for c in FEATURE_COLUMNS if c.startswith(TIMBRE_PREFIXES))
SERVED = "served"
_CHUNK = 1024  # query rows per similarity block


def primary_genres(corpus: pl.DataFrame) -> dict[str, str]:
    """track id → first genre of its ``genre`` cell, case-folded; tracks without one are left out."""
    if S.GENRE not in corpus.columns:
        return {}
    pattern = re.compile(S.PRIMARY_GENRE_PATTERN)
    out: dict[str, str] = {}
    for track_id, cell in corpus.select(S.TRACK_ID, pl.col(S.GENRE).cast(pl.Utf8)).iter_rows():
        m = pattern.match(cell or "")
        if m:
            out[str(track_id)] = m.group(1).strip().casefold()
    return out


def standardise(x: np.ndarray) -> np.ndarray:
    """Columns z-scored over the rows (constant columns → 0)."""
    x = np.asarray(x, dtype=np.float64)
    sd = x.std(axis=0)
    return np.where(sd > 0, (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0), 0.0)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows L2-normalised (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def cosine_neighbours(x: np.ndarray, k: int = SIMILAR_K) -> np.ndarray:
    """(n, min(k, n − 1)) row indices of each row's most cosine-similar other rows, best first
    (ties by row order); the row itself is never its own neighbour."""
    u = unit_rows(x)
    n = u.shape[0]
    k = max(0, min(k, n - 1))
    out = np.zeros((n, k), dtype=np.int64)
    for start in range(0, n, _CHUNK):
        sims = u[start:start + _CHUNK] @ u.T
        rows = np.arange(start, min(start + _CHUNK, n))
        sims[rows - start, rows] = -np.inf
        out[start:start + len(rows)] = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return out


def genre_precision(
    neighbours: Mapping[str, Sequence[str]], genres: Mapping[str, str], *, k: int = SIMILAR_K
) -> dict[str, Any]:
    """Mean over query tracks with a genre of (neighbours in the query's genre among its first k) / k.

    ``neighbours``: query id → ranked neighbour ids (a neighbour without a genre counts as a miss).
    Returns ``{precision@k, n, by_genre: {genre: {precision@k, n}}}`` (NaN with no query).
    """
    key = f"precision@{k}"
    per_genre: dict[str, list[float]] = {}
    for query, ranked in neighbours.items():
        g = genres.get(query)
        if g is None:
            continue
        hits = sum(1 for t in list(ranked)[:k] if genres.get(t) == g)
        per_genre.setdefault(g, []).append(hits / k)
    values = [v for vs in per_genre.values() for v in vs]
    return {
        key: float(np.mean(values)) if values else float("nan"),
        "n": len(values),
        "by_genre": {g: {key: float(np.mean(vs)), "n": len(vs)} for g, vs in sorted(per_genre.items())},
    }


def chance_precision(ids: Sequence[str], genres: Mapping[str, str]) -> float:
    """Expected precision of random neighbours: mean over queries of same-genre others / other tracks."""
    labelled = [genres.get(t) for t in ids]
    n = len(ids)
    counts: dict[str, int] = {}
    for g in labelled:
        if g is not None:
            counts[g] = counts.get(g, 0) + 1
    shares = [(counts[g] - 1) / (n - 1) for g in labelled if g is not None]
    return float(np.mean(shares)) if shares and n > 1 else float("nan")


def embedding_matrix(features: pl.DataFrame, column: str) -> np.ndarray:
    """A list column → (n, E) float64 (NaN rows where a track has none)."""
    return stack_embeddings([features.get_column(column).to_list()])


def feature_spaces(features: pl.DataFrame) -> dict[str, np.ndarray]:
    """The audio representations compared, by name → (n, d) (NaN rows: a track lacks that one).

    ``handcrafted``: every librosa feature, standardised; ``handcrafted_timbre``: its MFCC, chroma
    and spectral-contrast columns, standardised; each backbone embedding present (``msd_embedding``,
    ``mtt_embedding``) as is; ``backbone``: those embeddings concatenated, each block L2-normalised;
    ``backbone+handcrafted``: the same plus the standardised librosa block, L2-normalised.
    """
    spaces: dict[str, np.ndarray] = {}
    librosa_cols = [c for c in FEATURE_COLUMNS if c in features.columns]
    if librosa_cols:
        spaces["handcrafted"] = _standardised(features.select(librosa_cols).to_numpy())
    timbre = [c for c in TIMBRE_COLUMNS if c in features.columns]
    if timbre:
        spaces["handcrafted_timbre"] = _standardised(features.select(timbre).to_numpy())
    blocks: list[np.ndarray] = []
    for col in BACKBONE_EMBEDDINGS:
        if col in features.columns and isinstance(features.schema[col], pl.List):
            emb = embedding_matrix(features, col)
            if emb.shape[1] > 0 and np.isfinite(emb).all(axis=1).any():
                spaces[col] = emb
                blocks.append(emb)
    if blocks:
        spaces["backbone"] = _blocks(blocks)
        if "handcrafted" in spaces:
            spaces["backbone+handcrafted"] = _blocks([*blocks, spaces["handcrafted"]])
    return spaces


def _standardised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x).all(axis=1)
    out = np.full(x.shape, np.nan)
    if ok.any():
        out[ok] = standardise(x[ok])
    return out


def _blocks(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """Blocks L2-normalised per row and concatenated (NaN in any block → NaN row)."""
    out = np.hstack([unit_rows(np.nan_to_num(b)) for b in blocks])
    absent = np.zeros(out.shape[0], dtype=bool)
    for b in blocks:
        absent |= ~np.isfinite(b).all(axis=1)
    out[absent] = np.nan
    return out


def space_neighbours(ids: Sequence[str], x: np.ndarray, *, k: int = SIMILAR_K) -> dict[str, list[str]]:
    """Cosine kNN among the rows of ``x`` that are finite (the others neither query nor answer)."""
    ok = np.flatnonzero(np.isfinite(x).all(axis=1))
    kept = [ids[i] for i in ok]
    nn = cosine_neighbours(x[ok], k)
    return {kept[i]: [kept[j] for j in row] for i, row in enumerate(nn)}


def sounds_like(
    *, genres: Mapping[str, str], features: pl.DataFrame,
    served: Callable[[list[str], int], Mapping[str, Sequence[str]]] | None = None,
    served_dims: int | None = None, k: int = SIMILAR_K,
) -> dict[str, Any]:
    """Same-genre precision@k of each audio representation over the tracks of ``features``.

    ``features``: one row per track with extracted audio (``track_id``, librosa columns, optional
    backbone list columns); ``genres``: track id → genre, for scoring only; ``served(ids, k)``: the
    service's audio neighbours of each of ``ids`` among ``ids`` (``served_dims``: its vector size).
    Returns ``{skipped: reason}`` when fewer than two genres occur among the tracks, else
    ``{k, n_tracks, n_with_genre, genres, chance, methods: {name: {dims, precision@k, n, by_genre}}}``.
    """
    ids = [str(t) for t in features.get_column(S.TRACK_ID).to_list()]
    present = sorted({genres[t] for t in ids if t in genres})
    if len(present) < 2:
        return {"skipped": f"{len(present)} genre(s) among the {len(ids)} tracks with extracted audio; need 2"}
    methods: dict[str, dict[str, Any]] = {}
    for name, x in feature_spaces(features).items():
        methods[name] = {"dims": int(x.shape[1]), **genre_precision(space_neighbours(ids, x, k=k), genres, k=k)}
    if served is not None:
        methods[SERVED] = {"dims": served_dims, **genre_precision(served(ids, k), genres, k=k)}
    return {
        "k": k,
        "n_tracks": len(ids),
        "n_with_genre": sum(1 for t in ids if t in genres),
        "genres": present,
        "chance": chance_precision(ids, genres),
        "methods": methods,
    }
