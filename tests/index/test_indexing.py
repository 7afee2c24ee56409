"""FAISS indexing: save/load round trip, HNSW recall vs exact on real MiniLM vectors, allow-lists."""

import numpy as np
import pytest

from pipelines.index import build as indexing
from pipelines.index import search as isearch
from pipelines.index.build import VectorSet
from pipelines.index.check import tie_aware_recall


@pytest.fixture(scope="module")
def vset(musiccaps_vectors: np.ndarray) -> VectorSet:
    # Non-contiguous ids so that a wrong id map cannot pass by accident.
    ids = np.arange(len(musiccaps_vectors), dtype=np.int64) * 3 + 7
    return VectorSet(ids=ids, vectors=musiccaps_vectors)


def test_size_adaptive_factory(monkeypatch) -> None:
    monkeypatch.delenv("MOODSCAPE_INDEX_FACTORY", raising=False)
    assert indexing.choose_factory(n=1_000) == "Flat"
    assert indexing.choose_factory(n=60_000) == "IVF1024,SQ8"
    assert indexing.choose_factory(n=1_000_000) == "IVF4096,SQ8"
    monkeypatch.setenv("MOODSCAPE_INDEX_FACTORY", "HNSW32")
    assert indexing.choose_factory(n=60_000) == "HNSW32"
    assert indexing.choose_factory(n=1_000) == "Flat"  # small stores stay exact


def test_ivf_recall_reconstruct_and_exhaustive_scan(vset: VectorSet) -> None:
    # Index 900 real texts in an IVF over fp16 codes; query with 100 held-out texts.
    train = VectorSet(ids=vset.ids[:900], vectors=vset.vectors[:900])
    index = indexing.build_index(vectors=train, metric="ip", factory="IVF16,SQfp16")
    assert indexing.index_factory_string(index) == "IVF16,SQfp16"
    recall = tie_aware_recall(index=index, vectors=train, queries=vset.vectors[900:], k=10)
    assert recall >= 0.9, recall
    np.testing.assert_allclose(
        isearch.reconstruct_rows(index=index, ids=train.ids[::7]), train.vectors[::7], atol=2e-3
    )
    allow = train.ids[::3]
    s, i = isearch.exhaustive_search(index=index, queries=vset.vectors[900:910], k=10, allow=allow)
    es, ei = isearch.exact_search(
        vectors=VectorSet(ids=allow, vectors=train.vectors[::3]), queries=vset.vectors[900:910], k=10, metric="ip"
    )
    np.testing.assert_allclose(s, es, atol=2e-3)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i, ei)]) >= 0.95
    assert set(i.ravel()) <= set(allow)


def test_sq8_codes_decode_by_row_position(tmp_path, vset: VectorSet) -> None:
    # New indices are IndexIDMap (no per-vector hash map); rows decode through row_positions.
    train = VectorSet(ids=vset.ids[:900], vectors=vset.vectors[:900])
    index = indexing.build_index(vectors=train, metric="ip", factory="IVF16,SQ8")
    assert type(index) is indexing.faiss.IndexIDMap
    path = indexing.save_index(index=index, path=tmp_path / "sq8.faiss")
    loaded = indexing.load_index(path=path)
    pos = isearch.row_positions(index=loaded, n_rows=int(train.ids.max()) + 5)
    assert (pos >= 0).sum() == len(train) and pos[train.ids[0] + 1] == -1  # ids are 7, 10, 13, …
    got = isearch.reconstruct_rows(index=loaded, ids=train.ids[::5], positions=pos)
    cos = (got * train.vectors[::5]).sum(1) / np.linalg.norm(got, axis=1)
    assert cos.min() > 0.995, cos.min()
    with pytest.raises(KeyError):
        isearch.reconstruct_rows(index=loaded, ids=np.array([train.ids[0] + 1]), positions=pos)
    # A small allow-list is searched exactly over the decoded rows of just those ids.
    allow = train.ids[10:40]
    _, ids = isearch.search(index=loaded, queries=vset.vectors[950:952], k=5, allow=allow, positions=pos)
    assert set(ids.ravel()) <= set(allow)


def test_legacy_idmap2_bundle_index_still_decodes(tmp_path, vset: VectorSet) -> None:
    # Bundles published before the switch hold IndexIDMap2; they load and decode the same way.
    inner = indexing.faiss.index_factory(vset.dim, "Flat", indexing.faiss.METRIC_INNER_PRODUCT)
    legacy = indexing.faiss.IndexIDMap2(inner)
    legacy.add_with_ids(vset.vectors[:100], vset.ids[:100])
    path = indexing.save_index(index=legacy, path=tmp_path / "legacy.faiss")
    loaded = indexing.load_index(path=path)
    np.testing.assert_allclose(
        isearch.reconstruct_rows(index=loaded, ids=vset.ids[20:30]), vset.vectors[20:30], atol=1e-6
    )


