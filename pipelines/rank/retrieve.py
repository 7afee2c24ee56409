"""Retrieval: the text, mood and audio searches of one request, merged into candidates.

The searches (a few hundred hits each) run in a thread pool, restricted to the allow-list; the
union of their ids is the candidate set, minus the seeds (and other versions of them), with at
most ARTIST_CAP_CANDIDATES per artist (those with the best rank in any of the three searches).
The candidates carry their text/audio similarities and their text vectors, so scoring and
re-ranking never search or decode again.
"""

import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.index.bundle import Bundle
from pipelines.index.vector_index import VectorIndex
from pipelines.rank.understand import QueryUnderstanding

RETRIEVAL_K = 300  # per index
AUDIO_SEED_K = 25  # tracks nearest the target mood whose audio vectors form the audio query
ARTIST_CAP_CANDIDATES = 20  # at most this many merged candidates per artist
MOOD_ANCHOR = 0.35  # the mood search looks at least this far out on each axis

_EMPTY = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))


@dataclass
class Candidates:
    """The merged candidates of one request, with their similarities and text vectors.

    ``text_sim`` (c,) float32: inner product of each candidate's text vector with the text query;
    ``audio_sim`` (c,) float32 with the audio query (NaN: no audio vector, or no audio query).
    Similarities the searches returned are reused; the other candidates' vectors were decoded
    once. :meth:`text_vectors` decodes the remaining text vectors on first use, once.
    """

    rows: np.ndarray  # (c,) int64 sorted row ids
    text_sim: np.ndarray
    audio_sim: np.ndarray
    audio_query: np.ndarray | None  # (d,) unit audio query used, or None
    audio_query_source: str  # "seeds" | "target_mood" | "none"
    merged: int  # candidates before the per-artist cap
    text: VectorIndex
    _text_vectors: np.ndarray  # (c, d) float32, valid where _decoded
    _decoded: np.ndarray  # (c,) bool

    def __len__(self) -> int:
        return len(self.rows)

    def decoded_share(self) -> float:
        """Share of the candidates whose text vector has been decoded so far."""
        return float(self._decoded.mean()) if len(self.rows) else 1.0

    def text_vectors(self, positions: np.ndarray) -> np.ndarray:
        """(p, d) float32 text vectors of the candidates at ``positions`` (p,) into :attr:`rows`."""
        positions = np.asarray(positions, dtype=np.int64)
        vecs = self._text_vectors[positions]
        missing = ~self._decoded[positions]
        if missing.any():
            vecs[missing] = self.text.rows(self.rows[positions[missing]])
            self._text_vectors[positions[missing]] = vecs[missing]
            self._decoded[positions[missing]] = True
        return vecs


