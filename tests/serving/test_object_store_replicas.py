"""Two service replicas over one object store (a real S3 API on loopback, moto): both serve the
version the pipeline pushed, and both hot-swap to a new one published under load with no failed
request on either."""

import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from pipelines import store
from pipelines.index import bundle as B
from pipelines.index.remote_store import RemoteStore, push_version
from pipelines.rank import recommender as ranking
from serving.app import create_app
from serving.cache import ResponseCache
from serving.settings import ServingSettings
from tests.helpers import moto_s3_endpoint, recommend_load, uvicorn_on_loopback

QUERIES = ["sad piano", "energetic rock guitar", "calm ambient", "happy pop", "dark techno"]


def stage(*, root: Path, src: Path, version: str) -> store.StoreLayout:
    """The pipeline's side: ``src`` as a local published ``version`` (manifest naming it)."""
    layout = store.StoreLayout(root)
    folder = layout.version_dir(version)
    shutil.copytree(src, folder)
    manifest = json.loads((folder / B.MANIFEST_FILE).read_text())
    manifest["version"] = version
    (folder / B.MANIFEST_FILE).write_text(json.dumps(manifest))
    layout.publish(version)
    return layout


@pytest.mark.integration
def test_two_replicas_swap_to_a_new_object_store_version_under_load(tmp_path, bundle_dir, mood_adapter) -> None:
    with moto_s3_endpoint() as (endpoint, bucket):
        url = f"s3://{bucket}/moodscape"
        remote = RemoteStore.from_url(url, endpoint_url=endpoint)
        pipeline = stage(root=tmp_path / "pipeline", src=bundle_dir, version="A")
        push_version(local=pipeline, remote=remote, version="A")

        def replica(name: str):
            return create_app(
                store_root=tmp_path / name,  # an empty local cache: everything comes from the object store
                settings=ServingSettings(reload_interval_s=0.2, store_url=url, store_endpoint_url=endpoint),
                cache=ResponseCache(capacity=0),
                recommender_factory=lambda b: ranking.Recommender(b, query_mood=mood_adapter),
            )

        with uvicorn_on_loopback(replica("r1")) as base1, uvicorn_on_loopback(replica("r2")) as base2:
            bases = [base1, base2]
            assert [httpx.get(f"{b}/health").json()["store_version"] for b in bases] == ["A", "A"]
            with recommend_load(bases, queries=QUERIES, threads_per_base=3) as load:
                time.sleep(1.0)
                stage(root=tmp_path / "pipeline", src=bundle_dir, version="B")
                push_version(local=pipeline, remote=remote, version="B")
                deadline = time.monotonic() + 90
                while any(httpx.get(f"{b}/health").json()["store_version"] != "B" for b in bases):
                    assert time.monotonic() < deadline, "a replica never swapped to B"
                    time.sleep(0.1)
                time.sleep(1.0)
            healths = [httpx.get(f"{b}/health").json() for b in bases]

    outcomes, failures = load.outcomes, load.failures
    served = {b: dict(c) for b, c in outcomes.items()}
    print(f"two replicas over one object store: {served} ok, {len(failures)} failed")
    assert failures == [], failures[:5]
    for base in bases:
        assert outcomes[base]["A"] > 0 and outcomes[base]["B"] > 0, outcomes
    assert all(h["store_version"] == "B" and h["reload_error"] is None for h in healths)
    for name in ("r1", "r2"):  # each replica cached the versions it served, pointer last
        assert store.StoreLayout(tmp_path / name).current_version() == "B"
