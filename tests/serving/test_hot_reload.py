"""Hot reload under load: the real app under uvicorn on loopback, 8 client threads hammering it while
a new store version is published; no request may fail and the old version is closed afterwards."""

import json
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from litestar.testing import TestClient

from pipelines import store
from pipelines.index import bundle as B
from pipelines.rank import recommender as ranking
from serving.app import create_app
from serving.cache import ResponseCache
from serving.settings import ServingSettings
from tests.helpers import recommend_load

QUERIES = ["sad piano", "energetic rock guitar", "calm ambient", "happy pop", "dark techno", "jazz trumpet"]


def publish(*, root: Path, src: Path, version: str) -> None:
    """Copy bundle ``src`` into the store at ``root`` as ``version`` (the manifest names the
    version, as the writer does) and publish it."""
    layout = store.StoreLayout(root)
    folder = layout.version_dir(version)
    if not folder.exists():
        tmp = folder.with_name(f".{version}.tmp")
        shutil.copytree(src, tmp)
        manifest = json.loads((tmp / B.MANIFEST_FILE).read_text())
        manifest["version"] = version
        (tmp / B.MANIFEST_FILE).write_text(json.dumps(manifest))
        tmp.rename(folder)
    layout.publish(version)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _app(root: Path, mood_adapter, interval: float):
    return create_app(
        store_root=root, settings=ServingSettings(reload_interval_s=interval), cache=ResponseCache(capacity=0),
        recommender_factory=lambda b: ranking.Recommender(b, query_mood=mood_adapter),
    )


@pytest.mark.integration
def test_swap_under_load_fails_no_request(tmp_path, bundle_dir, mood_adapter) -> None:
    root = tmp_path / "store"
    publish(root=root, src=bundle_dir, version="A")
    app = _app(root, mood_adapter, interval=0.2)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    old_gen = app.state.holder.current

    with recommend_load([base], queries=QUERIES, threads_per_base=8) as load:
        time.sleep(1.0)
        publish(root=root, src=bundle_dir, version="B")
        deadline = time.monotonic() + 60
        while httpx.get(f"{base}/health").json()["store_version"] != "B":
            assert time.monotonic() < deadline, "never swapped to B"
            time.sleep(0.1)
        swapped_at = sum(load.outcomes[base].values())
        time.sleep(1.0)
    outcomes, failures = load.outcomes[base], load.failures
    health = httpx.get(f"{base}/health").json()
    server.should_exit = True
    thread.join(timeout=30)

    print(f"hot reload under load: {dict(outcomes)} ok, {len(failures)} failed")
    assert failures == [], failures[:5]
    assert outcomes["A"] > 0 and outcomes["B"] > 0, outcomes
    assert sum(outcomes.values()) > swapped_at
    assert health["store_version"] == "B" and health["reload"] == "store" and health["reload_error"] is None
    assert old_gen.closed and old_gen.leases == 0  # the old Recommender was released once idle


def test_admin_reload_and_a_broken_version_keeps_serving(tmp_path, bundle_dir, mood_adapter) -> None:
    root = tmp_path / "store"
    publish(root=root, src=bundle_dir, version="A")
    with TestClient(app=_app(root, mood_adapter, interval=0)) as c:  # polling off: operator-driven
        assert c.post("/admin/reload").json() == {"store_version": "A", "reloaded": False}
        publish(root=root, src=bundle_dir, version="B")
        assert c.get("/health").json()["store_version"] == "A"
        r = c.post("/admin/reload")
        assert r.status_code == 200 and r.json() == {"store_version": "B", "reloaded": True}
        assert c.post("/recommend", json={"query": "rock"}).json()["metadata"]["store_version"] == "B"

        layout = store.StoreLayout(root)
        layout.version_dir("C").mkdir()  # a version folder without its files
        with store.atomic_path(layout.current_pointer) as t:
            t.write_text("C\n")
        r = c.post("/admin/reload")
        assert r.status_code == 503 and "still serving" in r.json()["detail"]
        h = c.get("/health").json()
        assert h["store_version"] == "B" and "C" in h["reload_error"]
        assert c.post("/recommend", json={"query": "rock"}).status_code == 200
        assert c.post("/admin/reload", params={"force": "true"}).status_code == 503
