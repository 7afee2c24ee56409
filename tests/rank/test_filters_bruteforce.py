"""The DuckDB allow-list against a brute-force Python evaluation over many random filter combinations,
and FAISS allow-list search against exact search on the allowed subset (real test bundle, conftest)."""

import random

import numpy as np
import pytest

from pipelines import schema as S
from pipelines.index import search as isearch
from pipelines.rank import recommender as ranking
from tests.helpers import genres_of

N_COMBINATIONS = 150


def _brute_allowed(rows: list[dict], f: ranking.Filters, *, include_unavailable: bool) -> np.ndarray:
    """Row ids passing ``f`` evaluated one row at a time in plain Python (the reference)."""
    want_genres = {g.strip().lower() for g in f.genres}
    drop_genres = {g.strip().lower() for g in f.exclude_genres}
    drop_artists = {a.strip().lower() for a in f.exclude_artists}
    drop_ids = set(f.exclude_track_ids)
    keep = []
    for i, r in enumerate(rows):
        genres = genres_of(r[S.GENRE])
        if not include_unavailable and r[S.URL_STATUS] == "DEAD":
            continue
        if f.min_year is not None and (r[S.YEAR] is None or r[S.YEAR] < f.min_year):
            continue
        if f.max_year is not None and (r[S.YEAR] is None or r[S.YEAR] > f.max_year):
            continue
        if f.genres and not genres & want_genres:
            continue
        if genres & drop_genres:
            continue
        if r[S.ARTIST] is not None and r[S.ARTIST].strip().lower() in drop_artists:
            continue
        if r[S.TRACK_ID] in drop_ids:
            continue
        keep.append(i)
    return np.array(keep, dtype=np.int64)


def _random_filters(rng: random.Random, *, genres: list[str], artists: list[str], ids: list[str]) -> ranking.Filters:
    """A random combination of every filter kind, values drawn from the bundle's own rows."""
    def some(pool: list[str], p: float, k_max: int, *, recase: bool) -> tuple[str, ...]:
        if rng.random() > p:
            return ()
        picked = rng.sample(pool, rng.randint(1, k_max))
        return tuple(x.upper() if recase and rng.random() < 0.3 else x for x in picked)

    return ranking.Filters(
        # No source in the bundle has a year: a year filter must then match nothing.
        min_year=rng.choice([None, None, None, 1990]),
        max_year=rng.choice([None, None, None, 2030]),
        genres=some(genres, 0.5, 3, recase=True),
        exclude_genres=some(genres, 0.5, 3, recase=True),
        exclude_artists=some(artists, 0.4, 4, recase=True),
        exclude_track_ids=some(ids, 0.4, 40, recase=False),
    )


def test_allow_list_matches_brute_force_on_random_filters(rec) -> None:
    tracks = rec.bundle.tracks
    rows = tracks.to_dicts()
    genres = sorted(set().union(*(genres_of(g) for g in tracks[S.GENRE].to_list())))
    artists = sorted(set(tracks[S.ARTIST].drop_nulls().to_list()))
    ids = tracks[S.TRACK_ID].to_list()
    assert len(genres) >= 10 and len(artists) >= 20
    rng = random.Random(20240607)
    sizes = []
    for _ in range(N_COMBINATIONS):
        f = _random_filters(rng, genres=genres, artists=artists, ids=ids)
        include = rng.random() < 0.5
        expected = _brute_allowed(rows, f, include_unavailable=include)
        got = rec.allowed_ids(f, include_unavailable=include)
        np.testing.assert_array_equal(got, expected, err_msg=f"{f} include_unavailable={include}")
        sizes.append(len(expected))
    # the combinations are not all trivial: some keep nothing, some keep most rows
    assert min(sizes) == 0 and max(sizes) > 400 and len(set(sizes)) > 30


def test_exclusions_each_remove_exactly_their_rows(rec) -> None:
    tracks = rec.bundle.tracks
    live = rec.allowed_ids(None)
    dead_id = tracks[S.TRACK_ID][0]  # row 0 is DEAD (conftest test condition)
    live_ids = tracks[S.TRACK_ID].gather(live[:5]).to_list()
    got = rec.allowed_ids(ranking.Filters(exclude_track_ids=(*live_ids, dead_id)))
    np.testing.assert_array_equal(got, live[5:])
    assert 0 in rec.allowed_ids(ranking.Filters(exclude_track_ids=live_ids), include_unavailable=True)
    got = rec.allowed_ids(ranking.Filters(exclude_genres=("METAL",)))
    metal = {i for i, g in enumerate(tracks[S.GENRE].to_list()) if "metal" in genres_of(g)}
    assert metal and not metal & set(got.tolist())
    assert set(live.tolist()) - set(got.tolist()) == metal & set(live.tolist())


