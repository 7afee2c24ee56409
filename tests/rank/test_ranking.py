"""Bundle round trip and the online ranking pipeline over a real test bundle (see conftest)."""

import json

import msgspec
import numpy as np
import polars as pl
import pytest

from pipelines import schema as S
from pipelines.embed.sentence import embed_texts
from pipelines.index import bundle as B
from pipelines.index import search as isearch
from pipelines.index.version import write_version
from pipelines.rank import recommender as ranking
from pipelines.rank import rerank, score, types
from tests.helpers import genres_of


def test_bundle_layout_and_manifest(bundle_dir) -> None:
    for name in (B.TRACKS_FILE, B.TEXT_INDEX_FILE, B.MOOD_INDEX_FILE, B.TEXT_VECTORS_FILE,
                 B.AUDIO_VECTORS_FILE, B.QUERY_MOOD_FILE, B.MANIFEST_FILE):
        assert (bundle_dir / name).exists(), name
    assert not (bundle_dir / B.AUDIO_INDEX_FILE).exists()  # no track has audio
    m = json.loads((bundle_dir / B.MANIFEST_FILE).read_text())
    assert m["version"] == "test-v1" and m["counts"]["tracks"] == 500 and m["counts"]["dead_links"] == 50
    assert m["indices"]["text"] == {"dims": 384, "metric": "ip", "factory": "Flat", "ntotal": 500}
    assert m["indices"]["mood"]["dims"] == 2 and m["indices"]["mood"]["metric"] == "l2"
    assert m["indices"]["audio"] is None
    assert set(m["libraries"]) == {"faiss", "numpy", "polars"}
    b = B.load_bundle(bundle_dir)
    assert b.tracks.columns == list(B.BUNDLE_COLUMNS)
    assert isinstance(b.text.vectors, np.memmap) and b.text.vectors.shape == (500, 384)
    assert not b.has_audio.any() and b.has_mood.all()
    np.testing.assert_allclose(np.linalg.norm(b.text.vectors, axis=1), 1.0, atol=1e-5)


def test_write_bundle_replaces_existing_version(tmp_path, bundle_dir) -> None:
    b = B.load_bundle(bundle_dir)
    target = tmp_path / "v"
    for rows in (40, 25):  # second write replaces the first whole
        write_version(
            folder=target, tracks=b.tracks.head(rows), text_vectors=np.asarray(b.text.vectors[:rows]),
            audio_vectors=np.zeros((rows, 0), np.float32), query_mood_model_path=b.query_mood_path,
            extra_manifest={},
        )
    assert B.load_bundle(target).manifest["counts"]["tracks"] == 25
    assert [p.name for p in tmp_path.iterdir()] == ["v"]  # no temp folders left behind
    with pytest.raises(ValueError):
        write_version(folder=tmp_path / "bad", tracks=b.tracks.head(3), text_vectors=np.zeros((2, 384)),
                      audio_vectors=np.zeros((3, 0)), query_mood_model_path=b.query_mood_path)


def test_weights_table_covers_every_query_type() -> None:
    assert set(score.WEIGHTS) == {"mood", "genre", "artist", "attribute", "default"}
    # The rows do not all sum to 1 (the mood row sums to 0.95); scoring renormalises the
    # positive weights per track, so only their ratios matter.
    for w in score.WEIGHTS.values():
        assert min(w.text, w.audio, w.mood, w.collab, w.popularity_penalty) > 0


def test_query_type_from_corpus_lexicons(rec) -> None:
    lx = rec.lexicons
    assert "rock" in lx.genres and "piano" in lx.tags | lx.genres
    assert not any(a.startswith("artist") for a in lx.artists)  # opaque ids are not names
    assert rec.detect_query_type("sad songs for a rainy night")[0] == "mood"
    assert rec.detect_query_type("some rock music")[0] == "genre"
    tag = next(t for t in sorted(lx.tags) if t == "acoustic guitar")
    assert rec.detect_query_type(f"tracks with {tag}")[0] == "attribute"
    assert rec.detect_query_type("xyzzy")[0] == "default"
    # capitalised words are not artists
    assert rec.detect_query_type("Songs Like Nothing Else")[0] != "artist"


class _FixedMood:
    """A query-mood predictor that always answers one (valence, arousal, confidence): a test double
    for the threshold rule only (the real model is tested in test_querymood.py)."""

    def __init__(self, v: float, a: float, c: float) -> None:
        self.row = np.array([[v, a, c]])

    def predict(self, texts, *, embeddings=None):
        return np.repeat(self.row, len(texts), axis=0)


def test_confident_model_mood_makes_a_default_query_a_mood_query(bundle_dir) -> None:
    bundle = B.load_bundle(bundle_dir)
    cases = [((-0.6, -0.1, 0.8), "mood"), ((-0.6, -0.1, 0.2), "default"), ((0.05, 0.1, 0.9), "default")]
    for (v, a, c), expected in cases:
        r = ranking.Recommender(bundle, query_mood=_FixedMood(v, a, c))
        try:
            qu = r.understand("xyzzy plugh")  # no lexicon word: only the model can make it a mood query
            assert qu.query_type == expected, (v, a, c)
        finally:
            r.close()


