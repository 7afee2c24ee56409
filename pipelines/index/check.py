"""Recall of an (approximate) index against exact search, tie-aware.

A returned neighbour counts as a hit when its exact score is at least as good as the exact k-th
best score: with duplicate vectors (common in the 2-d mood space) several ids are equally right,
and an id-set comparison would punish a correct index for breaking ties differently.
"""

import faiss
import numpy as np

from pipelines.index.build import VectorSet, metric_name
from pipelines.index.search import exact_search, search


def tie_aware_recall(
    *, index: faiss.Index, vectors: VectorSet, queries: np.ndarray, k: int, eps: float = 1e-5
) -> float:
    """Mean fraction of the index's top-k whose true score ties or beats the exact k-th score."""
    metric = metric_name(index)
    _, approx = search(index=index, queries=queries, k=k)
    exact_scores, _ = exact_search(vectors=vectors, queries=queries, k=k, metric=metric)
    pos = {int(i): j for j, i in enumerate(vectors.ids)}
    hits = []
    for q, row_ids, ex in zip(queries, approx, exact_scores):
        kth = ex[np.isfinite(ex)][-1] if np.isfinite(ex).any() else None
        valid = [int(i) for i in row_ids if i >= 0]
        if kth is None:
            hits.append(1.0)
            continue
        vec = vectors.vectors[[pos[i] for i in valid]] if valid else np.zeros((0, vectors.dim), np.float32)
        if metric == "ip":
            good = (vec @ q) >= kth - eps
        else:
            good = ((vec - q) ** 2).sum(axis=1) <= kth + eps
        hits.append(float(good.sum()) / int(np.isfinite(ex).sum()))
    return float(np.mean(hits)) if hits else 1.0
