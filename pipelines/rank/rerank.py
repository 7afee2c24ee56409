"""Re-ranking: MMR over a blended candidate similarity, with artist spacing and version dedup.

MMR: ``λ · score − (1 − λ) · max similarity to the picks so far`` (λ = 1 − diversity). The
similarity of two candidates blends (``SIMILARITY_WEIGHTS``) text cosine, audio cosine, mood
closeness and same artist; a part either candidate lacks (no audio vector, no mood, no artist)
is left out of that pair's blend and the remaining weights are renormalised. Version dedup keeps
one result per artist + canonical title (keys from :mod:`pipelines.rank.dedup`).
"""

from collections.abc import Callable

import numpy as np

from pipelines.rank.types import MMR_LAMBDA

MMR_POOL_MIN = 100  # MMR looks at the best max(MMR_POOL_MIN, 5k) scored candidates
ARTIST_WINDOW = 3  # at most one track per artist in any window of this many results
SIMILARITY_WEIGHTS = {"text": 0.4, "audio": 0.25, "mood": 0.2, "artist": 0.15}
MOOD_SPAN = 2.0 * np.sqrt(2.0)  # the diagonal of the [-1, 1]² mood plane: mood closeness 0 there


def blended_similarity(
    *, text: np.ndarray, artists: np.ndarray, audio: np.ndarray | None = None, moods: np.ndarray | None = None,
    weights: dict[str, float] | None = None,
) -> np.ndarray:
    """(p, p) float32 similarity of p candidates.

    ``text`` (p, dt) unit text vectors; ``artists`` (p,) int64 codes (-1 = unknown); ``audio``
    (p, da) unit audio vectors, an all-zero row = none; ``moods`` (p, 2) valence, arousal (NaN =
    unknown). Parts: text cosine; audio cosine; mood closeness ``1 − distance / MOOD_SPAN``; same
    artist 1 / other 0. Per pair, the weighted mean over the parts both candidates have.
    """
    w = SIMILARITY_WEIGHTS if weights is None else weights
    t = np.asarray(text, np.float32)
    num = np.float32(w["text"]) * (t @ t.T)  # float32 products, as the text search itself
    den = np.full(num.shape, w["text"], np.float32)

    def add(weight: float, has: np.ndarray, sim: np.ndarray) -> None:
        both = np.outer(has, has).astype(np.float32) * np.float32(weight)
        np.add(num, both * sim, out=num)
        np.add(den, both, out=den)

    if audio is not None and w.get("audio", 0.0) > 0:
        a = np.asarray(audio, np.float32)
        add(w["audio"], np.abs(a).sum(axis=1) > 0, a @ a.T)
    if moods is not None and w.get("mood", 0.0) > 0:
        m = np.asarray(moods, np.float32)
        has = ~np.isnan(m).any(axis=1)
        m = np.where(has[:, None], m, 0.0)
        dist = np.hypot(m[:, None, 0] - m[None, :, 0], m[:, None, 1] - m[None, :, 1])
        add(w["mood"], has, 1.0 - dist / np.float32(MOOD_SPAN))
    if w.get("artist", 0.0) > 0:
        add(w["artist"], artists >= 0, (artists[:, None] == artists[None, :]).astype(np.float32))
    return num / den


def mmr(
    *, scores: np.ndarray, k: int, vectors: Callable[[np.ndarray], np.ndarray], artists: np.ndarray,
    versions: np.ndarray, mmr_lambda: float = MMR_LAMBDA,
    audio: Callable[[np.ndarray], np.ndarray] | None = None, moods: np.ndarray | None = None,
) -> np.ndarray:
    """Positions into the c candidates of the k results.

    ``scores`` (c,); ``vectors(positions)`` → (p, d) text vectors of those candidates;
    ``artists`` / ``versions`` (c,) int64 artist and version-key codes (-1 = none);
    ``audio(positions)`` → (p, da) unit audio vectors (zero row = none) and ``moods`` (c, 2)
    valence, arousal (NaN = unknown), both optional (:func:`blended_similarity`).

    The pool's similarity matrix is computed once; the greedy loop runs k times over numpy vectors.
    Artist spacing: a candidate whose artist is among the previous ARTIST_WINDOW-1 picks is skipped
    unless nothing else is left. Version dedup: once a track is picked, every candidate with its
    (artist, canonical title) key is dropped.
    """
    if len(scores) == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    lam = float(mmr_lambda)
    pool_n = min(len(scores), max(MMR_POOL_MIN, 5 * k))
    pool = np.argsort(-scores, kind="stable")[:pool_n]
    artists = artists[pool]
    versions = versions[pool]
    sim = blended_similarity(
        text=vectors(pool), artists=artists, audio=None if audio is None else audio(pool),
        moods=None if moods is None else np.asarray(moods)[pool],
    )
    rel = scores[pool].astype(np.float64)
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