def test_full_recommendation(rec) -> None:
    res = rec.recommend(ranking.RecommendRequest(query="sad mellow piano ballad", top_k=15))
    assert len(res.results) == 15 and res.query_type == "mood"
    assert res.mood_detected is not None and res.mood_detected.valence < 0.1
    stages = msgspec.structs.asdict(res.metadata.stages)
    assert list(stages) == list(types.STAGES)
    assert all(v >= 0 for v in stages.values()) and res.metadata.total_candidates >= 15
    assert res.metadata.store_version == "test-v1"
    assert len({t.track_id for t in res.results}) == 15
    assert all(t.url_status != "DEAD" for t in res.results)
    # results are relevant by text and mood: their mean cosine to the query beats 75 % of live
    # tracks, their mean distance to the detected mood is below that of 75 % of live tracks
    q = embed_texts(["sad mellow piano ballad"])[0]
    sims = np.asarray(rec.bundle.text.vectors) @ q
    row = {tid: i for i, tid in enumerate(rec.bundle.tracks[S.TRACK_ID].to_list())}
    got = [row[t.track_id] for t in res.results]
    assert sims[got].mean() > np.quantile(sims[rec._live], 0.75)
    dist = np.linalg.norm(rec.priors.va - [res.mood_detected.valence, res.mood_detected.arousal], axis=1)
    assert dist[got].mean() < np.quantile(dist[rec._live], 0.25)
    for t in res.results:
        assert abs(sum(v for k, v in t.signals.items()) - t.score) < 1e-5


def test_artist_spacing(rec) -> None:
    res = rec.recommend(ranking.RecommendRequest(query="electronic ambient", top_k=20))
    artists = [t.artist for t in res.results]
    assert sum(a is not None for a in artists) >= 10
    for i in range(len(artists) - 2):
        window = [a for a in artists[i : i + rerank.ARTIST_WINDOW] if a]
        assert len(window) == len(set(window)), artists


def test_mmr_is_diverse_and_complete(rec) -> None:
    q = embed_texts(["guitar"])[0]
    cand = np.arange(len(rec.bundle), dtype=np.int64)
    cand = cand[rec._live]
    scores = rec.bundle.text.rows(cand) @ q
    order = rec.rerank(cand=cand, scores=scores, k=10)
    assert len(order) == len(set(order.tolist())) == 10
    assert order[0] == int(np.argmax(scores))  # first pick is the most relevant
    picked = rec.bundle.text.rows(cand[order])
    greedy = rec.bundle.text.rows(cand[np.argsort(-scores)[:10]])
    # MMR's picks are less redundant than the plain top 10
    off = ~np.eye(10, dtype=bool)
    assert (picked @ picked.T)[off].mean() <= (greedy @ greedy.T)[off].mean()


def _brute_allowed(tracks: pl.DataFrame, f: ranking.Filters) -> np.ndarray:
    keep = []
    for i, r in enumerate(tracks.iter_rows(named=True)):
        if r[S.URL_STATUS] == "DEAD":
            continue
        if f.min_year is not None and (r[S.YEAR] is None or r[S.YEAR] < f.min_year):
            continue
        if f.max_year is not None and (r[S.YEAR] is None or r[S.YEAR] > f.max_year):
            continue
        if f.genres and not (genres_of(r[S.GENRE]) & {g.lower() for g in f.genres}):
            continue
        if f.exclude_artists and r[S.ARTIST] and r[S.ARTIST].lower() in {a.lower() for a in f.exclude_artists}:
            continue
        keep.append(i)
    return np.array(keep, dtype=np.int64)


@pytest.mark.parametrize("filters", [
    ranking.Filters(genres=("Rock", "electronic")),
    ranking.Filters(exclude_artists=("artist_000014", "ARTIST_000032")),
    ranking.Filters(genres=("pop",), exclude_artists=("artist_000014",)),
    ranking.Filters(min_year=1990),  # no source has a year: nothing can satisfy it
    ranking.Filters(max_year=2020, genres=("rock",)),
])
def test_filters_match_brute_force(rec, filters) -> None:
    expected = _brute_allowed(rec.bundle.tracks, filters)
    np.testing.assert_array_equal(rec.allowed_ids(filters), expected)
    res = rec.recommend(ranking.RecommendRequest(query="energetic rock with drums", top_k=30, filters=filters))
    allowed_ids = set(rec.bundle.tracks[S.TRACK_ID].gather(expected).to_list()) if len(expected) else set()
    assert {t.track_id for t in res.results} <= allowed_ids
    assert len(res.results) == min(30, len(expected))


def test_baseline_equals_exact_inner_product(rec, assert_exact_top_k) -> None:
    query = "upbeat dance track with synth bass"
    res = rec.recommend(ranking.RecommendRequest(query=query, top_k=12, mode="baseline"))
    q = embed_texts([query])[0]
    sims = np.asarray(rec.bundle.text.vectors) @ q
    sims[rec.bundle.tracks[S.URL_STATUS].to_numpy() == "DEAD"] = -np.inf
    assert_exact_top_k(res=[(t.track_id, t.score) for t in res.results], sims=sims,
                       track_ids=rec.bundle.tracks[S.TRACK_ID].to_list(), k=12)
    assert res.mood_detected is None


def test_mood_index_search_is_exact(rec) -> None:
    va = rec.bundle.tracks.select(S.VALENCE, S.AROUSAL).to_numpy().astype(np.float32)
    target = np.array([[-0.3, 0.2]], np.float32)
    _, ids = isearch.search(index=rec.bundle.mood.index, queries=target, k=5)
    d = np.linalg.norm(va - target, axis=1)
    np.testing.assert_allclose(np.sort(d[ids[0]]), np.sort(d)[:5], atol=1e-6)
