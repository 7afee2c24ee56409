"""The service-under-test helpers: CPU and memory of a process from /proc, and the hot swap's
hard-linked new version made current through the store layout."""

import json
import os
import time

import numpy as np
import polars as pl

from bench import server
from pipelines import schema as S
from pipelines import store
from pipelines.index import bundle as B
from pipelines.index.version import write_version


def test_proc_cpu_s_agrees_with_process_time() -> None:
    pid = os.getpid()
    c0, p0 = time.process_time(), server.proc_cpu_s(pid)
    x = 0
    while time.process_time() - c0 < 0.3:  # spend CPU, however long that takes on a busy machine
        x += 1
    c, p = time.process_time() - c0, server.proc_cpu_s(pid) - p0
    assert abs(p - c) < 0.05, (p, c)  # /proc/<pid>/stat ticks are 10 ms
    assert server.proc_cpu_s(2**22 + 12345) == 0.0  # no such pid


def test_proc_status_mb_reads_own_memory() -> None:
    big = np.ones(64 * 2**20 // 8)  # 64 MiB resident
    mb = server.proc_status_mb(os.getpid())
    assert set(mb) == {"VmRSS", "VmHWM"} and mb["VmHWM"] >= mb["VmRSS"] >= big.nbytes / 2**20
    assert server.proc_status_mb(2**22 + 12345) == {}


def test_hardlink_version_shares_files_and_publishes(tmp_path) -> None:
    n = 20
    tracks = pl.DataFrame({c: pl.Series([None] * n, dtype=B.BUNDLE_SCHEMA[c]) for c in B.BUNDLE_COLUMNS})
    tracks = tracks.with_columns(pl.Series(S.TRACK_ID, [f"t{i}" for i in range(n)]))
    model = tmp_path / "qm.joblib"
    model.write_bytes(b"model bytes")
    layout = store.StoreLayout(tmp_path / "store")
    write_version(folder=layout.version_dir("a"), tracks=tracks,
                  text_vectors=np.random.default_rng(0).standard_normal((n, 8)),
                  audio_vectors=np.zeros((n, 0), np.float32), query_mood_model_path=model)
    layout.publish("a")
    dst = server.hardlink_version(layout=layout, source_version="a", new_version="b")
    assert dst == layout.version_dir("b")
    src = layout.version_dir("a")
    for f in src.iterdir():
        if f.name != B.MANIFEST_FILE:
            assert (dst / f.name).stat().st_ino == f.stat().st_ino
    assert json.loads((dst / B.MANIFEST_FILE).read_text())["version"] == "b"
    assert json.loads((src / B.MANIFEST_FILE).read_text())["version"] == "a"
    layout.publish("b")
    assert layout.current_version() == "b"
    assert B.load_bundle(layout.current_version_dir()).version == "b"
    assert sorted(p.name for p in layout.versions.iterdir()) == ["a", "b"]  # no temp folder left
