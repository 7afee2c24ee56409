"""FAISS indices over row-id-mapped vectors: build (size-adaptive), save/load (mmap), filtered search.

Every index is wrapped in ``IndexIDMap2`` so that search returns the caller's row ids (a track's
row position in the bundle's ``tracks.parquet``), not FAISS's internal insertion order.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

from pipelines import store

Metric = Literal["ip", "l2"]

FLAT_MAX_ROWS = 50_000  # exact search below this many vectors (txtai's rule of thumb)
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 128
# Below this many allowed ids, an exact numpy search over just those rows is cheaper (and exact)
# than an IDSelector over the whole index (HNSW with a tiny allow-list also loses recall).
SMALL_ALLOW_LIST = 2_048


@dataclass(frozen=True)
class VectorSet:
    """Vectors with their id map. ``ids``: (n,) int64 row positions; ``vectors``: (n, d) float32."""

    ids: np.ndarray
    vectors: np.ndarray

    def __post_init__(self) -> None:
        ids = np.ascontiguousarray(self.ids, dtype=np.int64).reshape(-1)
        vecs = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != ids.shape[0]:
            raise ValueError(f"ids {ids.shape} and vectors {vecs.shape} do not align")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("duplicate ids in VectorSet")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "vectors", vecs)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def _faiss_metric(metric: Metric) -> int:
    if metric == "ip":
        return faiss.METRIC_INNER_PRODUCT
    if metric == "l2":
        return faiss.METRIC_L2
    raise ValueError(f"unknown metric {metric!r} (expected 'ip' or 'l2')")


def choose_factory(*, n: int) -> str:
    """Factory string for ``n`` vectors: exact ``Flat`` below 50k, ``HNSW32`` above."""
    return "Flat" if n < FLAT_MAX_ROWS else f"HNSW{HNSW_M}"


def build_index(*, vectors: VectorSet, metric: Metric, factory: str | None = None) -> faiss.Index:
    """An ``IndexIDMap2`` over ``vectors`` (search returns ``vectors.ids``).

    ``factory`` is a FAISS factory string for the inner index (no ``IDMap`` prefix); None chooses
    by size (:func:`choose_factory`). Indices that need training are trained on ``vectors``.
    """
    if vectors.dim < 1:
        raise ValueError("cannot index 0-dimensional vectors")
    factory = factory or choose_factory(n=len(vectors))
    inner = faiss.index_factory(vectors.dim, factory, _faiss_metric(metric))
    hnsw = _hnsw_of(inner)
    if hnsw is not None:
        hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        hnsw.hnsw.efSearch = HNSW_EF_SEARCH
    if not inner.is_trained and len(vectors):
        inner.train(vectors.vectors)
    index = faiss.IndexIDMap2(inner)
    if len(vectors):
        index.add_with_ids(vectors.vectors, vectors.ids)
    return index


def _hnsw_of(index: faiss.Index) -> faiss.IndexHNSW | None:
    index = faiss.downcast_index(index)
    return index if isinstance(index, faiss.IndexHNSW) else None


def _inner(index: faiss.Index) -> faiss.Index:
    index = faiss.downcast_index(index)
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return faiss.downcast_index(index.index)
    return index


def index_factory_string(index: faiss.Index) -> str:
    """A human-readable description of the inner index type (for manifests)."""
    inner = _inner(index)
    if isinstance(inner, faiss.IndexHNSW):
        return f"HNSW{inner.hnsw.nb_neighbors(1)}"
    if isinstance(inner, faiss.IndexFlat):
        return "Flat"
    return type(inner).__name__


def metric_name(index: faiss.Index) -> Metric:
    return "ip" if index.metric_type == faiss.METRIC_INNER_PRODUCT else "l2"


def save_index(*, index: faiss.Index, path: Path) -> Path:
    """Write ``index`` to ``path`` atomically."""
    with store.atomic_path(Path(path), ".faiss") as tmp:
        faiss.write_index(index, str(tmp))
    return Path(path)


def load_index(*, path: Path, mmap: bool = True) -> faiss.Index:
    """Read an index; memory-mapped where the index type supports it, else read into memory."""
    if mmap:
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:
            index = faiss.read_index(str(path))
    else:
        index = faiss.read_index(str(path))
    # read_index already returns the concrete (owning) type; do not re-wrap it, or the owning
    # Python object could be collected while a non-owning wrapper is still in use.
    hnsw = _hnsw_of(_inner(index))
    if hnsw is not None:
        hnsw.hnsw.efSearch = HNSW_EF_SEARCH
    return index


def id_map(index: faiss.Index) -> np.ndarray:
    """(ntotal,) int64 ids stored in an ``IndexIDMap``/``IndexIDMap2`` in insertion order."""
    return faiss.vector_to_array(faiss.downcast_index(index).id_map).astype(np.int64)


def reconstruct_all(index: faiss.Index) -> VectorSet:
    """All stored vectors with their ids (exact for Flat/HNSW-Flat storage)."""
    ids = id_map(index)
    inner = _inner(index)
    vecs = inner.reconstruct_n(0, inner.ntotal) if inner.ntotal else np.zeros((0, index.d), np.float32)
    return VectorSet(ids=ids, vectors=vecs)


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
    *, index: faiss.Index, queries: np.ndarray, k: int, allow: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k search. queries (q, d) float32 → (scores (q, k) float32, ids (q, k) int64).

    ``allow``: optional (m,) int64 ids; only those may be returned. Small allow-lists are searched
    exactly over just those rows (restrict-and-remap); larger ones use ``IDSelectorBatch``.
    Missing slots are id -1 (FAISS convention).
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
        sub = _subset(index=index, ids=allow)
        return exact_search(vectors=sub, queries=q, k=k, metric=metric)
    selector = faiss.IDSelectorBatch(allow)
    inner = _inner(index)
    params = (
        faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_EF_SEARCH, k))
        if isinstance(inner, faiss.IndexHNSW)
        else faiss.SearchParameters(sel=selector)
    )
    scores, ids = index.search(q, k, params=params)
    return scores, ids.astype(np.int64)


def _subset(*, index: faiss.Index, ids: np.ndarray) -> VectorSet:
    """The stored vectors of ``ids`` (those present in the index), reconstructed by id."""
    idx = faiss.downcast_index(index)
    stored = id_map(idx)
    pos = np.full(int(max(stored.max(initial=-1), ids.max(initial=-1))) + 1, -1, dtype=np.int64)
    pos[stored] = np.arange(len(stored))
    p = pos[ids[ids < len(pos)]]
    keep_ids = ids[ids < len(pos)][p >= 0]
    p = p[p >= 0]
    inner = _inner(idx)
    vecs = np.stack([inner.reconstruct(int(i)) for i in p]) if len(p) else np.zeros((0, index.d), np.float32)
    return VectorSet(ids=keep_ids, vectors=vecs)


def recall_at_k(
    *, index: faiss.Index, exact_vectors: VectorSet, sample_queries: np.ndarray, k: int
) -> float:
    """Mean |approx top-k ∩ exact top-k| / k over ``sample_queries`` (q, d)."""
    _, approx = search(index=index, queries=sample_queries, k=k)
    _, exact = exact_search(vectors=exact_vectors, queries=sample_queries, k=k, metric=metric_name(index))
    hits = [len(set(a[a >= 0]) & set(e[e >= 0])) / max(1, int((e >= 0).sum())) for a, e in zip(approx, exact)]
    return float(np.mean(hits)) if hits else 1.0
