"""Writing versions: a written version loads back as written, a failed write leaves nothing behind
and CURRENT unchanged, publication refuses an incomplete folder, and old versions are pruned."""

import json
import os

import numpy as np
import polars as pl
import pytest

from pipelines import schema as S
from pipelines import store
from pipelines.index import build as indexing
from pipelines.index import bundle as B
from pipelines.index import version as V

N = 60


@pytest.fixture
def inputs(tmp_path):
    """(tracks (N rows, every 6th without a mood, every 5th DEAD), text (N, 16), audio (N, 4) with
    zero rows for a third of the tracks, a query-mood model file)."""
    rng = np.random.default_rng(0)
    va = rng.uniform(-1, 1, (N, 2)).astype(np.float32)
    va[::6] = np.nan
    tracks = pl.DataFrame({c: pl.Series([None] * N, dtype=B.BUNDLE_SCHEMA[c]) for c in B.BUNDLE_COLUMNS})
    tracks = tracks.with_columns(
        pl.Series(S.TRACK_ID, [f"t{i}" for i in range(N)]),
        pl.Series(S.URL_STATUS, ["DEAD" if i % 5 == 0 else "VALID" for i in range(N)]),
        pl.Series(S.VALENCE, va[:, 0]).fill_nan(None), pl.Series(S.AROUSAL, va[:, 1]).fill_nan(None),
    )
    audio = rng.standard_normal((N, 4)).astype(np.float32)
    audio[::3] = 0.0
    model = tmp_path / "query_mood.joblib"
    model.write_bytes(b"a query-mood model")
    return tracks, rng.standard_normal((N, 16)).astype(np.float32), audio, model


def test_store_layout_paths(tmp_path) -> None:
    layout = store.StoreLayout.under_home(tmp_path)
    assert layout.root == tmp_path.resolve() / "store"
    assert layout.version_dir("v1") == layout.versions / "v1" and layout.versions.parent == layout.root
    assert layout.current_pointer.parent == layout.root
    assert layout.current_version() is None and layout.current_version_dir() is None
    assert V.VersionWriter.in_store(layout, "v1").folder == layout.version_dir("v1")


def test_written_version_round_trips(tmp_path, inputs) -> None:
    tracks, text, audio, model = inputs
    layout = store.StoreLayout(tmp_path / "store")
    folder = V.write_version(folder=layout.version_dir("v1"), tracks=tracks, text_vectors=text,
                             audio_vectors=audio, query_mood_model_path=model, extra_manifest={"note": "x"})
    layout.publish("v1")
    b = B.load_bundle(layout.current_version_dir())
    assert b.folder == folder and b.version == "v1" and b.manifest["note"] == "x"
    assert b.tracks[S.TRACK_ID].to_list() == tracks[S.TRACK_ID].to_list()
    unit = text / np.linalg.norm(text, axis=1, keepdims=True)
    np.testing.assert_allclose(b.text.rows(np.arange(N)), unit, atol=1e-6)
    np.testing.assert_array_equal(b.has_audio, np.arange(N) % 3 != 0)
    np.testing.assert_array_equal(b.has_mood, np.arange(N) % 6 != 0)
    counts = b.manifest["counts"]
    assert counts == {"tracks": N, "with_audio": 40, "with_mood": 50, "dead_links": 12}
    assert b.manifest["indices"]["audio"]["ntotal"] == 40 and b.manifest["indices"]["mood"]["ntotal"] == 50
    assert (folder / B.QUERY_MOOD_FILE).read_bytes() == model.read_bytes()
    ids, _ = b.text.exact(unit[7], 1)
    assert ids[0] == 7


def test_assembled_version_copies_checked_indices(tmp_path, inputs) -> None:
    tracks, text, audio, model = inputs
    built = V.write_version(folder=tmp_path / "built", tracks=tracks, text_vectors=text, audio_vectors=audio,
                            query_mood_model_path=model)
    layout = store.StoreLayout(tmp_path / "store")
    files = {k: built / V.INDEX_FILES[k] for k in ("text", "mood")}
    folder = V.assemble_version(version="v1", tracks=tracks, text_vectors=text, audio_vectors=np.zeros((N, 0)),
                                index_files=files, query_mood_model_path=model,
                                extra_files={"extra.bin": model}, layout=layout)
    assert folder == layout.version_dir("v1")
    for k, path in files.items():
        assert (folder / V.INDEX_FILES[k]).read_bytes() == path.read_bytes()
    m = json.loads((folder / B.MANIFEST_FILE).read_text())
    assert m["counts"] == {"tracks": N, "with_audio": 0, "with_text": N, "dead_links": 12}
    assert set(m["indices"]) == {"text", "mood"} and (folder / "extra.bin").exists()


