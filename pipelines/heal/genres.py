"""Genre healing chain: observed → artist's most common genre → k-means cluster genre → "Unknown"."""

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
import polars as pl

from pipelines import schema as S

UNKNOWN_GENRE = "Unknown"
MIN_CLUSTER_SHARE = 0.4
MIN_CLUSTER_SUPPORT = 3
GENRE_CONFIDENCE = "genre_confidence"
GENRE_SOURCES: tuple[str, ...] = ("observed", "artist", "cluster", "unknown")
KMEANS_FIT_MAX = 50_000  # rows k-means is fitted on; more rows are assigned to the fitted centres
ROW_BLOCK = 65_536


def _key(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    return text.casefold() if text else None


def _has_features(vectors: np.ndarray) -> np.ndarray:
    """(n,) bool: finite, non-zero rows. O(n·d) time, O(block·d) memory."""
    out = np.zeros(len(vectors), dtype=bool)
    for start in range(0, len(vectors), ROW_BLOCK):
        x = np.asarray(vectors[start:start + ROW_BLOCK], dtype=np.float64)
        out[start:start + len(x)] = np.isfinite(x).all(axis=1) & (np.abs(np.nan_to_num(x)).sum(axis=1) > 0)
    return out


def _cluster_labels(vectors: np.ndarray, rows: np.ndarray, *, k: int, seed: int) -> np.ndarray:
    """k-means labels of ``rows``: fitted on all of them up to ``KMEANS_FIT_MAX`` rows, else on a
    seeded sample of that many and every row assigned to its nearest centre in blocks.
    Time O(s·k·d·iters + n·k·d) for s fitted rows; memory O(s·d + block·d)."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=min(k, len(rows)), random_state=seed, n_init=4)
    if len(rows) <= KMEANS_FIT_MAX:
        return km.fit_predict(np.asarray(vectors[rows], dtype=np.float64))
    fit_rows = np.sort(np.random.default_rng(seed).choice(rows, size=KMEANS_FIT_MAX, replace=False))
    km.fit(np.asarray(vectors[fit_rows], dtype=np.float64))
    labels = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), ROW_BLOCK):
        labels[start:start + ROW_BLOCK] = km.predict(np.asarray(vectors[rows[start:start + ROW_BLOCK]], np.float64))
    return labels


def _cluster_votes(
    *, vectors: np.ndarray, keys: list[str | None], unfilled: list[bool], overall: Counter, k: int, seed: int,
) -> dict[int, tuple[str, float]]:
    """Unfilled rows with features → (genre key, share) of their k-means cluster, where the
    cluster's known genres agree enough (share ≥ MIN_CLUSTER_SHARE, support ≥ MIN_CLUSTER_SUPPORT).
    Time O(n·k·d) plus the fit (see ``_cluster_labels``); memory O(n + KMEANS_FIT_MAX·d)."""
    has_feat = _has_features(vectors)
    pending = [i for i in range(len(keys)) if unfilled[i] and has_feat[i]]
    rows = np.where(has_feat)[0]
    if not pending or len(rows) < 2:
        return {}
    labels = _cluster_labels(vectors, rows, k=k, seed=seed)
    label_of = dict(zip(rows.tolist(), labels.tolist()))
    votes: defaultdict[int, Counter] = defaultdict(Counter)
    for i, lab in label_of.items():
        if keys[i] is not None:
            votes[lab][keys[i]] += 1
    cluster_genre: dict[int, tuple[str, float]] = {}
    for lab, counts in votes.items():
        best = min(counts, key=lambda g: (-counts[g], -overall[g], g))
        share = counts[best] / sum(counts.values())
        if share >= MIN_CLUSTER_SHARE and counts[best] >= MIN_CLUSTER_SUPPORT:
            cluster_genre[lab] = (best, share)
    return {i: cluster_genre[label_of[i]] for i in pending if label_of[i] in cluster_genre}


def impute_genres(
    *, track_ids: Sequence[str], artists: Sequence[str | None], genres: Sequence[str | None],
    vectors: np.ndarray, k: int = 20, seed: int = 0,
) -> pl.DataFrame:
    """Fill missing genres by the chain observed → artist → cluster → unknown:

    1. ``observed``: the row has a genre (confidence 1.0).
    2. ``artist``: the artist's most common observed genre among the *other* rows (ties → the genre more
       frequent overall, then alphabetical). Confidence = top count / (observed count + 1), a Laplace-
       style shrinkage: one observed track gives 0.5, ten agreeing tracks 0.91.
    3. ``cluster``: k-means (sklearn, seeded) over the feature vectors of every row that has features
       (a finite, non-zero row); each cluster takes the majority observed genre of its members when
       that genre holds ≥ ``MIN_CLUSTER_SHARE`` of the cluster's observed genres and at least
       ``MIN_CLUSTER_SUPPORT`` members carry it. Confidence = that share. Only observed genres vote
       (artist-imputed ones do not feed the clusters). Above ``KMEANS_FIT_MAX`` rows with features
       k-means is fitted on a seeded sample of that many and every row takes its nearest centre.
    4. ``unknown``: genre "Unknown", confidence 0.0.

    Genres are compared case-insensitively; the output spelling is the most frequent observed one.
    The caller passes features on a comparable scale (e.g. L2-normalised text embeddings, or
    standardised audio vectors).

    track_ids, artists, genres: length n; vectors: (n, d) features (rows that are all-zero or
    non-finite count as "no features"). Returns (n, 4): track_id, genre, genre_source
    (observed/artist/cluster/unknown), genre_confidence, in input order.

    Time O(n) hashing for steps 1, 2 and 4, O(s·k·d·iters + n·k·d) for step 3 (s = fitted rows);
    memory O(n + s·d): the features are read in blocks, never copied whole.
    """
    n = len(track_ids)
    if not (len(artists) == len(genres) == n and vectors.shape[0] == n):
        raise ValueError("track_ids, artists, genres and vectors must have the same length")
    keys = [_key(g) for g in genres]
    spelling: defaultdict[str, Counter] = defaultdict(Counter)
    for g, key in zip(genres, keys):
        if key is not None:
            spelling[key][g.strip()] += 1
    overall = Counter(key for key in keys if key is not None)
    display = {key: forms.most_common(1)[0][0] for key, forms in spelling.items()}

    out_genre: list[str | None] = [display[key] if key else None for key in keys]
    source: list[str | None] = ["observed" if key else None for key in keys]
    conf: list[float | None] = [1.0 if key else None for key in keys]

    # (a) artist
    by_artist: defaultdict[str, Counter] = defaultdict(Counter)
    artist_keys = [_key(a) for a in artists]
    for a, key in zip(artist_keys, keys):
        if a is not None and key is not None:
            by_artist[a][key] += 1
    artist_pick: dict[str, tuple[str, float]] = {}
    for i in range(n):
        a = artist_keys[i]
        if source[i] is not None or a is None or a not in by_artist:
            continue
        if a not in artist_pick:
            counts = by_artist[a]  # the row itself has no genre, so these are the other rows
            best = min(counts, key=lambda g: (-counts[g], -overall[g], g))
            artist_pick[a] = (best, counts[best] / (sum(counts.values()) + 1))
        best, conf[i] = artist_pick[a]
        out_genre[i], source[i] = display[best], "artist"

    # (b) cluster
    for i, (best, share) in _cluster_votes(vectors=vectors, keys=keys, unfilled=[s is None for s in source],
                                           overall=overall, k=k, seed=seed).items():
        out_genre[i], source[i], conf[i] = display[best], "cluster", share

    # (c) unknown
    for i in range(n):
        if source[i] is None:
            out_genre[i], source[i], conf[i] = UNKNOWN_GENRE, "unknown", 0.0
    return pl.DataFrame(
        {S.TRACK_ID: list(track_ids), S.GENRE: out_genre, S.GENRE_SOURCE: source, GENRE_CONFIDENCE: conf},
        schema={S.TRACK_ID: pl.Utf8, S.GENRE: pl.Utf8, S.GENRE_SOURCE: pl.Utf8, GENRE_CONFIDENCE: pl.Float64},
    )
