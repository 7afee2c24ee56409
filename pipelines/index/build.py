"""FAISS indices over row-id-mapped vectors: build (size-adaptive), save/load (mmap), filtered search.

Every index is wrapped in ``IndexIDMap`` so that search returns the caller's row ids (a track's
row position in the bundle's ``tracks.parquet``), not FAISS's internal insertion order. Decoding
a row's stored vector goes through :func:`row_positions` (a numpy row id → storage position
array, 4 bytes per row) rather than ``IndexIDMap2``'s reverse hash map (measured on a 1M-track
bundle: the three indices' memory at load 151 → 81 MB). Older bundles written with
``IndexIDMap2`` load and work the same way.
"""

import os
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
IVF_NPROBE = 32  # inverted lists probed per query (retrieval); exact scans probe all of them
# Low-dimensional (mood, 2-d) IVF: the nearest few hundred points lie in the few cells nearest
# the query. Measured on a 1M-track synthetic store: recall@300 0.999 at 8 probes (1.000 at 16),
# and each probed list costs ~30 µs, so 32 probes would be 4× the work for nothing.
IVF_NPROBE_LOW_DIM = 8
LOW_DIM_MAX = 4


def default_nprobe(*, dim: int, nlist: int) -> int:
    """Probes per query for an IVF index of ``dim`` dimensions and ``nlist`` lists."""
    return min(IVF_NPROBE_LOW_DIM if dim <= LOW_DIM_MAX else IVF_NPROBE, nlist)
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


def ivf_nlist(*, n: int) -> int:
    """Inverted lists for ``n`` vectors: the power of two nearest 4·sqrt(n), in [256, 65536]."""
    return int(min(65536, max(256, 2 ** round(np.log2(4 * np.sqrt(max(n, 1)))))))


def choose_factory(*, n: int) -> str:
    """Factory string for ``n`` vectors: exact ``Flat`` below 50k, ``IVF<nlist>,SQ8`` above.

    ``MOODSCAPE_INDEX_FACTORY`` overrides the large-store choice (e.g. ``HNSW32`` or
    ``IVF4096,SQfp16``). IVF over 8-bit codes (residuals to the list centroid): trains on a sample,
    holds each vector once (384 B at 384-d, half of fp16) and lets the serving code decode rows
    (``reconstruct_batch``) and scan every list exactly (the baseline), so no separate float32 copy
    of the vectors is needed. Measured on 1M synthetic 384-d rows with real query embeddings, same
    coarse quantizer, 32 probes, one core: SQ8 1.45 ms/query, recall@300 0.947 vs SQfp16 1.53 ms,
    0.951; decoded cosine error ≤ 1.1e-3 (fp16: 7.5e-5). HNSW32 over 1M×384 takes far longer to
    build on 2 cores.
    """
    if n < FLAT_MAX_ROWS:
        return "Flat"
    override = os.environ.get("MOODSCAPE_INDEX_FACTORY", "").strip()
    return override or f"IVF{ivf_nlist(n=n)},SQ8"


def mood_factory(*, n: int) -> str:
    """Factory for the 2-d mood index: exact ``Flat`` below 50k rows, ``IVF<nlist>,Flat`` above.

    An exact scan of 1M 2-d points with a k=300 heap costs ~4 ms per query on one core; IVF
    visits only the ``IVF_NPROBE_LOW_DIM`` cells nearest the target (~2k points at 1M), and in two
    dimensions the nearest few hundred points lie inside those cells, so recall stays ~1 (the
    blocking recall check measures it before publication).
    """
    return "Flat" if n < FLAT_MAX_ROWS else f"IVF{ivf_nlist(n=n)},Flat"


def new_index(*, dim: int, metric: Metric, factory: str, train_vectors: np.ndarray | None = None) -> faiss.Index:
    """An empty (trained) ``IndexIDMap`` of ``factory``; add with ``add_with_ids`` then :func:`finalize_index`.

    ``train_vectors``: (m, dim) float32 sample for indices that need training (IVF, PQ, SQ8).
    """
    if dim < 1:
        raise ValueError("cannot index 0-dimensional vectors")
    inner = faiss.index_factory(dim, factory, _faiss_metric(metric))
    hnsw = _hnsw_of(inner)
    if hnsw is not None:
        hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        hnsw.hnsw.efSearch = HNSW_EF_SEARCH
    ivf = _ivf_of(inner)
    if ivf is not None:
        ivf.nprobe = default_nprobe(dim=int(ivf.d), nlist=int(ivf.nlist))
    if not inner.is_trained and train_vectors is not None and len(train_vectors):
        inner.train(np.ascontiguousarray(train_vectors, dtype=np.float32))
    return faiss.IndexIDMap(inner)


def finalize_index(index: faiss.Index) -> faiss.Index:
    """Make stored vectors reconstructible by storage position (IVF: a direct map) and return ``index``."""
    ivf = _ivf_of(_inner(index))
    if ivf is not None and ivf.ntotal:
        ivf.make_direct_map(True)
    return index


