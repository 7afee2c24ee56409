"""``moodscape bench`` end to end over real HTTP (loopback), the synthetic store's shape, and the
index-backed vector rows of bundles that publish no .npy copies.

The synthetic store's real inputs (prototype embeddings, audio features of 4 bundled clips, the
query-mood model) are cached in ``<MOODSCAPE_HOME>/cache/bench-test`` so that only the first run on
a machine pays for them.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.index import bundle as B
from pipelines.index import build as indexing
from pipelines import store
from pipelines import schema as S
from bench import synthstore as SS

N = 3000
SMALL = ["--prototypes", "300", "--audio-clips", "4", "--mood-model-rows", "200"]


@pytest.fixture(scope="module")
def synth_cache() -> Path:
    path = store.home() / "cache" / "bench-test"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def bench_result(synth_cache: Path, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    cmd = [
        sys.executable, "-m", "moodscape.cli", "bench", "--tracks", str(N), "--queries", "24",
        "--concurrency", "4", "--out", str(out), "--cache", str(synth_cache), *SMALL,
        "--load-seconds", "4", "--clients", "8", "--swap", "--quiet",
    ]
    proc = subprocess.run(cmd, cwd=store.REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads((out / "bench.json").read_text())


def test_bench_json_over_real_http(bench_result: dict) -> None:
    r = bench_result
    assert r["tracks"] == N
    for mode in ("full", "baseline"):
        m = r[mode]
        assert set(m) >= {"p50_ms", "p95_ms", "p99_ms", "qps", "errors"}
        assert m["errors"] == 0, m
        assert m["requests"] == 24
        assert 0 < m["p50_ms"] <= m["p95_ms"] <= m["p99_ms"]
        assert m["qps"] > 0
    assert isinstance(r["rss_mb"], float) and r["rss_mb"] > 100  # torch + MiniLM alone exceed this
    assert isinstance(r["build_s"], float) and r["build_s"] > 0
    load = r["load"]
    assert load["errors"] == 0 and load["requests"] > 0, load
    assert load["swap"]["new"] != load["swap"]["old"]


def test_synth_store_shape(bench_result: dict) -> None:
    root = Path(bench_result["store"]["root"])
    folder = SS.current_folder(root)
    manifest = json.loads((folder / B.MANIFEST_FILE).read_text())
    assert manifest["synthetic"]["synthetic"] is True and manifest["synthetic"]["seed"] == 0
    tracks = pl.read_parquet(folder / B.TRACKS_FILE)
    assert tracks.height == N and tracks[S.TRACK_ID].n_unique() == N
    summary = SS.synth_summary(tracks)
    assert abs(summary["genre_null"] - 1.0) < 0.3 and summary["genre_null"] >= SS.GENRE_NULL - 0.05
    assert abs(summary["tags_null"] - SS.TAGS_NULL) < 0.05
    assert 0.08 < summary["dead"] < 0.16
    # Zipf-skewed artists: the top 1 % of artists own far more than 1 % of the tracks.
    assert summary["top1pct_artist_share"] > 0.15, summary
    assert set(tracks[S.URL_STATUS].unique()) <= set(S.LINK_STATUSES)
    b = B.load_bundle(folder)
    text = b.text_rows(np.arange(50))
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-3)
    audio = b.audio_rows(np.arange(200))
    assert ((np.linalg.norm(audio, axis=1) > 0) == b.has_audio[:200]).all()
    assert 0.5 < b.has_audio.mean() < 0.7
    va = tracks.select(S.VALENCE, S.AROUSAL).drop_nulls().to_numpy()
    assert np.abs(va).max() <= 1.0 and va.std(axis=0).min() > 0.05


@pytest.mark.parametrize("factory", ["Flat", "IVF16,SQfp16", "HNSW32"])
def test_rows_from_index_storage_equal_vectors(tmp_path, musiccaps_vectors, factory) -> None:
    """Without .npy copies, text_rows/audio_rows decode the index storage; the exhaustive search is exact."""
    n = len(musiccaps_vectors)
    vecs = musiccaps_vectors
    audio = np.zeros((n, 8), np.float32)
    rng = np.random.default_rng(0)
    has = rng.random(n) < 0.5
    audio[has] = vecs[has, :8] / np.linalg.norm(vecs[has, :8], axis=1, keepdims=True)
    tracks = pl.DataFrame({c: pl.Series([None] * n, dtype=B.BUNDLE_SCHEMA[c]) for c in B.BUNDLE_COLUMNS})
    tracks = tracks.with_columns(
        pl.Series(S.TRACK_ID, [f"t{i}" for i in range(n)]),
        pl.Series(S.URL_STATUS, ["DEAD" if i % 7 == 0 else "VALID" for i in range(n)]),
    )
    model = tmp_path / "qm.joblib"
    model.write_bytes(b"not used by this test")
    folder = B.write_bundle_chunked(
        folder=tmp_path / "versions" / "v1", tracks=tracks, text_chunk=lambda s, e: vecs[s:e],
        audio_chunk=lambda s, e: audio[s:e], audio_dim=8, query_mood_model_path=model, factory=factory,
        chunk=300, train_size=1000, publish_vectors=False, progress=False,
    )
    assert not (folder / B.TEXT_VECTORS_FILE).exists()
    b = B.load_bundle(folder)
    assert b.text_vectors is None and indexing.index_factory_string(b.text_index) == factory
    ids = rng.permutation(n)[:200]
    atol = 0 if factory != "IVF16,SQfp16" else 2e-3  # fp16 codes
    np.testing.assert_allclose(b.text_rows(ids), vecs[ids], atol=atol + 1e-7)
    np.testing.assert_allclose(b.audio_rows(ids), audio[ids], atol=atol + 1e-7)
    np.testing.assert_array_equal(b.has_audio, has)
    allow = np.flatnonzero(np.arange(n) % 7 != 0)
    q = vecs[3]
    s, i = b.text_exact_search(query=q, k=10, allow=allow)
    es, ei = indexing.exact_search(vectors=indexing.VectorSet(ids=allow, vectors=vecs[allow]),
                                   queries=q[None], k=10, metric="ip")
    np.testing.assert_allclose(s, es, atol=atol + 1e-5)
    assert len(set(i[0]) & set(ei[0])) >= 9
    assert set(i[0]) <= set(allow)
