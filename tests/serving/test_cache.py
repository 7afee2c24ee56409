"""Response cache: LRU semantics and keys, and a real redis-server shared by two app replicas that
is killed mid-test (requests keep succeeding; the breaker reports Redis down)."""

import os
import socket
import subprocess
import time
from collections.abc import Iterator

import msgspec
import pytest
from litestar.testing import TestClient

from pipelines.rank import recommender as ranking
from serving.app import create_app
from serving.cache import ResponseCache, cache_key
from serving.settings import ServingSettings

REDIS_SERVER = "/usr/bin/redis-server"


class Box(msgspec.Struct, kw_only=True):
    value: int


def test_key_normalises_query_only_and_includes_version() -> None:
    base = {"query": "Sad  Piano\t", "top_k": 5, "filters": {"genres": ["Jazz"]}}
    k = cache_key(kind="recommend", store_version="v1", request=base)
    assert k == cache_key(kind="recommend", store_version="v1", request={**base, "query": "sad piano"})
    assert k == cache_key(kind="recommend", store_version="v1", request=dict(reversed(list(base.items()))))
    assert k != cache_key(kind="recommend", store_version="v2", request=base)
    assert k != cache_key(kind="similar", store_version="v1", request=base)
    assert k != cache_key(kind="recommend", store_version="v1", request={**base, "top_k": 6})
    assert k != cache_key(kind="recommend", store_version="v1", request={**base, "filters": {"genres": ["jazz"]}})


def test_lru_evicts_least_recently_used_and_zero_disables() -> None:
    calls: list[int] = []

    def compute(v: int):
        return lambda: (calls.append(v), Box(value=v))[1]

    c = ResponseCache(capacity=2)
    assert c.get_or_compute(key="a", type_=Box, compute=compute(1)) == (Box(value=1), False)
    c.get_or_compute(key="b", type_=Box, compute=compute(2))
    assert c.get_or_compute(key="a", type_=Box, compute=compute(99)) == (Box(value=1), True)  # a is now newest
    c.get_or_compute(key="c", type_=Box, compute=compute(3))  # evicts b
    assert c.get_or_compute(key="b", type_=Box, compute=compute(4)) == (Box(value=4), False)
    s = c.stats()
    assert (s.size, s.hits, s.misses, s.redis) == (2, 1, 4, "absent") and calls == [1, 2, 3, 4]

    off = ResponseCache(capacity=0)
    for _ in range(3):
        assert off.get_or_compute(key="a", type_=Box, compute=compute(5))[1] is False
    assert off.stats().size == 0 and off.stats().misses == 3


def test_cache_from_environment_settings(monkeypatch) -> None:
    monkeypatch.setenv("MOODSCAPE_CACHE_SIZE", "0")
    monkeypatch.delenv("MOODSCAPE_REDIS_URL", raising=False)
    c = ResponseCache.from_settings(ServingSettings.from_env())
    assert c.capacity == 0 and c.redis_state() == "absent"
    monkeypatch.delenv("MOODSCAPE_CACHE_SIZE")
    assert ResponseCache.from_settings(ServingSettings.from_env()).capacity == 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_proc() -> Iterator[tuple[subprocess.Popen, str]]:
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server not installed")
    import redis

    port = _free_port()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=0.2, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    client.close()
    try:
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _app(bundle_dir, mood_adapter, cache: ResponseCache):
    return create_app(
        bundle_dir=bundle_dir, cache=cache,
        recommender_factory=lambda b: ranking.Recommender(b, query_mood=mood_adapter),
    )


def test_redis_shared_by_replicas_and_redis_death_is_survived(bundle_dir, mood_adapter, redis_proc) -> None:
    proc, url = redis_proc
    body = {"query": "dreamy ambient synth pads", "top_k": 6}
    with (
        TestClient(app=_app(bundle_dir, mood_adapter, ResponseCache(capacity=32, redis_url=url, breaker_s=2.0))) as one,
        TestClient(app=_app(bundle_dir, mood_adapter, ResponseCache(capacity=32, redis_url=url, breaker_s=2.0))) as two,
    ):
        first = one.post("/recommend", json=body)
        assert first.status_code == 200 and first.headers["x-cache"] == "miss"
        # The other replica has never seen this request: its hit can only come from Redis.
        second = two.post("/recommend", json=body)
        assert second.status_code == 200 and second.headers["x-cache"] == "hit", second.text
        assert second.json()["results"] == first.json()["results"]
        h = two.get("/health").json()["cache"]
        assert h["redis"] == "up" and h["redis_hits"] == 1 and h["hits"] == 1 and h["misses"] == 0
        # …and now from its own LRU.
        assert two.post("/recommend", json=body).headers["x-cache"] == "hit"
        assert two.get("/health").json()["cache"]["redis_hits"] == 1

        proc.kill()
        proc.wait(timeout=10)
        for i, q in enumerate(["rainy day jazz", "hard rock", "lullaby", "techno", "folk ballad", "rainy day jazz"]):
            r = one.post("/recommend", json={"query": q, "top_k": 5})
            assert r.status_code == 200, r.text
            assert r.headers["x-cache"] == ("hit" if i == 5 else "miss")  # the repeat comes from the LRU
        assert one.post("/recommend", json=body).headers["x-cache"] == "hit"
        assert one.get("/health").json()["cache"]["redis"] == "down"
        # A replica that had not touched Redis since it died finds out on its next miss, and serves.
        r = two.post("/recommend/batch", json={"requests": [{"query": "sunny surf pop"}, body]})
        assert r.status_code == 200 and r.headers["x-cache-hits"] == "1/2"
        assert two.get("/health").json()["status"] == "ok"


def test_no_redis_configured_works(bundle_dir, mood_adapter, monkeypatch) -> None:
    monkeypatch.setenv("MOODSCAPE_CACHE_SIZE", "0")
    monkeypatch.delenv("MOODSCAPE_REDIS_URL", raising=False)
    with TestClient(app=_app(bundle_dir, mood_adapter, ResponseCache.from_settings(ServingSettings.from_env()))) as c:
        for _ in range(2):
            r = c.post("/recommend", json={"query": "calm acoustic", "top_k": 3})
            assert r.status_code == 200 and r.headers["x-cache"] == "miss"
        h = c.get("/health").json()["cache"]
        assert h == {"size": 0, "capacity": 0, "hits": 0, "misses": 2, "redis_hits": 0, "redis": "absent"}
