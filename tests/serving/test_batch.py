"""POST /recommend/batch: answers in order, errors name ``requests[i]``, its own body limit."""


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
    years_swapped = {"query": "b", "filters": {"min_year": 5, "max_year": 1}}
    r = client.post("/recommend/batch", json={"requests": [reqs[0], years_swapped]})
    assert r.status_code == 400 and r.json()["detail"] == "requests[1].filters.min_year: min_year > max_year", r.text
    r = client.post("/recommend/batch", json={"requests": [{"query": "x"}] * 33})
    assert r.status_code == 400 and "requests" in r.json()["detail"]
    assert client.post("/recommend/batch", json={"requests": []}).status_code == 400
    assert client.post("/recommend/batch", json={"requests": reqs, "extra": 1}).status_code == 400


def test_batch_body_limit_is_413(client) -> None:
    big = {"query": "rock", "filters": {"exclude_track_ids": ["x" * 200] * 1000}}
    r = client.post("/recommend/batch", json={"requests": [big] * 3})  # ~600 kB > 512 kB
    assert r.status_code == 413
    assert client.post("/recommend", json=big).status_code == 413  # ~200 kB > 64 kB