def test_unfiltered_allow_lists(rec) -> None:
    status = rec.bundle.tracks[S.URL_STATUS].to_numpy()
    np.testing.assert_array_equal(rec.allowed_ids(None), np.flatnonzero(status != "DEAD"))
    np.testing.assert_array_equal(rec.allowed_ids(ranking.Filters(), include_unavailable=True), np.arange(len(status)))


@pytest.mark.parametrize("small_limit", [isearch.SMALL_ALLOW_LIST, 0])  # restrict-and-remap / IDSelectorBatch
def test_faiss_allow_list_search_is_exact_on_the_subset(rec, embed_cached, monkeypatch, small_limit) -> None:
    monkeypatch.setattr(isearch, "SMALL_ALLOW_LIST", small_limit)
    rng = np.random.default_rng(7)
    n = len(rec.bundle)
    queries = embed_cached(["sad piano", "heavy metal guitar riff", "calm ambient pads", "female vocal pop"])
    va_all = rec.bundle.tracks.select(S.VALENCE, S.AROUSAL).to_numpy().astype(np.float32)
    for size in (1, 3, 10, 40, 150):
        allow = np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)
        k = 8
        # text (inner product)
        scores, ids = isearch.search(index=rec.bundle.text.index, queries=queries, k=k, allow=allow)
        sims = queries @ rec.bundle.text.rows(allow).T
        for qi in range(len(queries)):
            got = ids[qi][ids[qi] >= 0]
            assert set(got.tolist()) <= set(allow.tolist())
            assert len(got) == min(k, size)
            top = np.sort(sims[qi])[::-1][: len(got)]
            np.testing.assert_allclose(scores[qi][: len(got)], top, atol=1e-5)
            np.testing.assert_allclose(queries[qi] @ rec.bundle.text.rows(got).T, top, atol=1e-5)
        # mood (L2 in 2-d)
        target = np.array([[-0.2, 0.3]], np.float32)
        d, mids = isearch.search(index=rec.bundle.mood.index, queries=target, k=k, allow=allow)
        got = mids[0][mids[0] >= 0]
        assert set(got.tolist()) <= set(allow.tolist()) and len(got) == min(k, size)
        ref = np.sort(((va_all[allow] - target) ** 2).sum(1))[: len(got)]
        np.testing.assert_allclose(((va_all[got] - target) ** 2).sum(1), ref, atol=1e-5)


def test_recommend_returns_only_allowed_rows(rec) -> None:
    tracks = rec.bundle.tracks
    rng = random.Random(99)
    genres = sorted(set().union(*(genres_of(g) for g in tracks[S.GENRE].to_list())))
    for _ in range(6):
        f = ranking.Filters(exclude_genres=tuple(rng.sample(genres, 3)),
                            exclude_track_ids=tuple(rng.sample(tracks[S.TRACK_ID].to_list(), 100)))
        include = rng.random() < 0.5
        allowed = set(tracks[S.TRACK_ID].gather(rec.allowed_ids(f, include_unavailable=include)).to_list())
        res = rec.recommend(ranking.RecommendRequest(
            query="energetic rock with drums", top_k=25, filters=f, include_unavailable=include))
        assert res.results and {t.track_id for t in res.results} <= allowed


def test_unfiltered_search_without_selector_matches_the_selector_search(rec, embed_cached) -> None:
    """Unfiltered requests search unrestricted and drop DEAD rows; same results as the allow-list."""
    live = rec.allowed_ids(None)
    q = embed_cached(["dreamy synth pop with female vocals"])
    va = rec.bundle.tracks.select(S.VALENCE, S.AROUSAL).to_numpy().astype(np.float32)
    target = np.array([[0.4, -0.2]], np.float32)
    for k in (5, 50, 300, 600):
        got, got_scores = rec.retriever.search(rec.bundle.text, q[0], k, live)
        _, ref = isearch.search(index=rec.bundle.text.index, queries=q, k=k, allow=live)
        ref = ref[0][ref[0] >= 0]
        assert rec._live[got].all() and len(got) == len(ref) == min(k, len(live))
        np.testing.assert_allclose(rec.bundle.text.rows(got) @ q[0], rec.bundle.text.rows(ref) @ q[0], atol=1e-5)
        # the scores handed to scoring are the similarities of the returned rows' stored vectors
        np.testing.assert_allclose(got_scores, rec.bundle.text.rows(got) @ q[0], atol=1e-5)
        got, _ = rec.retriever.search(rec.bundle.mood, target[0], k, live)
        _, ref = isearch.search(index=rec.bundle.mood.index, queries=target, k=k, allow=live)
        ref = ref[0][ref[0] >= 0]
        assert rec._live[got].all() and len(got) == len(ref)
        np.testing.assert_allclose(((va[got] - target) ** 2).sum(1), ((va[ref] - target) ** 2).sum(1), atol=1e-5)
