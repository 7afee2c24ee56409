"""The synthetic store: its shape (null rates, artist skew, link statuses, moods, audio share), its
published version, and its reuse by generation key.

Its real inputs (prototype embeddings, audio features of 4 bundled clips, the query-mood model)
are cached in ``<MOODSCAPE_HOME>/cache/bench-test``; the store is the one ``moodscape bench`` in
``test_service`` reuses (same parameters).
"""

import json

import numpy as np
import polars as pl
import pytest

from bench import synthstore as SS
from pipelines import schema as S
from pipelines import store
from pipelines.index import bundle as B

N = 3000
SMALL = ["--prototypes", "300", "--audio-clips", "4", "--mood-model-rows", "200"]
PARAMS = SS.SynthParams(n_tracks=N, prototypes=300, audio_clips=4, mood_model_rows=200)


@pytest.fixture(scope="module")
def synth_root():
    cache = store.home() / "cache" / "bench-test"
    return SS.build_synth_store(params=PARAMS, cache=cache, progress=False)


def test_store_is_published_and_reused_by_key(synth_root) -> None:
    layout = store.StoreLayout(synth_root)
    folder = SS.current_folder(synth_root)
    assert folder == layout.current_version_dir()
    info = json.loads((synth_root / SS.BUILD_INFO).read_text())
    assert info["key"] == PARAMS.key()
    # The built version, or a hot-swapped hard-linked copy of it (``moodscape bench --swap``).
    assert layout.current_version().startswith(info["version"])
    assert (layout.version_dir(info["version"]) / B.MANIFEST_FILE).exists()
    mtime = (folder / B.MANIFEST_FILE).stat().st_mtime_ns
    assert SS.build_synth_store(params=PARAMS, cache=synth_root.parent.parent, progress=False) == synth_root
    assert (folder / B.MANIFEST_FILE).stat().st_mtime_ns == mtime  # reused, not rebuilt


def test_synth_store_shape(synth_root) -> None:
    root = synth_root
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
    text = b.text.rows(np.arange(50))
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-3)
    audio = b.audio.rows(np.arange(200))
    assert ((np.linalg.norm(audio, axis=1) > 0) == b.has_audio[:200]).all()
    assert 0.5 < b.has_audio.mean() < 0.7
    va = tracks.select(S.VALENCE, S.AROUSAL).drop_nulls().to_numpy()
    assert np.abs(va).max() <= 1.0 and va.std(axis=0).min() > 0.05


