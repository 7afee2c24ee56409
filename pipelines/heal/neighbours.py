"""Nearest neighbours by inner product (cosine on L2-normalised rows) in memory linear in the rows.

One FAISS index over the base rows, searched in query blocks: no query × base matrix is ever held.
Small searches are exact (``IndexFlatIP``); large ones use an inverted-file index with exact
distances inside the probed lists (``IVF…,Flat``), an approximation that can miss a true neighbour.
"""

from dataclasses import dataclass

import faiss
import numpy as np

# Searches of at most this many query × base pairs are exact (≈ 15 s of BLAS at 50 GFLOP/s, d = 384).
EXACT_MAX_PAIRS = 1_000_000_000
QUERY_BLOCK = 4_096  # queries per FAISS call: results (block, k) and FAISS's own scratch stay bounded
ADD_BLOCK = 65_536  # base rows copied into the index per call (no second full copy of the base)
RESCORE_BLOCK = 1_024  # query rows whose candidates are rescored in float64 at once
IVF_NPROBE = 16
IVF_TRAIN_PER_LIST = 40
IVF_MIN_LISTS, IVF_MAX_LISTS = 64, 16_384


@dataclass(frozen=True)
class Neighbours:
    """``sims`` (q, k) float64 and ``rows`` (q, k) int64 (row numbers of the base; -1 = no hit), each
    row ordered by similarity descending, ties by row number ascending (fewer than k base rows: the
    rest are -1 / -inf). ``exact``: flat search."""

    sims: np.ndarray
    rows: np.ndarray
    exact: bool


def ivf_lists(n_base: int) -> int:
    """Inverted lists for ``n_base`` vectors: the power of two nearest 4·sqrt(n), clipped to [64, 16384]."""
    return int(min(IVF_MAX_LISTS, max(IVF_MIN_LISTS, 2 ** round(np.log2(4 * np.sqrt(max(n_base, 1)))))))


def _index(vectors: np.ndarray, base_rows: np.ndarray, *, exact: bool, seed: int) -> faiss.Index:
    """O(b·d) memory (the index storage); IVF: k-means on ≤ 40 vectors per list first."""
    d = vectors.shape[1]
    if exact:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = ivf_lists(len(base_rows))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        take = min(len(base_rows), nlist * IVF_TRAIN_PER_LIST)
        sample = np.sort(rng.choice(len(base_rows), size=take, replace=False))
        index.train(np.ascontiguousarray(vectors[base_rows[sample]], dtype=np.float32))
        index.nprobe = min(IVF_NPROBE, nlist)
    for start in range(0, len(base_rows), ADD_BLOCK):
        index.add(np.ascontiguousarray(vectors[base_rows[start:start + ADD_BLOCK]], dtype=np.float32))
    return index


def _rescored(vectors: np.ndarray, ids: np.ndarray, base_rows: np.ndarray, part: np.ndarray) -> tuple[np.ndarray, ...]:
    """FAISS hits (block, 2k) → (sims, rows) with similarities recomputed in float64 row by row
    (BLAS kernels round by position, so equal vectors could score apart) and sorted by similarity
    descending, then row ascending. O(block·k·d) time, O(RESCORE_BLOCK·d) memory."""
    hit = ids >= 0
    rows = np.where(hit, base_rows[np.maximum(ids, 0)], -1)
    sims = np.full(rows.shape, -np.inf)
    for start in range(0, len(part), RESCORE_BLOCK):
        query = vectors[part[start:start + RESCORE_BLOCK]]
        for c in range(rows.shape[1]):
            ok = np.flatnonzero(hit[start:start + RESCORE_BLOCK, c])
            sims[start + ok, c] = np.einsum("ij,ij->i", query[ok], vectors[rows[start + ok, c]], dtype=np.float64)
    order = np.lexsort((np.where(hit, rows, np.iinfo(np.int64).max), -sims), axis=-1)
    return np.take_along_axis(sims, order, axis=1), np.take_along_axis(rows, order, axis=1)


def nearest(
    *, vectors: np.ndarray, base_rows: np.ndarray, query_rows: np.ndarray, k: int, exact: bool | None = None,
    block: int = QUERY_BLOCK, seed: int = 0,
) -> Neighbours:
    """The ``k`` base rows most similar to each query row, by inner product of ``vectors`` rows.

    vectors (n, d) float32 (rows L2-normalised for cosine); base_rows (b,), query_rows (q,) int row
    numbers into it (a query may also be a base row: it then finds itself). ``exact`` None: exact
    when q·b ≤ ``EXACT_MAX_PAIRS``, else IVF-Flat with ``IVF_NPROBE`` probes (trained with ``seed``).
    FAISS returns 2k candidates; their similarities are recomputed in float64 and the best k kept,
    so equal vectors tie exactly and the lower row wins.

    Time: exact O(q·b·d) (BLAS); IVF O(b·d·iters) to train plus O(q·b·d·nprobe/nlist) to search.
    Memory: O((b + block·k)·d), i.e. O(n) — the index holds one copy of the base rows and queries
    are gathered and searched ``block`` at a time; never a q × b matrix.
    """
    base_rows = np.asarray(base_rows, dtype=np.int64)
    query_rows = np.asarray(query_rows, dtype=np.int64)
    q = len(query_rows)
    k = max(1, int(k))
    sims = np.full((q, k), -np.inf, dtype=np.float64)
    rows = np.full((q, k), -1, dtype=np.int64)
    if exact is None:
        exact = q * len(base_rows) <= EXACT_MAX_PAIRS
    if q == 0 or len(base_rows) == 0:
        return Neighbours(sims=sims, rows=rows, exact=bool(exact))
    index = _index(vectors, base_rows, exact=bool(exact), seed=seed)
    for start in range(0, q, block):
        part = query_rows[start:start + block]
        found = _rescored(vectors, index.search(np.ascontiguousarray(vectors[part], dtype=np.float32), 2 * k)[1],
                       base_rows, part)
        sims[start:start + len(part)], rows[start:start + len(part)] = found[0][:, :k], found[1][:, :k]
    return Neighbours(sims=sims, rows=rows, exact=bool(exact))


__all__ = ["Neighbours", "nearest", "ivf_lists", "EXACT_MAX_PAIRS", "QUERY_BLOCK"]