def _aligned(*, cand: np.ndarray, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(c,) float32: ``values[j]`` at the position of ``ids[j]`` in the sorted ``cand``, NaN elsewhere."""
    out = np.full(len(cand), np.nan, np.float32)
    if len(cand) and len(ids):
        pos = np.minimum(np.searchsorted(cand, ids), len(cand) - 1)
        hit = cand[pos] == ids
        out[pos[hit]] = values[hit]
    return out


def with_vectors(
    *, rows: np.ndarray, bundle: Bundle, text_query: np.ndarray, audio_query: np.ndarray | None,
    audio_query_source: str = "none", merged: int | None = None,
    text_hits: tuple[np.ndarray, np.ndarray] = _EMPTY, audio_hits: tuple[np.ndarray, np.ndarray] = _EMPTY,
) -> Candidates:
    """:class:`Candidates` of sorted ``rows`` (c,): similarities from the searches' ``(ids, scores)``
    hits where given, else from the decoded vectors (text of every other candidate; audio of the
    other candidates that have audio)."""
    c = len(rows)
    text_sim = _aligned(cand=rows, ids=text_hits[0], values=text_hits[1])
    need = np.isnan(text_sim)
    text_vecs = np.zeros((c, len(text_query)), np.float32)
    if need.any():
        text_vecs[need] = bundle.text.rows(rows[need])
        text_sim[need] = text_vecs[need] @ text_query
    audio_sim = np.full(c, np.nan, np.float32)
    if audio_query is not None:
        audio_sim = _aligned(cand=rows, ids=audio_hits[0], values=audio_hits[1])
        need_a = np.isnan(audio_sim) & bundle.has_audio[rows]
        audio_sim[need_a] = bundle.audio.rows(rows[need_a]) @ audio_query
    return Candidates(
        rows=rows, text_sim=text_sim, audio_sim=audio_sim, audio_query=audio_query,
        audio_query_source=audio_query_source, merged=c if merged is None else merged, text=bundle.text,
        _text_vectors=text_vecs, _decoded=need,
    )


def mood_anchor(valence: float, arousal: float) -> np.ndarray:
    """(2,) float32 point the mood search looks around: the target pushed out to at least
    MOOD_ANCHOR on each axis, on its side of 0 (0 counts as positive), so a mild target still
    retrieves tracks that clearly have its kind of mood (scoring treats stronger as no worse)."""
    t = np.array([valence, arousal], dtype=np.float32)
    return (np.where(t >= 0, 1.0, -1.0) * np.maximum(np.abs(t), MOOD_ANCHOR)).astype(np.float32)


def _run_now(fn: Callable[..., Any], *args: Any) -> Future:
    """``fn(*args)`` in this thread, as a completed Future (the pool-less retrieval path)."""
    fut: Future = Future()
    try:
        fut.set_result(fn(*args))
    except Exception as exc:  # re-raised by .result(), as from a pool
        fut.set_exception(exc)
    return fut


class Retriever:
    """The three searches over one bundle (thread-safe; ``max_workers=0`` runs them inline).

    ``live`` (n,) bool: rows whose link is not DEAD; ``live_ids`` the allow-list object an
    unfiltered request passes (compared by identity); ``seed_weight`` (n,) how much each row's
    audio vector counts in a mood-derived audio query (mood confidence × audio confidence);
    ``artist_code`` / ``version_code`` (n,) int64 (-1 = none).
    """

    def __init__(
        self, *, bundle: Bundle, live: np.ndarray, live_ids: np.ndarray, seed_weight: np.ndarray,
        artist_code: np.ndarray, version_code: np.ndarray, max_workers: int = 3,
    ) -> None:
        self.bundle = bundle
        self.seed_weight = seed_weight
        self.artist_code = artist_code
        self.version_code = version_code
        self.set_live(live=live, live_ids=live_ids)
        # max_workers=0: the three searches run one after another in the request's own thread
        # (no hand-offs; under full load that is cheaper, idle it is slower).
        self._pool = (
            ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="retrieval") if max_workers > 0 else None
        )

    def set_live(self, *, live: np.ndarray, live_ids: np.ndarray) -> None:
        """Serve ``live`` (n,) bool from now on; ``live_ids`` the allow-list object of unfiltered requests."""
        self.live = live
        self.live_ids = live_ids
        # Rows that may seed the audio query (have audio and a mood), for unfiltered requests.
        self._seed_ok_live = self.bundle.has_audio & self.bundle.has_mood & live

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def search(
        self, index: VectorIndex | None, query: np.ndarray, k: int, allow: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Row ids (m,) int64 of one query's top ``k`` allowed hits and their FAISS scores (m,)."""
        if index is None or index.ntotal == 0 or len(allow) == 0:
            return _EMPTY
        full = len(allow) == len(self.live)  # every row allowed: no selector needed
        if allow is self.live_ids and not full:
            # Unfiltered request: search without an O(n) selector, over-fetching by the DEAD share,
            # and drop DEAD rows; fall back to the selector only if too few live rows came back.
            over = k + int(math.ceil(2 * k * (1 - len(allow) / len(self.live)))) + 16
            ids, scores = index.search(query, over)
            ok = self.live[ids]
            if ok.sum() >= k or len(ids) < over:
                return ids[ok][:k], scores[ok][:k]
        return index.search(query, k, None if full else allow)

    def audio_query_vector(self, *, valence: float, arousal: float, allow: np.ndarray) -> np.ndarray | None:
        """(d,) unit audio query vector, or None when no track has audio.

        There is no audio in a text query, so the audio query is the confidence-weighted mean of
        the audio vectors of the AUDIO_SEED_K tracks (with audio) nearest the target mood; weights
        are each track's ``seed_weight`` (uniform if all are 0), so recordings outweigh imputations.
        """
        b = self.bundle
        if b.audio is None or b.mood is None:
            return None
        q = np.array([valence, arousal], np.float32)
        ids = np.zeros(0, dtype=np.int64)
        if allow is self.live_ids:
            # Unfiltered request: a wider search without a selector, then keep the eligible rows
            # (exact whenever AUDIO_SEED_K of them are among the nearest 8·AUDIO_SEED_K).
            wide, _ = b.mood.search(q, 8 * AUDIO_SEED_K)
            ids = wide[self._seed_ok_live[wide]][:AUDIO_SEED_K]
        if len(ids) < AUDIO_SEED_K:
            seeds_allow = np.intersect1d(allow, np.flatnonzero(b.has_audio & b.has_mood))
            if len(seeds_allow) == 0:
                return None
            ids, _ = b.mood.search(q, AUDIO_SEED_K, seeds_allow)
        if len(ids) == 0:
            return None
        w = self.seed_weight[ids].astype(np.float64)
        if w.sum() <= 0:
            w = np.ones_like(w)
        vec = (w[:, None] * b.audio.rows(ids)).sum(0) / w.sum()
        norm = np.linalg.norm(vec)
        return (vec / norm).astype(np.float32) if norm > 0 else None

    def seed_audio_vector(self, seed_rows: np.ndarray) -> np.ndarray | None:
        """(d,) unit mean audio vector of the seeds that have audio, or None (no audio index/seed)."""
        b = self.bundle
        if b.audio is None or len(seed_rows) == 0:
            return None
        with_audio = seed_rows[b.has_audio[seed_rows]]
        if len(with_audio) == 0:
            return None
        vec = b.audio.rows(with_audio).astype(np.float64).mean(0)
        norm = np.linalg.norm(vec)
        return (vec / norm).astype(np.float32) if norm > 0 else None

    def retrieve(
        self, qu: QueryUnderstanding, allow: np.ndarray, *, seed_rows: np.ndarray | None = None
    ) -> Candidates:
        """Merged candidates of the text, mood and audio searches, with their vectors. The mood
        search and the mood-derived audio query look around :func:`mood_anchor` of the target.

        ``seed_rows`` (s,) int64: their mean audio vector is the audio query when they have audio;
        they and every other version of them (same dedup key) are removed from the candidates.
        Then at most ARTIST_CAP_CANDIDATES candidates per artist are kept: those with the best
        (lowest) rank in any of the three searches (np.lexsort, no per-row loop).
        """
        b = self.bundle
        seeds = np.zeros(0, np.int64) if seed_rows is None else np.asarray(seed_rows, np.int64)
        k = RETRIEVAL_K + len(seeds)  # the seeds themselves are likely hits: keep k useful results
        target = mood_anchor(qu.valence, qu.arousal)
        submit = self._pool.submit if self._pool is not None else _run_now
        text_f = submit(self.search, b.text, qu.embedding, k, allow)
        mood_f = submit(self.search, b.mood, target, k, allow)
        seed_audio = self.seed_audio_vector(seeds)

        def audio_job() -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray | None, str]:
            if seed_audio is not None:
                qa, source = seed_audio, "seeds"
            else:
                qa = self.audio_query_vector(valence=float(target[0]), arousal=float(target[1]), allow=allow)
                source = "none" if qa is None else "target_mood"
            if qa is None:
                return _EMPTY, None, source
            return self.search(b.audio, qa, k, allow), qa, source

        audio_hits, qa, source = submit(audio_job).result()
        text_hits = text_f.result()
        lists = [text_hits[0], mood_f.result()[0], audio_hits[0]]
        ids = np.concatenate(lists).astype(np.int64)
        ranks = np.concatenate([np.arange(len(x), dtype=np.int64) for x in lists])
        order = np.lexsort((ranks, ids))  # by id, then rank: the first row of an id is its best rank
        ids, ranks = ids[order], ranks[order]
        first = np.r_[True, ids[1:] != ids[:-1]] if len(ids) else np.zeros(0, bool)
        cand, best = ids[first], ranks[first]
        if len(seeds):
            seed_codes = self.version_code[seeds]
            drop = np.isin(cand, seeds) | np.isin(self.version_code[cand], seed_codes[seed_codes >= 0])
            cand, best = cand[~drop], best[~drop]
        merged = len(cand)
        cand = cand[self.artist_cap(cand=cand, best_rank=best, cap=ARTIST_CAP_CANDIDATES)]
        return with_vectors(
            rows=cand, bundle=b, text_query=qu.embedding, audio_query=qa, audio_query_source=source,
            merged=merged, text_hits=text_hits, audio_hits=audio_hits,
        )

    def artist_cap(self, *, cand: np.ndarray, best_rank: np.ndarray, cap: int) -> np.ndarray:
        """(c,) bool: keep at most ``cap`` of each artist's candidates (lowest ``best_rank``); no artist = kept."""
        if len(cand) == 0:
            return np.zeros(0, dtype=bool)
        codes = self.artist_code[cand]
        order = np.lexsort((best_rank, codes))  # by artist, then best rank
        c = codes[order]
        pos = np.arange(len(c))
        starts = np.r_[True, c[1:] != c[:-1]]
        within = pos - np.maximum.accumulate(np.where(starts, pos, 0))  # position inside the artist group
        keep = np.empty(len(cand), dtype=bool)
        keep[order] = (within < cap) | (c < 0)
        return keep