def build_index(*, vectors: VectorSet, metric: Metric, factory: str | None = None) -> faiss.Index:
    """An ``IndexIDMap`` over ``vectors`` (search returns ``vectors.ids``).

    ``factory`` is a FAISS factory string for the inner index (no ``IDMap`` prefix); None chooses
    by size (:func:`choose_factory`). Indices that need training are trained on ``vectors``.
    """
    if vectors.dim < 1:
        raise ValueError("cannot index 0-dimensional vectors")
    factory = factory or choose_factory(n=len(vectors))
    index = new_index(dim=vectors.dim, metric=metric, factory=factory, train_vectors=vectors.vectors)
    if len(vectors):
        index.add_with_ids(vectors.vectors, vectors.ids)
    return finalize_index(index)


def _ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


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
    if isinstance(inner, faiss.IndexIVF):
        inner = faiss.downcast_index(inner)
        codes = {faiss.ScalarQuantizer.QT_fp16: "SQfp16", faiss.ScalarQuantizer.QT_8bit: "SQ8"}
        if isinstance(inner, faiss.IndexIVFScalarQuantizer):
            return f"IVF{inner.nlist},{codes.get(inner.sq.qtype, 'SQ')}"
        if isinstance(inner, faiss.IndexIVFFlat):
            return f"IVF{inner.nlist},Flat"
        if isinstance(inner, faiss.IndexIVFPQ):
            return f"IVF{inner.nlist},PQ{inner.pq.M}"
    return type(inner).__name__


def metric_name(index: faiss.Index) -> Metric:
    return "ip" if index.metric_type == faiss.METRIC_INNER_PRODUCT else "l2"


def save_index(*, index: faiss.Index, path: Path) -> Path:
    """Write ``index`` to ``path`` atomically."""
    with store.atomic_path(Path(path), ".faiss") as tmp:
        faiss.write_index(index, str(tmp))
    return Path(path)


def load_index(*, path: Path, mmap: bool = True) -> faiss.Index:
    """Read an index; memory-mapped where the index type supports it, else read into memory.

    ``IO_FLAG_MMAP_IFC`` maps IVF lists and flat codes in place (``ArrayInvertedLists`` over the
    mapping: pages load on first touch and are shared through the page cache). The older
    ``IO_FLAG_MMAP`` turns IVF lists into ``OnDiskInvertedLists``, measured 2× slower to search
    (1M × 384 SQ8, 32 probes, one core: 2.8 ms vs 1.4 ms per query); it is only the fallback.
    """
    if mmap:
        index = None
        for flags in (faiss.IO_FLAG_MMAP_IFC, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY):
            try:
                index = faiss.read_index(str(path), flags)
                break
            except RuntimeError:
                continue
        if index is None:
            index = faiss.read_index(str(path))
    else:
        index = faiss.read_index(str(path))
    # read_index already returns the concrete (owning) type; do not re-wrap it, or the owning
    # Python object could be collected while a non-owning wrapper is still in use.
    hnsw = _hnsw_of(_inner(index))
    if hnsw is not None:
        hnsw.hnsw.efSearch = HNSW_EF_SEARCH
    ivf = _ivf_of(_inner(index))
    if ivf is not None:
        ivf.nprobe = default_nprobe(dim=int(ivf.d), nlist=int(ivf.nlist))
    return index


def id_map(index: faiss.Index) -> np.ndarray:
    """(ntotal,) int64 ids stored in an ``IndexIDMap``/``IndexIDMap2`` in insertion order."""
    return faiss.vector_to_array(faiss.downcast_index(index).id_map).astype(np.int64)


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
    inner = _inner(index)
    ivf = _ivf_of(inner)
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
    inner = _inner(idx)
    vecs = inner.reconstruct_batch(np.ascontiguousarray(p, dtype=np.int64)) if len(p) else np.zeros((0, index.d), np.float32)
    return VectorSet(ids=keep_ids, vectors=vecs)


def recall_at_k(
    *, index: faiss.Index, exact_vectors: VectorSet, sample_queries: np.ndarray, k: int
) -> float:
    """Mean |approx top-k ∩ exact top-k| / k over ``sample_queries`` (q, d)."""
    _, approx = search(index=index, queries=sample_queries, k=k)
    _, exact = exact_search(vectors=exact_vectors, queries=sample_queries, k=k, metric=metric_name(index))
    hits = [len(set(a[a >= 0]) & set(e[e >= 0])) / max(1, int((e >= 0).sum())) for a, e in zip(approx, exact)]
    return float(np.mean(hits)) if hits else 1.0


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
    return np.ascontiguousarray(_inner(index).reconstruct_batch(p), dtype=np.float32)


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
    inner = _inner(idx)
    bitmap = None
    if allow is not None:
        allow = np.asarray(allow, dtype=np.int64)
        if len(allow) == 0:
            return (np.full((q.shape[0], k), -np.inf, np.float32), np.full((q.shape[0], k), -1, np.int64))
        bitmap = _Bitmap(allow=allow, n_rows=int(n_rows if n_rows is not None else allow.max() + 1))
    sel = None if bitmap is None else bitmap.selector
    ivf = _ivf_of(inner)
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
