"""Searching FAISS indices by row id: top-k with an allow-list, exact and exhaustive scans, row decoding.

Decoding a row's stored vector goes through :func:`row_positions` (a numpy row id → storage
position array, 4 bytes per row) rather than ``IndexIDMap2``'s reverse hash map.
"""

import faiss
import numpy as np

from pipelines.index.build import HNSW_EF_SEARCH, Metric, VectorSet, id_map, inner_index, ivf_of, metric_name

# Below this many allowed ids, an exact numpy search over just those rows is cheaper (and exact)
# than an IDSelector over the whole index (HNSW with a tiny allow-list also loses recall).
SMALL_ALLOW_LIST = 2_048


def row_positions(*, index: faiss.Index, n_rows: int | None = None) -> np.ndarray:
    """(n_rows,) int32: the storage position of each row id in ``index``, -1 where absent.

    ``n_rows`` defaults to the largest stored id + 1; ids ≥ ``n_rows`` are ignored.
    """
    stored = id_map(index)
    n = int(stored.max(initial=-1)) + 1 if n_rows is None else int(n_rows)
    pos = np.full(n, -1, dtype=np.int32)
    keep = stored < n
    pos[stored[keep]] = np.flatnonzero(keep).astype(np.int32)
    return pos


def exact_search(
    *, vectors: VectorSet, queries: np.ndarray, k: int, metric: Metric
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k with numpy. queries (q, d) → scores (q, k) float32, ids (q, k) int64.

    Inner product: higher is better. L2: squared distances, lower is better (as FAISS reports).
    Missing slots (k > n) are padded with id -1 and score -inf (ip) / +inf (l2).
    """
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    n = len(vectors)
    out_s = np.full((q.shape[0], k), -np.inf if metric == "ip" else np.inf, dtype=np.float32)
    out_i = np.full((q.shape[0], k), -1, dtype=np.int64)
    if n == 0 or k == 0:
        return out_s, out_i
    if metric == "ip":
        sims = q @ vectors.vectors.T  # (q, n)
        key = -sims
    else:
        sims = (
            (q * q).sum(1, keepdims=True)
            - 2.0 * q @ vectors.vectors.T
            + (vectors.vectors * vectors.vectors).sum(1)[None, :]
        )
        sims = np.maximum(sims, 0.0)
        key = sims
    kk = min(k, n)
    part = np.argpartition(key, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (q.shape[0], 1))
    order = np.take_along_axis(key, part, axis=1).argsort(axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    out_s[:, :kk] = np.take_along_axis(sims, top, axis=1)
    out_i[:, :kk] = vectors.ids[top]
    return out_s, out_i


def search(
    *, index: faiss.Index, queries: np.ndarray, k: int, allow: np.ndarray | None = None,
    positions: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k search. queries (q, d) float32 → (scores (q, k) float32, ids (q, k) int64).

    ``allow``: optional (m,) int64 ids; only those may be returned. Small allow-lists are searched
    exactly over just those rows (restrict-and-remap); larger ones use an ``IDSelectorBitmap``.
    ``positions``: the index's :func:`row_positions` if the caller keeps them (else derived per
    call for small allow-lists). Missing slots are id -1 (FAISS convention).
    """
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if q.shape[1] != index.d:
        raise ValueError(f"query dim {q.shape[1]} != index dim {index.d}")
    metric = metric_name(index)
    if k <= 0:
        return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
    if index.ntotal == 0:
        return exact_search(vectors=VectorSet(ids=np.zeros(0, np.int64), vectors=np.zeros((0, index.d))),
                            queries=q, k=k, metric=metric)
    if allow is None:
        scores, ids = index.search(q, k)
        return scores, ids.astype(np.int64)
    allow = np.unique(np.asarray(allow, dtype=np.int64))
    if len(allow) == 0:
        return exact_search(vectors=VectorSet(ids=np.zeros(0, np.int64), vectors=np.zeros((0, index.d))),
                            queries=q, k=k, metric=metric)
    if len(allow) <= SMALL_ALLOW_LIST:
        sub = _subset(index=index, ids=allow, positions=positions)
        return exact_search(vectors=sub, queries=q, k=k, metric=metric)
    # A bitmap over the id range is built in ~1 ms even for 1M ids (IDSelectorBatch hashes each id).
    bitmap = _Bitmap(allow=allow, n_rows=int(allow[-1]) + 1)
    selector = bitmap.selector
    inner = inner_index(index)
    ivf = ivf_of(inner)
    if isinstance(inner, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_EF_SEARCH, k))
    elif ivf is not None:
        params = faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
    else:
        params = faiss.SearchParameters(sel=selector)
    scores, ids = index.search(q, k, params=params)
    del bitmap
    return scores, ids.astype(np.int64)