def test_failed_write_leaves_no_partial_version_and_current_unchanged(tmp_path, inputs) -> None:
    tracks, text, audio, model = inputs
    layout = store.StoreLayout(tmp_path / "store")
    V.write_version(folder=layout.version_dir("v1"), tracks=tracks, text_vectors=text, audio_vectors=audio,
                    query_mood_model_path=model)
    V.publish("v1", layout=layout)
    # The model file is copied after tracks, vectors and indices: the write fails mid-way.
    with pytest.raises(FileNotFoundError):
        V.write_version(folder=layout.version_dir("v2"), tracks=tracks, text_vectors=text,
                        audio_vectors=audio, query_mood_model_path=tmp_path / "missing.joblib")
    # An index whose ids are not row positions is refused while assembling.
    bad = indexing.build_index(vectors=indexing.VectorSet(ids=np.arange(N) + N, vectors=text), metric="ip")
    indexing.save_index(index=bad, path=tmp_path / "bad.faiss")
    with pytest.raises(ValueError, match="ids outside"):
        V.assemble_version(version="v3", tracks=tracks, text_vectors=text, audio_vectors=audio,
                           index_files={"text": tmp_path / "bad.faiss"}, query_mood_model_path=model,
                           layout=layout)
    assert os.listdir(layout.versions) == ["v1"]  # no v2, v3 or temp folder
    assert layout.current_version() == "v1"
    with pytest.raises(FileNotFoundError, match="no manifest"):
        V.publish("v2", layout=layout)
    assert layout.current_version() == "v1"


def test_publishing_a_folder_without_manifest_is_refused(tmp_path) -> None:
    layout = store.StoreLayout(tmp_path / "store")
    layout.version_dir("half").mkdir(parents=True)
    (layout.version_dir("half") / B.TRACKS_FILE).write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no manifest"):
        layout.publish("half")
    assert layout.current_version() is None and not layout.current_pointer.exists()


def test_publish_prunes_all_but_the_newest_versions(tmp_path, inputs) -> None:
    tracks, text, audio, model = inputs
    layout = store.StoreLayout(tmp_path / "store")
    for v in ("v1", "v2", "v3", "v4"):
        V.write_version(folder=layout.version_dir(v), tracks=tracks.head(10), text_vectors=text[:10],
                        audio_vectors=audio[:10], query_mood_model_path=model)
        V.publish(v, keep=2, layout=layout)
    assert sorted(os.listdir(layout.versions)) == ["v3", "v4"] and layout.current_version() == "v4"


@pytest.mark.parametrize("factory", ["Flat", "IVF16,SQfp16", "HNSW32"])
def test_chunked_version_decodes_rows_from_index_storage(tmp_path, musiccaps_vectors, factory) -> None:
    """Without .npy copies, the rows decode from the index storage; the exhaustive search is exact."""
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
    folder = V.write_version_chunked(
        folder=tmp_path / "v1", tracks=tracks, text_chunk=lambda s, e: vecs[s:e],
        audio_chunk=lambda s, e: audio[s:e], audio_dim=8, query_mood_model_path=model, factory=factory,
        chunk=300, train_size=1000, publish_vectors=False, progress=False,
    )
    assert not (folder / B.TEXT_VECTORS_FILE).exists()
    b = B.load_bundle(folder)
    assert b.text.vectors is None and indexing.index_factory_string(b.text.index) == factory
    ids = rng.permutation(n)[:200]
    atol = 0 if factory != "IVF16,SQfp16" else 2e-3  # fp16 codes
    np.testing.assert_allclose(b.text.rows(ids), vecs[ids], atol=atol + 1e-7)
    np.testing.assert_allclose(b.audio.rows(ids), audio[ids], atol=atol + 1e-7)
    np.testing.assert_array_equal(b.has_audio, has)
    allow = np.flatnonzero(np.arange(n) % 7 != 0)
    q = vecs[3]
    i, s = b.text.exact(q, 10, allow=allow)
    exact = allow[np.argsort(-(vecs[allow] @ q), kind="stable")[:10]]
    np.testing.assert_allclose(s, vecs[exact] @ q, atol=atol + 1e-5)
    assert len(set(i) & set(exact)) >= 9
    assert set(i) <= set(allow)
