"""Nearest neighbours by inner product (cosine on L2-normalised rows) in memory linear in the rows.

Small searches are exact: one FAISS ``IndexFlatIP`` over the base rows, searched in query blocks, so
no query × base matrix is ever held. Large ones are inverted-file searches (FAISS k-means cells,
exact scores inside the probed cells) run cell by cell as BLAS products — an approximation that
can miss a true neighbour lying in an unprobed cell."""

from dataclasses import dataclass

import faiss
import numpy as np

# Searches of at most this many query × base pairs are exact (4·10¹¹ multiply-adds at d = 384).
EXACT_MAX_PAIRS = 1_000_000_000
QUERY_BLOCK = 4_096  # queries per FAISS call: results (block, k) and FAISS's own scratch stay bounded
ADD_BLOCK = 65_536  # base rows copied into the index per call (no second full copy of the base)
RESCORE_BLOCK = 1_024  # query rows whose candidates are rescored in float64 at once
IVF_NPROBE = 8  # cells searched per query
IVF_TRAIN_PER_LIST = 40  # k-means sample rows per cell
IVF_TRAIN_ITERATIONS = 10
IVF_MIN_LISTS, IVF_MAX_LISTS = 16, 4_096
CELL_BLOCK_CELLS = 8_000_000  # query × cell-row scores held at once (32 MB)


@dataclass(frozen=True)
class Neighbours:
    """``sims`` (q, k) float64 and ``rows`` (q, k) int64 (row numbers of the base; -1 = no hit), each
    row ordered by similarity descending, ties by row number ascending (fewer than k base rows: the
    rest are -1 / -inf). ``exact``: flat search."""

    sims: np.ndarray
    rows: np.ndarray
    exact: bool


def ivf_lists(n_base: int) -> int:
    """Cells for ``n_base`` vectors: the power of two nearest sqrt(n), clipped to [16, 4096]."""
    return int(min(IVF_MAX_LISTS, max(IVF_MIN_LISTS, 2 ** round(np.log2(np.sqrt(max(n_base, 1)))))))


def _flat(vectors: np.ndarray, rows: np.ndarray) -> faiss.IndexFlatIP:
    """An exact index over ``rows``, filled ``ADD_BLOCK`` rows at a time. O(b·d) memory."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    for start in range(0, len(rows), ADD_BLOCK):
        index.add(np.ascontiguousarray(vectors[rows[start:start + ADD_BLOCK]], dtype=np.float32))
    return index


def _cells(vectors: np.ndarray, rows: np.ndarray, centroids: faiss.IndexFlatIP, n: int) -> np.ndarray:
    """(len(rows), n) ids of the ``n`` most similar centroids of each row, in query blocks."""
    out = np.empty((len(rows), n), dtype=np.int64)
    for start in range(0, len(rows), QUERY_BLOCK):
        part = np.ascontiguousarray(vectors[rows[start:start + QUERY_BLOCK]], dtype=np.float32)
        out[start:start + len(part)] = centroids.search(part, n)[1]
    return out


def _by_cell(cells: np.ndarray, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """(item positions sorted by cell, start offset of each cell (n_cells + 1,))."""
    order = np.argsort(cells, kind="stable")
    return order, np.searchsorted(cells[order], np.arange(n_cells + 1))


def _ivf_search(vectors: np.ndarray, base_rows: np.ndarray, query_rows: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(q, k) base positions (-1 = none) of each query's best hits among the base rows of its
    ``IVF_NPROBE`` nearest cells. FAISS k-means (``IVF_TRAIN_PER_LIST`` sampled rows per cell, seeded)
    places the cells; then, cell by cell, the queries probing it × the cell's rows is one BLAS
    product (at most ``CELL_BLOCK_CELLS`` scores at once) merged into a running top k per query.
    Time O((b + q)·c·d) to train and assign plus O(q·d·b·nprobe/c) to score (c cells); memory
    O(q·(k + nprobe) + CELL_BLOCK_CELLS + largest cell·d)."""
    d, b = vectors.shape[1], len(base_rows)
    n_cells = min(ivf_lists(b), b)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(b, size=min(b, n_cells * IVF_TRAIN_PER_LIST), replace=False))
    km = faiss.Kmeans(d, n_cells, niter=IVF_TRAIN_ITERATIONS, seed=seed, spherical=True)
    km.train(np.ascontiguousarray(vectors[base_rows[sample]], dtype=np.float32))
    centroids = faiss.IndexFlatIP(d)
    centroids.add(km.centroids)
    nprobe = min(IVF_NPROBE, n_cells)
    members, member_start = _by_cell(_cells(vectors, base_rows, centroids, 1)[:, 0], n_cells)
    asks, ask_start = _by_cell(_cells(vectors, query_rows, centroids, nprobe).reshape(-1), n_cells)
    asks //= nprobe  # flat (query, probe) position → query
    best_s = np.full((len(query_rows), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(query_rows), k), -1, dtype=np.int64)
    for cell in range(n_cells):
        mine = members[member_start[cell]:member_start[cell + 1]]
        who = asks[ask_start[cell]:ask_start[cell + 1]]
        if len(mine) == 0 or len(who) == 0:
            continue
        x = np.ascontiguousarray(vectors[base_rows[mine]], dtype=np.float32).T
        top = min(k, len(mine))
        step = max(1, CELL_BLOCK_CELLS // len(mine))
        for start in range(0, len(who), step):
            qs = who[start:start + step]
            scores = np.asarray(vectors[query_rows[qs]], dtype=np.float32) @ x
            pick = (np.argpartition(-scores, top - 1, axis=1)[:, :top] if top < len(mine)
                    else np.broadcast_to(np.arange(len(mine)), scores.shape))
            both_s = np.concatenate([best_s[qs], np.take_along_axis(scores, pick, axis=1)], axis=1)
            both_i = np.concatenate([best_i[qs], mine[pick]], axis=1)
            keep = np.argpartition(-both_s, k - 1, axis=1)[:, :k]
            best_s[qs] = np.take_along_axis(both_s, keep, axis=1)
            best_i[qs] = np.take_along_axis(both_i, keep, axis=1)
    return best_i


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
    when q·b ≤ ``EXACT_MAX_PAIRS``, else the cell search of ``_ivf_search`` (trained with ``seed``).
    FAISS returns 2k candidates; their similarities are recomputed in float64 and the best k kept,
    so equal vectors tie exactly and the lower row wins.

    Time: exact O(q·b·d) (BLAS); cells O((b + q)·c·d) to train and assign plus O(q·b·d·nprobe/c).
    Memory: O((b + block·k)·d), i.e. O(n) — the flat index holds one copy of the base rows and
    queries are searched ``block`` at a time; the cell search holds O(q·k) results. Never a q × b
    matrix.
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
    index = _flat(vectors, base_rows) if exact else None
    hits = None if exact else _ivf_search(vectors, base_rows, query_rows, 2 * k, seed)
    for start in range(0, q, block):
        part = query_rows[start:start + block]
        ids = (hits[start:start + block] if hits is not None
               else index.search(np.ascontiguousarray(vectors[part], dtype=np.float32), 2 * k)[1])
        found = _rescored(vectors, ids, base_rows, part)
        sims[start:start + len(part)], rows[start:start + len(part)] = found[0][:, :k], found[1][:, :k]
    return Neighbours(sims=sims, rows=rows, exact=bool(exact))


__all__ = ["Neighbours", "nearest", "ivf_lists", "EXACT_MAX_PAIRS", "QUERY_BLOCK"]
