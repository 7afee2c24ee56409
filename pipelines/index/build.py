"""FAISS indices over row-id-mapped vectors: factory choice (size-adaptive), build, save/load (mmap).

Every index is wrapped in ``IndexIDMap`` so that search returns the caller's row ids (a track's
row position in the bundle's ``tracks.parquet``), not FAISS's internal insertion order. Searching
and decoding rows is :mod:`pipelines.index.search`. Older bundles written with ``IndexIDMap2``
load and work the same way.
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
# the query, so a few probes keep recall ~1 (figures: docs/PRODUCTION.md, "Index layout").
IVF_NPROBE_LOW_DIM = 8
LOW_DIM_MAX = 4


def default_nprobe(*, dim: int, nlist: int) -> int:
    """Probes per query for an IVF index of ``dim`` dimensions and ``nlist`` lists."""
    return min(IVF_NPROBE_LOW_DIM if dim <= LOW_DIM_MAX else IVF_NPROBE, nlist)


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
    of the vectors is needed (SQ8 vs SQfp16 figures: docs/PRODUCTION.md, "Index layout").
    """
    if n < FLAT_MAX_ROWS:
        return "Flat"
    override = os.environ.get("MOODSCAPE_INDEX_FACTORY", "").strip()
    return override or f"IVF{ivf_nlist(n=n)},SQ8"


def mood_factory(*, n: int) -> str:
    """Factory for the 2-d mood index: exact ``Flat`` below 50k rows, ``IVF<nlist>,Flat`` above.

    IVF visits only the ``IVF_NPROBE_LOW_DIM`` cells nearest the target (~2k points at 1M), and in two
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
    ivf = ivf_of(inner)
    if ivf is not None:
        ivf.nprobe = default_nprobe(dim=int(ivf.d), nlist=int(ivf.nlist))
    if not inner.is_trained and train_vectors is not None and len(train_vectors):
        inner.train(np.ascontiguousarray(train_vectors, dtype=np.float32))
    return faiss.IndexIDMap(inner)


def finalize_index(index: faiss.Index) -> faiss.Index:
    """Make stored vectors reconstructible by storage position (IVF: a direct map) and return ``index``."""
    ivf = ivf_of(inner_index(index))
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


def ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _hnsw_of(index: faiss.Index) -> faiss.IndexHNSW | None:
    index = faiss.downcast_index(index)
    return index if isinstance(index, faiss.IndexHNSW) else None


def inner_index(index: faiss.Index) -> faiss.Index:
    index = faiss.downcast_index(index)
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return faiss.downcast_index(index.index)
    return index


def index_factory_string(index: faiss.Index) -> str:
    """A human-readable description of the inner index type (for manifests)."""
    inner = inner_index(index)
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
    ``IO_FLAG_MMAP`` turns IVF lists into ``OnDiskInvertedLists``, which searches slower
    (docs/PRODUCTION.md, "Index layout"); it is only the fallback.
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
    hnsw = _hnsw_of(inner_index(index))
    if hnsw is not None:
        hnsw.hnsw.efSearch = HNSW_EF_SEARCH
    ivf = ivf_of(inner_index(index))
    if ivf is not None:
        ivf.nprobe = default_nprobe(dim=int(ivf.d), nlist=int(ivf.nlist))
    return index


def id_map(index: faiss.Index) -> np.ndarray:
    """(ntotal,) int64 ids stored in an ``IndexIDMap``/``IndexIDMap2`` in insertion order."""
    return faiss.vector_to_array(faiss.downcast_index(index).id_map).astype(np.int64)
