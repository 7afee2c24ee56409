"""One modality's vectors (text, audio or mood) behind one object: search, exact scan, row decoding.

Row ids are row positions in the bundle's ``tracks.parquet``. The vectors live in the FAISS index
storage, and for small bundles also in a memory-mapped ``.npy`` copy (``vectors``); :meth:`rows`
reads whichever is there (the index storage decodes exactly for Flat/HNSW-Flat, fp16-rounded for
SQfp16, 8-bit for SQ8).
"""

from dataclasses import dataclass

import faiss
import numpy as np

from pipelines.index import search as index_search
from pipelines.index.build import VectorSet, metric_name


@dataclass(frozen=True)
class VectorIndex:
    """The vectors of one modality over ``n_rows`` rows.

    ``index``: an ``IndexIDMap`` over the rows that have a vector; ``positions``: (n_rows,) int32
    row id → storage position in ``index`` (-1 = no vector); ``vectors``: (n_rows, d) float32 copy
    (zero rows = no vector), or None when only the index stores them.
    """

    index: faiss.Index
    positions: np.ndarray
    vectors: np.ndarray | None = None

    @classmethod
    def over(cls, index: faiss.Index, *, n_rows: int, vectors: np.ndarray | None = None) -> "VectorIndex":
        return cls(index=index, positions=index_search.row_positions(index=index, n_rows=n_rows), vectors=vectors)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def n_rows(self) -> int:
        return len(self.positions)

    @property
    def present(self) -> np.ndarray:
        """(n_rows,) bool: rows stored in the index."""
        return self.positions >= 0

    def search(self, query: np.ndarray, k: int, allow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Row ids (m,) int64 of one query's top ``k`` hits (only ``allow``, (a,) int64 sorted row ids,
        when given) and their scores (m,) float32 (inner product, or squared L2 for ``l2`` indices)."""
        scores, ids = index_search.search(index=self.index, queries=np.asarray(query, np.float32).reshape(1, -1), k=k,
                               allow=allow, positions=self.positions)
        ok = ids[0] >= 0
        return ids[0][ok], scores[0][ok]

    def exact(self, query: np.ndarray, k: int, allow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`search` but exact over the stored vectors (IVF: every list; None = every row).

        Scores are inner products, or squared L2 distances for ``l2`` indices.
        """
        q = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if self.vectors is not None:
            ids = np.arange(self.n_rows, dtype=np.int64) if allow is None else np.asarray(allow, np.int64)
            scores, got = index_search.exact_search(vectors=VectorSet(ids=ids, vectors=self.rows(ids)), queries=q, k=k,
                                         metric=metric_name(self.index))
        else:
            scores, got = index_search.exhaustive_search(index=self.index, queries=q, k=k, allow=allow,
                                                         n_rows=self.n_rows)
        ok = got[0] >= 0
        return got[0][ok], scores[0][ok]

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), d) float32 vectors of row ``ids``; zero rows for rows without a vector."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if self.vectors is not None:
            return np.asarray(self.vectors[ids], dtype=np.float32)
        present = self.positions[ids] >= 0
        if present.all():
            return index_search.reconstruct_rows(index=self.index, ids=ids, positions=self.positions)
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        if present.any():
            out[present] = index_search.reconstruct_rows(index=self.index, ids=ids[present], positions=self.positions)
        return out