def _subset(*, index: faiss.Index, ids: np.ndarray, positions: np.ndarray | None = None) -> VectorSet:
    """The stored vectors of ``ids`` (those present in the index), decoded by storage position."""
    idx = faiss.downcast_index(index)
    pos = row_positions(index=idx) if positions is None else positions
    p = pos[ids[ids < len(pos)]].astype(np.int64)
    keep_ids = ids[ids < len(pos)][p >= 0]
    p = p[p >= 0]
    inner = inner_index(idx)
    if not len(p):
        return VectorSet(ids=keep_ids, vectors=np.zeros((0, index.d), np.float32))
    vecs = inner.reconstruct_batch(np.ascontiguousarray(p, dtype=np.int64))
    return VectorSet(ids=keep_ids, vectors=vecs)


def reconstruct_rows(*, index: faiss.Index, ids: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
    """(len(ids), d) float32 stored vectors of row ``ids`` (every id must be in the index).

    Decoded from the index storage (exact for Flat/HNSW-Flat, fp16-rounded for ``SQfp16``, 8-bit
    for ``SQ8``). ``positions``: the index's :func:`row_positions` (derived per call if None).
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    pos = row_positions(index=index) if positions is None else positions
    if ids.max() >= len(pos) or ids.min() < 0 or (pos[ids] < 0).any():
        raise KeyError("reconstruct_rows: some ids are not in the index")
    p = np.ascontiguousarray(pos[ids], dtype=np.int64)
    return np.ascontiguousarray(inner_index(index).reconstruct_batch(p), dtype=np.float32)


class _Bitmap:
    """An ``IDSelectorBitmap`` over ids 0..n_rows-1 that keeps its bit array alive."""

    def __init__(self, *, allow: np.ndarray, n_rows: int) -> None:
        mask = np.zeros(n_rows, dtype=bool)
        mask[np.asarray(allow, dtype=np.int64)] = True
        self.bits = np.packbits(mask, bitorder="little")
        self.selector = faiss.IDSelectorBitmap(len(self.bits), faiss.swig_ptr(self.bits))


def exhaustive_search(
    *, index: faiss.Index, queries: np.ndarray, k: int, allow: np.ndarray | None = None, n_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Scan every stored vector (IVF: all lists; HNSW: its flat storage) — exact over the stored codes.

    queries (q, d) → (scores (q, k), ids (q, k)); ``allow`` (m,) ids restrict the scan (a bitmap over
    ``n_rows`` ids, default max id + 1). Missing slots are id -1.
    """
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    idx = faiss.downcast_index(index)
    inner = inner_index(idx)
    bitmap = None
    if allow is not None:
        allow = np.asarray(allow, dtype=np.int64)
        if len(allow) == 0:
            return (np.full((q.shape[0], k), -np.inf, np.float32), np.full((q.shape[0], k), -1, np.int64))
        bitmap = _Bitmap(allow=allow, n_rows=int(n_rows if n_rows is not None else allow.max() + 1))
    sel = None if bitmap is None else bitmap.selector
    ivf = ivf_of(inner)
    if ivf is not None:
        params = faiss.SearchParametersIVF(nprobe=ivf.nlist, sel=sel)
        scores, ids = idx.search(q, k, params=params)
    elif isinstance(inner, faiss.IndexHNSW):
        storage = faiss.downcast_index(inner.storage)
        stored = id_map(idx) if isinstance(idx, (faiss.IndexIDMap, faiss.IndexIDMap2)) else None
        if stored is not None and allow is not None:
            # The storage is addressed by insertion order: translate the allow-list.
            pos = np.full(int(max(stored.max(initial=-1), allow.max())) + 1, -1, dtype=np.int64)
            pos[stored] = np.arange(len(stored))
            inner_allow = pos[allow[allow < len(pos)]]
            inner_allow = inner_allow[inner_allow >= 0]
            bitmap = _Bitmap(allow=inner_allow, n_rows=int(storage.ntotal))
            sel = bitmap.selector
        scores, ids = storage.search(q, k, params=None if sel is None else faiss.SearchParameters(sel=sel))
        if stored is not None:
            ids = np.where(ids >= 0, stored[np.maximum(ids, 0)], -1)
    else:
        scores, ids = idx.search(q, k, params=None if sel is None else faiss.SearchParameters(sel=sel))
    del bitmap
    return scores, ids.astype(np.int64)
