"""POST /recommend options over the real test bundle: seeds, target mood, diversity, explanations,
unavailable tracks, exclusion filters, and the response cache header."""

import polars as pl
import pytest

from pipelines import schema as S
from serving.cache import ResponseCache
from tests.helpers import genres_of, serving_client
from tests.helpers import result_ids as _ids


@pytest.fixture(scope="module")
def client(bundle_dir, mood_adapter):
    with serving_client(bundle_dir=bundle_dir, mood_adapter=mood_adapter, cache=ResponseCache(capacity=64)) as c:
        yield c


def test_seeds_are_never_returned_and_steer_results(client, tracks) -> None:
    live = tracks.filter(pl.col(S.URL_STATUS) != "DEAD")
    seeds = live[S.TRACK_ID].head(3).to_list()
    plain = _ids(client.post("/recommend", json={"query": "music", "top_k": 30}))
    seeded = _ids(client.post("/recommend", json={"query": "music", "top_k": 30, "seed_track_ids": seeds}))
    assert len(seeded) == 30 and not set(seeds) & set(seeded)
    assert plain != seeded


def test_target_mood_overrides_detected_mood(client) -> None:
    happy = client.post("/recommend", json={"query": "music", "top_k": 15, "target": {"valence": 0.9, "arousal": 0.8}})
    sad = client.post("/recommend", json={"query": "music", "top_k": 15, "target": {"valence": -0.9, "arousal": -0.8}})
    assert happy.status_code == sad.status_code == 200, (happy.text, sad.text)
    mean_v = [sum(t["mood"]["valence"] for t in r.json()["results"]) / 15 for r in (happy, sad)]
    assert mean_v[0] > mean_v[1]
    assert happy.json()["audio_query_source"] in {"seeds", "target_mood", "none"}


def test_explain_fills_explanations_only_when_asked(client) -> None:
    plain = client.post("/recommend", json={"query": "sad piano", "top_k": 5}).json()
    assert all(t["explanation"] is None for t in plain["results"])
    explained = client.post("/recommend", json={"query": "sad piano", "top_k": 5, "explain": True}).json()
    for t in explained["results"]:
        assert isinstance(t["explanation"], dict) and t["explanation"]
        assert all(isinstance(v, float) for v in t["explanation"].values())


def test_diversity_bounds_accepted(client) -> None:
    for d in (0.0, 1.0):
        assert len(_ids(client.post("/recommend", json={"query": "rock guitar", "top_k": 10, "diversity": d}))) == 10


def test_include_unavailable_can_return_dead_links(client, tracks) -> None:
    dead = set(tracks.filter(pl.col(S.URL_STATUS) == "DEAD")[S.TRACK_ID].to_list())
    got: set[str] = set()
    for q in ["sad", "rock", "piano ballad", "electronic dance music with heavy bass"]:
        ids = _ids(client.post("/recommend", json={"query": q, "top_k": 50, "include_unavailable": True}))
        got |= set(ids) & dead
        assert not dead & set(_ids(client.post("/recommend", json={"query": q, "top_k": 50})))
    assert got, "50 of 500 tracks are DEAD; top-50 of four queries should include some"


def test_exclude_filters(client, tracks) -> None:
    base = _ids(client.post("/recommend", json={"query": "electronic", "top_k": 10}))
    r = client.post("/recommend", json={"query": "electronic", "top_k": 10,
                                         "filters": {"exclude_track_ids": base[:5], "exclude_genres": ["rock"]}})
    ids = _ids(r)
    assert not set(base[:5]) & set(ids)
    for t in r.json()["results"]:
        assert "rock" not in genres_of(t["genre"])


def test_cache_header_hit_on_repeat_and_query_echoed(client) -> None:
    body = {"query": "Melancholic  Violin", "top_k": 4, "filters": {"genres": ["classical"]}}
    first = client.post("/recommend", json=body)
    again = client.post("/recommend", json={**body, "query": "melancholic violin"})
    assert first.status_code == again.status_code == 200
    assert first.headers["x-cache"] == "miss" and again.headers["x-cache"] == "hit"
    assert again.json()["query"] == "melancholic violin"
    assert again.json()["results"] == first.json()["results"]
    other = client.post("/recommend", json={**body, "top_k": 5})
    assert other.headers["x-cache"] == "miss"
    stats = client.get("/health").json()["cache"]
    assert stats["hits"] >= 1 and stats["misses"] >= 2 and 1 <= stats["size"] <= 64


