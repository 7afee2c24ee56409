"""``BundleStoreHandle``'s audio side on a real published version: the extracted audio it reads from
the store and the neighbours the service's audio retrieval gives; then a whole evaluation run over it."""

import json

import joblib
import numpy as np
import polars as pl
import pytest

from pipelines import schema as S
from pipelines.audio.features import FEATURE_COLUMNS
from pipelines.index.version import write_version
from pipelines.measure import similarity as sim
from pipelines.measure.handle import AUDIO_FEATURES_TABLE, BundleStoreHandle, layout_of_version
from pipelines.measure.run import AudioStoreHandle, run_evaluation
from pipelines.store import StoreLayout, write_table
from tests.measure.conftest import SOURCES, needs_clips

pytestmark = needs_clips
IMPUTED, FAILED = "imputed:0", "failed:0"


@pytest.fixture(scope="module")
def version(segments, embed_cached, mood_adapter, tmp_path_factory):
    """A store whose version serves the segments (extracted), one imputed track (an audio vector,
    no extracted features) and one whose extraction failed (no audio vector); audio vectors are the
    standardised librosa features, as an audio index would hold them."""
    feats, genres = segments
    ids = feats[S.TRACK_ID].to_list()
    all_ids = [*ids, IMPUTED, FAILED]
    n = len(all_ids)
    x = sim.standardise(feats.select(FEATURE_COLUMNS).to_numpy())
    audio = np.vstack([x, x[:3].mean(axis=0, keepdims=True), np.zeros((1, x.shape[1]))]).astype(np.float32)
    docs = [f"{genres.get(t, 'unknown')} recording" for t in all_ids]
    tracks = pl.DataFrame({
        S.TRACK_ID: all_ids, S.TITLE: all_ids, S.ARTIST: [t.split(":")[0] for t in all_ids], S.YEAR: [None] * n,
        S.GENRE: [None] * n, S.TAGS: [[] for _ in all_ids], S.PERMALINK_URL: [None] * n,
        S.URL_STATUS: ["UNKNOWN"] * n, S.PLAYBACK_COUNT: [None] * n, S.VALENCE: [0.1] * n, S.AROUSAL: [0.2] * n,
        S.MOOD_SOURCE: ["audio"] * n, S.MOOD_CONFIDENCE: [0.5] * n,
        S.AUDIO_SOURCE: ["extracted"] * len(ids) + ["knn", "none"], S.TEXT_DOC: docs,
    }, schema_overrides={S.YEAR: pl.Int32, S.PLAYBACK_COUNT: pl.Int64, S.PERMALINK_URL: pl.String,
                         S.GENRE: pl.String, S.TAGS: pl.List(pl.String)})
    layout = StoreLayout(tmp_path_factory.mktemp("store"))
    model = layout.root / "query_mood.joblib"
    joblib.dump(mood_adapter.ridge, model)
    failed = pl.DataFrame({S.TRACK_ID: [FAILED], S.AUDIO_ERROR: ["decode failed"]})
    table = pl.concat([feats.with_columns(pl.lit(None, dtype=pl.String).alias(S.AUDIO_ERROR)), failed],
                      how="diagonal_relaxed")
    write_table(table, layout.table(AUDIO_FEATURES_TABLE))
    folder = write_version(folder=layout.version_dir("v1"), tracks=tracks, text_vectors=embed_cached(docs),
                           audio_vectors=audio, query_mood_model_path=model)
    return folder, audio


@pytest.fixture(scope="module")
def handle(version, mood_adapter):
    h = BundleStoreHandle(version[0], query_mood=mood_adapter)
    yield h
    h.close()


def test_extracted_audio_is_the_stores_features_of_extracted_tracks_only(handle, segments) -> None:
    feats, _ = segments
    assert isinstance(handle, AudioStoreHandle)
    got = handle.extracted_audio()
    assert sorted(got[S.TRACK_ID].to_list()) == sorted(feats[S.TRACK_ID].to_list())  # not imputed, not failed
    assert {"msd_embedding", "mtt_embedding", *FEATURE_COLUMNS} <= set(got.columns)


def test_audio_neighbours_are_the_audio_index_nearest_among_the_given_tracks(handle, version, segments) -> None:
    feats, _ = segments
    _, audio = version
    ids = feats[S.TRACK_ID].to_list()
    u = sim.unit_rows(audio[: len(ids)])
    got = handle.audio_neighbours(track_ids=[*ids, "unknown:1", FAILED], k=5)
    assert set(got) == set(ids)  # unknown and audio-less tracks are not queried
    for i, track_id in enumerate(ids):
        sims = u @ u[i]
        sims[i] = -np.inf
        assert got[track_id] == [ids[j] for j in np.argsort(-sims, kind="stable")[:5]]
    assert handle.audio_dims() == audio.shape[1]


def test_a_version_outside_a_store_has_no_audio_features(version, tmp_path, mood_adapter) -> None:
    import shutil

    loose = tmp_path / "loose"
    shutil.copytree(version[0], loose)
    assert layout_of_version(loose) is None
    h = BundleStoreHandle(loose, query_mood=mood_adapter)
    try:
        assert h.extracted_audio().height == 0
    finally:
        h.close()


def test_evaluation_reports_sounds_like_of_the_served_store(handle, segments, tmp_path) -> None:
    feats, genres = segments
    corpus = tmp_path / "corpus.csv"
    pl.DataFrame({S.TRACK_ID: list(genres), S.GENRE: list(genres.values())}).write_csv(corpus)
    out = tmp_path / "out"
    report = run_evaluation(corpus_path=corpus, out_dir=out, build_store=lambda df, wd: handle, progress=False)
    section = json.loads((out / "report.json").read_text())["sounds_like"]
    assert section == report["sounds_like"]
    assert section["n_tracks"] == feats.height and section["genres"] == sorted(SOURCES)
    served, handcrafted = section["methods"]["served"], section["methods"]["handcrafted"]
    assert served["dims"] == handle.audio_dims() and served["n"] == feats.height
    # the version's audio vectors are the standardised librosa features: the same neighbours
    assert served["precision@10"] == pytest.approx(handcrafted["precision@10"])
    assert handcrafted["precision@10"] > section["chance"] + 0.2
    md = (out / "report.md").read_text()
    assert "## Sounds like" in md and f"{served['precision@10']:.3f}" in md

    one_genre = tmp_path / "one.csv"
    pl.DataFrame({S.TRACK_ID: list(genres), S.GENRE: ["rock"] * len(genres)}).write_csv(one_genre)
    report = run_evaluation(corpus_path=one_genre, out_dir=tmp_path / "o1", build_store=lambda df, wd: handle,
                            progress=False)
    assert "1 genre(s)" in report["sounds_like"]["skipped"]
    assert "Not computed: 1 genre(s)" in (tmp_path / "o1" / "report.md").read_text()
