"""The tie-aware recall check that gates publication: ties count as hits, real misses do not."""

import numpy as np
import pytest

from pipelines.index import build as indexing
from pipelines.index import search as isearch
from pipelines.index.check import tie_aware_recall


def _mood_points(n_distinct: int, copies: int) -> indexing.VectorSet:
    """2-d points, each repeated ``copies`` times under different ids (as equal moods are)."""
    rng = np.random.default_rng(11)
    base = rng.uniform(-1, 1, size=(n_distinct, 2)).astype(np.float32)
    vecs = np.repeat(base, copies, axis=0)
    return indexing.VectorSet(ids=np.arange(len(vecs), dtype=np.int64) * 5 + 1, vectors=vecs)


def test_exact_index_has_recall_one_even_with_duplicate_vectors() -> None:
    vs = _mood_points(50, copies=4)
    index = indexing.build_index(vectors=vs, metric="l2", factory="Flat")
    queries = np.random.default_rng(1).uniform(-1, 1, size=(30, 2)).astype(np.float32)
    assert tie_aware_recall(index=index, vectors=vs, queries=queries, k=6) == 1.0


def test_duplicates_returned_instead_of_the_exact_ids_count_as_hits() -> None:
    # The index holds only the second copy of each duplicated point: its nearest id may differ
    # from the exact search's, but the vector is the same, so it is a hit.
    vs = _mood_points(40, copies=2)
    second_copies = indexing.VectorSet(ids=vs.ids[1::2], vectors=vs.vectors[1::2])
    index = indexing.build_index(vectors=second_copies, metric="l2", factory="Flat")
    queries = vs.vectors[::2][:10] + np.float32(1e-3)
    assert tie_aware_recall(index=index, vectors=vs, queries=queries, k=1) == 1.0
    # an id comparison would have punished it: the exact search breaks some ties the other way
    _, exact = isearch.exact_search(vectors=vs, queries=queries, k=1, metric="l2")
    _, approx = index.search(queries, 1)
    assert (approx[:, 0] != exact[:, 0]).any()


def test_a_real_miss_lowers_recall() -> None:
    # The index lacks the true nearest neighbour of each query: a real miss, not a tie.
    vs = _mood_points(200, copies=1)
    queries = vs.vectors[:20] + np.float32(1e-4)
    missing = np.isin(np.arange(len(vs)), np.arange(20))
    partial = indexing.VectorSet(ids=vs.ids[~missing], vectors=vs.vectors[~missing])
    index = indexing.build_index(vectors=partial, metric="l2", factory="Flat")
    recall = tie_aware_recall(index=index, vectors=vs, queries=queries, k=1)
    assert recall == pytest.approx(0.0)
    recall = tie_aware_recall(index=index, vectors=vs, queries=queries, k=4)
    assert 0.5 <= recall < 1.0


def test_inner_product_index_recall() -> None:
    rng = np.random.default_rng(3)
    v = rng.normal(size=(500, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    vs = indexing.VectorSet(ids=np.arange(500, dtype=np.int64), vectors=v)
    index = indexing.build_index(vectors=vs, metric="ip", factory="Flat")
    assert tie_aware_recall(index=index, vectors=vs, queries=v[:25], k=5) == 1.0
