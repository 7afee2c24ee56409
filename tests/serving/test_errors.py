"""Errors as HTTP responses: every domain error maps to one status with a body naming the field,
and bad request fields are 400s naming the field."""

import pytest
from litestar import get
from litestar.testing import create_test_client

from pipelines.errors import ConflictError, InvalidInputError, UnavailableError, UnknownTrackError
from serving.errors import EXCEPTION_HANDLERS

RAISED = {
    "invalid": InvalidInputError("min_year > max_year", field="requests[2].filters.min_year"),
    "seed": UnknownTrackError("nope:1", field="seed_track_ids"),
    "track": UnknownTrackError("nope:2", field="track_id"),
    "conflict": ConflictError("serving a fixed bundle_dir: nothing to reload"),
    "unavailable": UnavailableError("reload failed, still serving the old version: boom"),
    "bug": RuntimeError("a bug"),
}


@get("/raise/{name:str}", sync_to_thread=False)
def _raise(name: str) -> None:
    raise RAISED[name]


@pytest.mark.parametrize(("name", "status", "body"), [
    ("invalid", 400, {"status_code": 400, "detail": "requests[2].filters.min_year: min_year > max_year",
                      "extra": [{"field": "requests[2].filters.min_year", "message": "min_year > max_year"}]}),
    ("seed", 400, {"status_code": 400, "detail": "seed_track_ids: unknown track id 'nope:1'",
                   "extra": [{"field": "seed_track_ids", "message": "unknown track id 'nope:1'"}]}),
    ("track", 404, {"status_code": 404, "detail": "track 'nope:2' not found"}),
    ("conflict", 409, {"status_code": 409, "detail": "serving a fixed bundle_dir: nothing to reload"}),
    ("unavailable", 503, {"status_code": 503, "detail": "reload failed, still serving the old version: boom"}),
    ("bug", 500, {"status_code": 500, "detail": "internal server error"}),
])
def test_each_domain_error_maps_to_one_status_and_body(name, status, body) -> None:
    with create_test_client(route_handlers=[_raise], exception_handlers=EXCEPTION_HANDLERS) as c:
        r = c.get(f"/raise/{name}")
    assert r.status_code == status and r.json() == body


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
def test_request_fields_validated_with_the_field_named(client, payload, field) -> None:
    r = client.post("/recommend", json=payload)
    assert r.status_code == 400, r.text
    assert field in r.json()["detail"], r.json()


def test_domain_rule_broken_is_400_naming_the_field(client) -> None:
    r = client.post("/recommend", json={"query": "rock", "filters": {"min_year": 2010, "max_year": 2000}})
    assert r.status_code == 400
    assert r.json()["detail"] == "filters.min_year: min_year > max_year"


def test_unknown_seed_is_400_not_500(client) -> None:
    r = client.post("/recommend", json={"query": "rock", "seed_track_ids": ["nope:123"]})
    assert r.status_code == 400 and "seed_track_ids" in r.json()["detail"] and "nope:123" in r.json()["detail"]


def test_admin_reload_refused_for_fixed_bundle(client) -> None:
    r = client.post("/admin/reload")
    assert r.status_code == 409 and "fixed" in r.json()["detail"]
