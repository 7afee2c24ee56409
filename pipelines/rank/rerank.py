"""Re-ranking: MMR over the candidates' text vectors with artist spacing and version dedup.

MMR: ``λ · score − (1 − λ) · max text cosine to the picks so far`` (λ = 1 − diversity). Version
dedup keeps one result per artist + canonical title (keys from :mod:`pipelines.rank.dedup`).
"""

from collections.abc import Callable

import numpy as np

from pipelines.rank.types import MMR_LAMBDA

MMR_POOL_MIN = 100  # MMR looks at the best max(MMR_POOL_MIN, 5k) scored candidates
ARTIST_WINDOW = 3  # at most one track per artist in any window of this many results


def mmr(
    *, scores: np.ndarray, k: int, vectors: Callable[[np.ndarray], np.ndarray], artists: np.ndarray,
    versions: np.ndarray, mmr_lambda: float = MMR_LAMBDA,
) -> np.ndarray:
    """Positions into the c candidates of the k results.

    ``scores`` (c,); ``vectors(positions)`` → (p, d) text vectors of those candidates;
    ``artists`` / ``versions`` (c,) int64 artist and version-key codes (-1 = none).

    The pairwise text-similarity matrix of the pool is one matrix product; the greedy loop runs k
    times over numpy vectors. Artist spacing: a candidate whose artist is among the previous
    ARTIST_WINDOW-1 picks is skipped unless nothing else is left. Version dedup: once a track is
    picked, every candidate with its (artist, canonical title) key is dropped.
    """
    if len(scores) == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    lam = float(mmr_lambda)
    pool_n = min(len(scores), max(MMR_POOL_MIN, 5 * k))
    pool = np.argsort(-scores, kind="stable")[:pool_n]
    vecs = vectors(pool)
    sim = vecs @ vecs.T  # (p, p)
    rel = scores[pool].astype(np.float64)
    artists = artists[pool]
    versions = versions[pool]
    max_sim = np.zeros(pool_n)
    available = np.ones(pool_n, dtype=bool)
    picked: list[int] = []
    for _ in range(min(k, pool_n)):
        mmr_score = np.where(available, lam * rel - (1 - lam) * max_sim, -np.inf)
        recent = artists[picked[-(ARTIST_WINDOW - 1):]] if picked and ARTIST_WINDOW > 1 else artists[:0]
        recent = recent[recent >= 0]
        if len(recent):
            spaced = np.where(np.isin(artists, recent), -np.inf, mmr_score)
            if np.isfinite(spaced).any():
                mmr_score = spaced
        best = int(np.argmax(mmr_score))
        if not np.isfinite(mmr_score[best]):
            break
        picked.append(best)
        available[best] = False
        if versions[best] >= 0:
            available &= versions != versions[best]
        max_sim = sim[best] if len(picked) == 1 else np.maximum(max_sim, sim[best])
    return pool[np.array(picked, dtype=np.int64)]
