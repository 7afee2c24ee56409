"""HTTP API, issue 6: seeds, target mood, diversity, explanations, unavailable tracks, new filters,
batch, similar tracks, health counts, the response cache header and the admin reload guard."""

import polars as pl
import pytest
from litestar.testing import TestClient

from pipelines.rank import recommender as ranking
from pipelines import schema as S
from serving.app import create_app
from serving.cache import ResponseCache


@pytest.fixture(scope="module")
def client(bundle_dir, mood_adapter):
    app = create_app(
        bundle_dir=bundle_dir,
        recommender_factory=lambda b: ranking.Recommender(b, query_mood=mood_adapter),
        cache=ResponseCache(capacity=64),
    )
    with TestClient(app=app) as c:
        yield c


def _ids(r) -> list[str]:
    assert r.status_code == 200, r.text
    return [t["track_id"] for t in r.json()["results"]]


@pytest.mark.parametrize(("payload", "field"), [
    ({"query": "rock", "seed_track_ids": ["a"] * 11}, "seed_track_ids"),
    ({"query": "rock", "seed_track_ids": [""]}, "seed_track_ids"),
    ({"query": "rock", "seed_track_ids": ["x" * 201]}, "seed_track_ids"),
    ({"query": "rock", "seed_track_ids": "musiccaps:abc"}, "seed_track_ids"),
    ({"query": "rock", "seed_track_ids": ["no-such-track"]}, "seed_track_ids"),
    ({"query": "rock", "target": {"valence": 1.5, "arousal": 0}}, "target.valence"),
    ({"query": "rock", "target": {"valence": 0, "arousal": -1.01}}, "target.arousal"),
    ({"query": "rock", "target": {"valence": 0}}, "arousal"),
    ({"query": "rock", "target": {"valence": 0, "arousal": 0, "dominance": 0}}, "dominance"),
    ({"query": "rock", "target": [0.1, 0.2]}, "target"),
    ({"query": "rock", "diversity": -0.1}, "diversity"),
    ({"query": "rock", "diversity": 1.5}, "diversity"),
    ({"query": "rock", "diversity": "high"}, "diversity"),
    ({"query": "rock", "explain": "yes"}, "explain"),
    ({"query": "rock", "include_unavailable": "maybe"}, "include_unavailable"),
    ({"query": "rock", "filters": {"exclude_track_ids": ["t"] * 1001}}, "exclude_track_ids"),
    ({"query": "rock", "filters": {"exclude_genres": [""]}}, "exclude_genres"),
    ({"query": 42}, "query"),
    ({"query": "\t\n "}, "query"),
])
def test_new_fields_validated_with_the_field_named(client, payload, field) -> None:
    r = client.post("/recommend", json=payload)
    assert r.status_code == 400, r.text
    assert field in r.json()["detail"], r.json()


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
        assert "rock" not in {g.strip().lower() for g in (t["genre"] or "").replace(",", "|").split("|")}


def test_unknown_seed_is_400_not_500(client) -> None:
    r = client.post("/recommend", json={"query": "rock", "seed_track_ids": ["nope:123"]})
    assert r.status_code == 400 and "seed_track_ids" in r.json()["detail"] and "nope:123" in r.json()["detail"]


def test_batch_answers_in_order_and_names_bad_items(client) -> None:
    reqs = [{"query": q, "top_k": 5} for q in ["sad", "rock", "happy piano", "sad"]]
    r = client.post("/recommend/batch", json={"requests": reqs})
    assert r.status_code == 200, r.text
    out = r.json()["responses"]
    assert [o["query"] for o in out] == ["sad", "rock", "happy piano", "sad"]
    assert all(len(o["results"]) == 5 for o in out)
    assert out[0]["results"] == out[3]["results"]
    bad = reqs[:3] + [{"query": "  "}]
    r = client.post("/recommend/batch", json={"requests": bad})
    assert r.status_code == 400 and "requests[3].query" in r.json()["detail"], r.text
    r = client.post("/recommend/batch", json={"requests": reqs[:2] + [{"query": "x", "seed_track_ids": ["zz"]}]})
    assert r.status_code == 400 and "requests[2].seed_track_ids" in r.json()["detail"], r.text
    r = client.post("/recommend/batch", json={"requests": [{"query": "x"}] * 33})
    assert r.status_code == 400 and "requests" in r.json()["detail"]
    assert client.post("/recommend/batch", json={"requests": []}).status_code == 400
    assert client.post("/recommend/batch", json={"requests": reqs, "extra": 1}).status_code == 400


def test_similar_tracks(client, tracks) -> None:
    tid = tracks.filter(pl.col(S.URL_STATUS) != "DEAD")[S.TRACK_ID][5]
    r = client.get(f"/tracks/{tid}/similar", params={"top_k": 7})
    ids = _ids(r)
    assert len(ids) == 7 and tid not in ids and len(set(ids)) == 7
    assert len(_ids(client.get(f"/tracks/{tid}/similar"))) == 10
    r = client.get("/tracks/no-such-track/similar")
    assert r.status_code == 404 and "no-such-track" in r.json()["detail"]
    for bad in ("0", "101", "many"):
        r = client.get(f"/tracks/{tid}/similar", params={"top_k": bad})
        assert r.status_code == 400 and "top_k" in r.json()["detail"], r.text


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


def test_admin_reload_refused_for_fixed_bundle(client) -> None:
    r = client.post("/admin/reload")
    assert r.status_code == 409 and "fixed" in r.json()["detail"]


def test_batch_body_limit_is_413(client) -> None:
    big = {"query": "rock", "filters": {"exclude_track_ids": ["x" * 200] * 1000}}
    r = client.post("/recommend/batch", json={"requests": [big] * 3})  # ~600 kB > 512 kB
    assert r.status_code == 413
    assert client.post("/recommend", json=big).status_code == 413  # ~200 kB > 64 kB


def test_encoder_batching_setting_is_validated(bundle_dir, monkeypatch) -> None:
    monkeypatch.setenv("MOODSCAPE_ENCODER_BATCHING", "yes")
    with pytest.raises(ValueError, match="MOODSCAPE_ENCODER_BATCHING"):
        create_app(bundle_dir=bundle_dir)
    for value in ("auto", "on", "OFF", ""):
        monkeypatch.setenv("MOODSCAPE_ENCODER_BATCHING", value)
        assert create_app(bundle_dir=bundle_dir) is not None