@pytest.mark.parametrize("factory", [None, "HNSW32"])
def test_save_load_round_trip(tmp_path, vset: VectorSet, factory: str | None) -> None:
    index = indexing.build_index(vectors=vset, metric="ip", factory=factory)
    path = indexing.save_index(index=index, path=tmp_path / "text.faiss")
    for mmap in (True, False):
        loaded = indexing.load_index(path=path, mmap=mmap)
        assert loaded.ntotal == len(vset) and loaded.d == vset.dim
        assert indexing.index_factory_string(loaded) == indexing.index_factory_string(index)
        q = vset.vectors[:20]
        s0, i0 = isearch.search(index=index, queries=q, k=10)
        s1, i1 = isearch.search(index=loaded, queries=q, k=10)
        np.testing.assert_array_equal(i0, i1)
        np.testing.assert_allclose(s0, s1, rtol=1e-6)
        assert set(i1.ravel()) <= set(vset.ids)
        np.testing.assert_array_equal(np.sort(indexing.id_map(loaded)), np.sort(vset.ids))


def test_flat_search_equals_numpy(vset: VectorSet) -> None:
    index = indexing.build_index(vectors=vset, metric="ip")
    q = vset.vectors[::50]
    s, i = isearch.search(index=index, queries=q, k=15)
    es, ei = isearch.exact_search(vectors=vset, queries=q, k=15, metric="ip")
    np.testing.assert_allclose(s, es, atol=1e-5)
    assert (i == ei).mean() > 0.99  # ties may swap order
    assert (i[:, 0] == vset.ids[::50]).all()  # each vector's nearest is itself


def test_hnsw_recall_vs_exact(vset: VectorSet) -> None:
    # Index 900 real texts; query with 100 held-out texts (never in the index).
    train = VectorSet(ids=vset.ids[:900], vectors=vset.vectors[:900])
    index = indexing.build_index(vectors=train, metric="ip", factory="HNSW32")
    recall = tie_aware_recall(index=index, vectors=train, queries=vset.vectors[900:], k=10)
    assert recall >= 0.9, recall


def test_l2_search_equals_numpy(vset: VectorSet) -> None:
    rng = np.random.default_rng(0)
    sub = VectorSet(ids=vset.ids, vectors=vset.vectors[:, :2] * 5)  # a 2-d (mood-like) space
    index = indexing.build_index(vectors=sub, metric="l2")
    q = rng.uniform(-1, 1, size=(5, 2)).astype(np.float32)
    s, i = isearch.search(index=index, queries=q, k=7)
    es, ei = isearch.exact_search(vectors=sub, queries=q, k=7, metric="l2")
    np.testing.assert_allclose(s, es, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(i, ei)


@pytest.mark.parametrize("small_limit", [isearch.SMALL_ALLOW_LIST, 10])  # remap path, then IDSelector path
@pytest.mark.parametrize("factory", [None, "HNSW32", "IVF16,SQfp16"])
def test_allow_list_search_equals_brute_force(monkeypatch, vset: VectorSet, small_limit: int, factory) -> None:
    monkeypatch.setattr(isearch, "SMALL_ALLOW_LIST", small_limit)
    index = indexing.build_index(vectors=vset, metric="ip", factory=factory)
    rng = np.random.default_rng(1)
    allow = np.sort(rng.choice(vset.ids, size=150, replace=False))
    mask = np.isin(vset.ids, allow)
    q = vset.vectors[:12]
    s, i = isearch.search(index=index, queries=q, k=10, allow=allow)
    es, ei = isearch.exact_search(
        vectors=VectorSet(ids=vset.ids[mask], vectors=vset.vectors[mask]), queries=q, k=10, metric="ip"
    )
    assert np.isin(i[i >= 0], allow).all()
    if factory == "IVF16,SQfp16":  # every list probed (16 ≤ nprobe) over fp16 codes: exact up to rounding
        np.testing.assert_allclose(s, es, atol=2e-3)
        assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i, ei)]) >= 0.9
    elif factory is None or small_limit > 150:
        np.testing.assert_array_equal(i, ei)
        np.testing.assert_allclose(s, es, atol=1e-5)
    else:  # HNSW + selector is approximate: most of the exact neighbours
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i, ei)])
        assert overlap >= 0.8, overlap


def test_empty_allow_list_and_unknown_ids(vset: VectorSet) -> None:
    index = indexing.build_index(vectors=vset, metric="ip")
    _, i = isearch.search(index=index, queries=vset.vectors[:2], k=5, allow=np.zeros(0, np.int64))
    assert (i == -1).all()
    # ids absent from the index are ignored, present ones still found
    _, i = isearch.search(index=index, queries=vset.vectors[:1], k=5, allow=np.array([1, 2, vset.ids[0]]))
    assert i[0, 0] == vset.ids[0] and (i[0, 1:] == -1).all()


def test_vectorset_validates() -> None:
    with pytest.raises(ValueError):
        VectorSet(ids=np.arange(3), vectors=np.zeros((4, 2)))
    with pytest.raises(ValueError):
        VectorSet(ids=np.array([1, 1]), vectors=np.zeros((2, 2)))
