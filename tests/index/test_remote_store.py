"""Published versions on an object store: push (files, manifest, then pointer) and the replica-side
pull into a local cache, against a real S3 API on loopback (moto's threaded server)."""

import json
from pathlib import Path

import pytest

from pipelines import store
from pipelines.errors import InvalidInputError, UnavailableError
from pipelines.index.bundle import MANIFEST_FILE
from pipelines.index.remote_store import RemoteStore, pull_current, push_version
from tests.helpers import moto_s3_endpoint


def _version(root: Path, version: str, payload: bytes = b"x" * 1000) -> store.StoreLayout:
    layout = store.StoreLayout(root)
    folder = layout.version_dir(version)
    (folder / "indices").mkdir(parents=True)
    (folder / "indices" / "text.faiss").write_bytes(payload)
    (folder / "tracks.parquet").write_bytes(b"parquet-bytes")
    (folder / MANIFEST_FILE).write_text(json.dumps({"version": version}))
    layout.publish(version)
    return layout


@pytest.fixture
def remote():
    with moto_s3_endpoint() as (endpoint, bucket):
        yield RemoteStore.from_url(f"s3://{bucket}/prod", endpoint_url=endpoint)


def test_push_then_pull_gives_the_replica_the_same_version(tmp_path, remote) -> None:
    local = _version(tmp_path / "pipeline", "v1")
    assert remote.current_version() is None
    assert pull_current(remote=remote, local=store.StoreLayout(tmp_path / "replica")) is None  # nothing yet

    assert push_version(local=local, remote=remote, version="v1") == 3
    assert remote.current_version() == "v1"
    replica = store.StoreLayout(tmp_path / "replica")
    assert pull_current(remote=remote, local=replica) == "v1"
    assert replica.current_version() == "v1"
    assert (replica.version_dir("v1") / "indices" / "text.faiss").read_bytes() == b"x" * 1000
    assert json.loads((replica.version_dir("v1") / MANIFEST_FILE).read_text()) == {"version": "v1"}

    _version(tmp_path / "pipeline", "v2", payload=b"y" * 10)
    push_version(local=local, remote=remote, version="v2")
    assert pull_current(remote=remote, local=replica) == "v2"
    assert (replica.version_dir("v2") / "indices" / "text.faiss").read_bytes() == b"y" * 10


def test_a_version_without_its_manifest_is_never_pulled_or_pushed(tmp_path, remote) -> None:
    local = _version(tmp_path / "pipeline", "v1")
    push_version(local=local, remote=remote, version="v1")
    replica = store.StoreLayout(tmp_path / "replica")
    pull_current(remote=remote, local=replica)

    # A writer that died after some files: its pointer move never happened in push_version, but an
    # operator (or another tool) pointing CURRENT at it must not make replicas serve half a version.
    remote.fs.pipe_file(str(remote.layout.version_dir("v9") / "tracks.parquet"), b"half")
    remote.fs.pipe_file(str(remote.layout.current_pointer), b"v9\n")
    with pytest.raises(UnavailableError, match="no manifest"):
        pull_current(remote=remote, local=replica)
    assert replica.current_version() == "v1" and not replica.version_dir("v9").exists()

    (local.version_dir("v1") / MANIFEST_FILE).unlink()
    with pytest.raises(UnavailableError, match="no manifest"):
        push_version(local=local, remote=remote, version="v1")


def test_pull_keeps_only_a_few_cached_versions(tmp_path, remote) -> None:
    local = store.StoreLayout(tmp_path / "pipeline")
    replica = store.StoreLayout(tmp_path / "replica")
    for i in range(5):
        _version(tmp_path / "pipeline", f"v{i}")
        push_version(local=local, remote=remote, version=f"v{i}")
        pull_current(remote=remote, local=replica)
    cached = sorted(p.name for p in replica.versions.iterdir() if not p.name.startswith("."))
    assert "v4" in cached and len(cached) == 3, cached


def test_a_store_url_must_be_a_url() -> None:
    with pytest.raises(InvalidInputError) as err:
        RemoteStore.from_url("/just/a/path")
    assert err.value.field == "MOODSCAPE_STORE_URL"
    assert RemoteStore.from_env({}) is None


def test_the_availability_overlay_travels_when_it_changes(tmp_path, remote) -> None:
    from pipelines.index.remote_store import pull_overlay, push_overlay

    pipeline = store.StoreLayout(tmp_path / "pipeline")
    replica = store.StoreLayout(tmp_path / "replica")
    assert push_overlay(local=pipeline, remote=remote) is False  # none written yet
    assert pull_overlay(remote=remote, local=replica) is None
    pipeline.availability_overlay.parent.mkdir(parents=True)
    pipeline.availability_overlay.write_bytes(b"first")
    assert push_overlay(local=pipeline, remote=remote)
    tag = pull_overlay(remote=remote, local=replica)
    assert tag and replica.availability_overlay.read_bytes() == b"first"
    replica.availability_overlay.write_bytes(b"local edit")  # an unchanged remote is not fetched again
    assert pull_overlay(remote=remote, local=replica, seen=tag) == tag
    assert replica.availability_overlay.read_bytes() == b"local edit"
    pipeline.availability_overlay.write_bytes(b"second, longer")
    push_overlay(local=pipeline, remote=remote)
    assert pull_overlay(remote=remote, local=replica, seen=tag) != tag
    assert replica.availability_overlay.read_bytes() == b"second, longer"
