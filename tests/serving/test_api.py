"""HTTP API over a real test bundle (see conftest): happy path, errors, filters, baseline."""

import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from pipelines import schema as S
from pipelines import store
from pipelines.embed.sentence import embed_texts
from pipelines.index.bundle import load_bundle
from tests.helpers import genres_of


def test_serving_does_not_import_dagster() -> None:
    code = "import sys, serving.app; sys.exit('dagster' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=store.REPO_ROOT, timeout=120).returncode == 0
    for module in ("app", "schemas", "errors", "cache", "reload", "settings", "__init__"):
        src = (store.REPO_ROOT / "serving" / f"{module}.py").read_text()
        assert "from __future__ import annotations" not in src


def test_recommend_happy_path(client) -> None:
    r = client.post("/recommend", json={"query": "calm relaxing acoustic guitar", "top_k": 12})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == "calm relaxing acoustic guitar"
    assert set(body["mood_detected"]) == {"valence", "arousal", "confidence"}
    assert body["query_type"] in {"mood", "genre", "artist", "attribute", "default"}
    assert len(body["results"]) == 12
    for t in body["results"]:
        assert {"track_id", "title", "artist", "year", "genre", "tags", "permalink_url", "url_status",
                "score", "mood"} <= set(t)
        assert set(t["mood"]) == {"valence", "arousal", "source", "confidence"}
        assert t["mood"]["source"] == "text" and -1 <= t["mood"]["valence"] <= 1
        assert t["url_status"] != "DEAD"
    md = body["metadata"]
    assert set(md["stages"]) == {"query_understanding", "retrieval", "scoring", "reranking", "postprocessing"}
    assert md["store_version"] == "test-v1" and md["total_candidates"] >= 12
    assert md["processing_time_ms"] >= sum(md["stages"].values()) * 0.99


def test_default_top_k_and_dead_links_never_returned(client, tracks) -> None:
    dead = set(tracks.filter(pl.col(S.URL_STATUS) == "DEAD")[S.TRACK_ID].to_list())
    assert len(dead) == 50
    for q in ["sad", "rock", "piano ballad", "electronic dance music with heavy bass"]:
        for mode in ("full", "baseline"):
            r = client.post("/recommend", json={"query": q, "mode": mode})
            assert r.status_code == 200
            ids = [t["track_id"] for t in r.json()["results"]]
            assert len(ids) == 20 and not dead & set(ids)


@pytest.mark.parametrize(("payload", "field"), [
    ({"query": ""}, "query"),
    ({"query": "   "}, "query"),
    ({"query": "x" * 513}, "query"),
    ({"query": "rock", "top_k": 0}, "top_k"),
    ({"query": "rock", "top_k": 101}, "top_k"),
    ({"query": "rock", "top_k": "ten"}, "top_k"),
    ({"query": "rock", "mode": "fancy"}, "mode"),
    ({"query": "rock", "filters": {"min_year": "old"}}, "min_year"),
    ({"top_k": 5}, "query"),
    ({"query": "rock", "filters": {"min_year": 2010, "max_year": 2000}}, "min_year"),
])
def test_invalid_input_is_400_naming_the_field(client, payload, field) -> None:
    r = client.post("/recommend", json=payload)
    assert r.status_code == 400, r.text
    body = r.json()
    assert field in body["detail"], body


@pytest.mark.parametrize("payload", [
    {"query": "rock", "colour": "blue"},
    {"query": "rock", "filters": {"decade": 1990}},
])
def test_unknown_fields_are_400(client, payload) -> None:
    r = client.post("/recommend", json=payload)
    assert r.status_code == 400, r.text
    assert "unknown field" in r.json()["detail"].lower()


def test_malformed_json_is_400(client) -> None:
    r = client.post("/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_oversized_body_is_413(client) -> None:
    r = client.post("/recommend", json={"query": "rock", "filters": {"genres": ["x" * 100] * 1000}})
    assert r.status_code == 413


def test_track_lookup_and_404(client, tracks) -> None:
    tid = tracks[S.TRACK_ID][3]
    r = client.get(f"/tracks/{tid}")
    assert r.status_code == 200 and r.json()["track_id"] == tid
    r = client.get("/tracks/no-such-track")
    assert r.status_code == 404 and "no-such-track" in r.json()["detail"]


def test_health_and_openapi(client) -> None:
    r = client.get("/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["store_version"] == "test-v1" and body["tracks"] == 500
    assert body["counts"] == {"tracks": 500, "with_audio": 0, "with_mood": 500, "dead_links": 50}
    assert body["reload"] == "fixed" and body["reload_error"] is None and body["loaded_at"]
    assert body["cache"]["redis"] == "absent" and body["cache"]["capacity"] >= 0
    spec = client.get("/schema/openapi.json")
    assert spec.status_code == 200 and "/recommend" in spec.json()["paths"]
    assert client.get("/schema/swagger").status_code == 200


@pytest.mark.parametrize("filters", [
    {"genres": ["rock", "Pop"]},
    {"exclude_artists": ["artist_000014", "artist_000087"], "genres": ["electronic"]},
    {"min_year": 2000},
])
def test_filters_respected(client, tracks, filters) -> None:
    r = client.post("/recommend", json={"query": "energetic guitar music", "top_k": 25, "filters": filters})
    assert r.status_code == 200, r.text
    rows = {t[S.TRACK_ID]: t for t in tracks.iter_rows(named=True)}
    # brute force over the table: how many live rows satisfy the filters
    def ok(t: dict) -> bool:
        genres = genres_of(t[S.GENRE])
        return (
            t[S.URL_STATUS] != "DEAD"
            and ("min_year" not in filters or (t[S.YEAR] is not None and t[S.YEAR] >= filters["min_year"]))
            and ("genres" not in filters or bool(genres & {g.lower() for g in filters["genres"]}))
            and ("exclude_artists" not in filters or t[S.ARTIST] not in filters["exclude_artists"])
        )
    n_ok = sum(ok(t) for t in rows.values())
    results = r.json()["results"]
    assert len(results) == min(25, n_ok)
    assert all(ok(rows[t["track_id"]]) for t in results)


def test_baseline_equals_brute_force(client, bundle_dir, assert_exact_top_k) -> None:
    query = "a slow sad song with strings"
    r = client.post("/recommend", json={"query": query, "top_k": 10, "mode": "baseline"})
    assert r.status_code == 200
    b = load_bundle(bundle_dir)
    sims = np.asarray(b.text.vectors) @ embed_texts([query])[0]
    sims[b.tracks[S.URL_STATUS].to_numpy() == "DEAD"] = -np.inf
    assert_exact_top_k(res=[(t["track_id"], t["score"]) for t in r.json()["results"]], sims=sims,
                       track_ids=b.tracks[S.TRACK_ID].to_list(), k=10)
