"""VectorIndex, one modality's door to its vectors: search, exact scan and row decoding agree with
brute force over real MiniLM vectors, allow-lists are respected, rows without a vector are zero."""

import numpy as np
import pytest

from pipelines.index import build as indexing
from pipelines.index.vector_index import VectorIndex

N_ROWS = 1_100  # row ids 0..N_ROWS-1; the index holds every other row of the first 1 000


@pytest.fixture(scope="module")
def stored(musiccaps_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row ids with a vector, (N_ROWS, d) vectors with zero rows where a row has none)."""
    ids = np.arange(0, 1_000, 2, dtype=np.int64)
    full = np.zeros((N_ROWS, musiccaps_vectors.shape[1]), np.float32)
    full[ids] = musiccaps_vectors[: len(ids)]
    return ids, full


def _index(stored, factory: str, *, published: bool) -> VectorIndex:
    ids, full = stored
    index = indexing.build_index(vectors=indexing.VectorSet(ids=ids, vectors=full[ids]), metric="ip", factory=factory)
    return VectorIndex.over(index, n_rows=N_ROWS, vectors=full if published else None)


def _brute(full: np.ndarray, q: np.ndarray, k: int, allow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sims = full[allow] @ q
    order = np.argsort(-sims, kind="stable")[:k]
    return allow[order], sims[order]


@pytest.mark.parametrize("factory", ["Flat", "IVF8,SQfp16"])
@pytest.mark.parametrize("published", [True, False])
def test_rows_decode_the_stored_vectors_and_zero_rows_without_one(stored, factory, published) -> None:
    ids, full = stored
    vi = _index(stored, factory, published=published)
    assert (vi.present == np.isin(np.arange(N_ROWS), ids)).all() and vi.ntotal == len(ids)
    some = np.array([0, 1, 998, 1_050, 4, 4], dtype=np.int64)  # with, without, past the index, repeated
    atol = 1e-6 if factory == "Flat" or published else 2e-3
    np.testing.assert_allclose(vi.rows(some), full[some], atol=atol)
    assert not vi.rows(np.array([1, 3, 1_099])).any()


@pytest.mark.parametrize("factory", ["Flat", "IVF8,SQfp16"])
def test_search_and_exact_agree_with_brute_force_and_respect_the_allow_list(stored, musiccaps_vectors, factory) -> None:
    ids, full = stored
    queries = musiccaps_vectors[600:605]  # never indexed
    rng = np.random.default_rng(4)
    small = np.sort(rng.choice(ids, size=60, replace=False))
    mixed = np.sort(np.r_[rng.choice(ids, size=300, replace=False), [1, 3, 1_050]])  # some rows have no vector
    for published in (True, False):
        vi = _index(stored, factory, published=published)
        atol = 1e-5 if factory == "Flat" else 3e-3
        for q in queries:
            for allow in (small, mixed):
                got, scores = vi.search(q, 10, allow)
                assert set(got.tolist()) <= set(allow.tolist()) and len(got) == 10
                ref_ids, ref = _brute(full, q, 10, allow[np.isin(allow, ids)])
                np.testing.assert_allclose(scores, ref, atol=atol)
                ex_ids, ex = vi.exact(q, 10, allow)
                assert set(ex_ids.tolist()) <= set(allow.tolist())
                np.testing.assert_allclose(ex, ref, atol=atol)
                if factory == "Flat":
                    np.testing.assert_array_equal(ex_ids, ref_ids)
            every_id, every = vi.exact(q, 10)  # no allow-list: every row
            np.testing.assert_allclose(every, _brute(full, q, 10, ids)[1], atol=atol)
            assert set(every_id.tolist()) <= set(ids.tolist())
            unrestricted, _ = vi.search(q, 10)
            assert len(set(unrestricted.tolist()) & set(every_id.tolist())) >= 8


def test_empty_allow_list_and_search_scores_equal_decoded_rows(stored, musiccaps_vectors) -> None:
    vi = _index(stored, "Flat", published=False)
    q = musiccaps_vectors[700]
    got, scores = vi.search(q, 5, np.zeros(0, np.int64))
    assert len(got) == len(scores) == 0
    got, scores = vi.search(q, 25)
    np.testing.assert_allclose(scores, vi.rows(got) @ q, atol=1e-5)


def test_l2_index_reports_squared_distances(stored) -> None:
    rng = np.random.default_rng(2)
    ids = np.arange(0, 400, dtype=np.int64) * 2
    va = rng.uniform(-1, 1, size=(len(ids), 2)).astype(np.float32)
    index = indexing.build_index(vectors=indexing.VectorSet(ids=ids, vectors=va), metric="l2")
    vi = VectorIndex.over(index, n_rows=1_000)
    target = np.array([0.3, -0.2], np.float32)
    allow = ids[::3]
    got, d = vi.search(target, 7, allow)
    ref = np.sort(((va[::3] - target) ** 2).sum(1))[:7]
    np.testing.assert_allclose(d, ref, atol=1e-6)
    np.testing.assert_allclose(((vi.rows(got) - target) ** 2).sum(1), ref, atol=1e-6)
    ex_ids, ex = vi.exact(target, 7, allow)
    np.testing.assert_allclose(ex, ref, atol=1e-6)
    assert set(ex_ids.tolist()) <= set(allow.tolist())
