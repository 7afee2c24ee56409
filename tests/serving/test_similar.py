"""GET /tracks/{id}/similar: tracks like one track, never itself; unknown ids are 404."""

import polars as pl

from pipelines import schema as S
from tests.helpers import result_ids as _ids


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
