"""The learned ranker's feature matrix and the weak relevance grades, on small real arrays."""

import numpy as np
import polars as pl

from pipelines import schema as S
from pipelines.rank.features import FEATURE_NAMES, TermIndex, feature_matrix
from pipelines.rank.ranker_training import grades
from pipelines.rank.retrieve import Candidates
from pipelines.rank.score import TrackPriors, score
from pipelines.rank.understand import QueryUnderstanding


def _tracks() -> pl.DataFrame:
    return pl.DataFrame({
        S.TRACK_ID: ["a", "b", "c", "d"],
        S.GENRE: ["Rock", "Jazz|Blues", None, "rock"],
        S.TAGS: [["guitar", "sad"], ["piano"], None, ["Hip-Hop "]],
        S.PLAYBACK_COUNT: [10, None, 1000, 5],
        S.VALENCE: [0.6, -0.5, None, 0.2],
        S.AROUSAL: [0.4, -0.3, None, -0.6],
        S.MOOD_SOURCE: ["audio", "fused", None, "imputed"],
        S.MOOD_CONFIDENCE: [0.9, 0.5, None, 0.2],
        S.AUDIO_SOURCE: ["extracted", "ensemble", "none", "ensemble"],
    }, schema_overrides={S.VALENCE: pl.Float32, S.AROUSAL: pl.Float32, S.MOOD_CONFIDENCE: pl.Float32})


def _request(tracks: pl.DataFrame, *, audio: bool = True, query_type: str = "mood"):
    has_audio = np.array([True, True, False, True])
    has_mood = np.array([True, True, False, True])
    priors = TrackPriors.from_tracks(tracks, has_audio=has_audio, has_mood=has_mood)
    rows = np.array([0, 1, 2, 3], np.int64)
    cands = Candidates(
        rows=rows, text_sim=np.array([0.5, 0.2, 0.1, 0.4], np.float32),
        audio_sim=np.array([0.9, 0.3, np.nan, 0.1], np.float32),
        audio_query=np.ones(4, np.float32) / 2 if audio else None,
        audio_query_source="target_mood" if audio else "none",
        merged=4, text=None, _text_vectors=np.zeros((4, 4), np.float32), _decoded=np.ones(4, bool),
    )
    qu = QueryUnderstanding(embedding=np.zeros(4, np.float32), valence=0.5, arousal=0.3, confidence=0.8,
                            query_type=query_type, matched={"genre": ["rock"], "attribute": ["guitar"]})
    return cands, qu, priors, score(cands, qu, priors)


def test_feature_matrix_columns_carry_the_request() -> None:
    tracks = _tracks()
    cands, qu, priors, sb = _request(tracks)
    x = feature_matrix(cands, qu, priors, sb, terms=TermIndex.from_tracks(tracks))
    assert x.shape == (4, len(FEATURE_NAMES)) and x.dtype == np.float32
    f = {name: x[:, j] for j, name in enumerate(FEATURE_NAMES)}
    np.testing.assert_allclose(f["q_valence"], 0.5)
    np.testing.assert_allclose(f["q_type_mood"], 1.0)
    np.testing.assert_allclose(f["text_rank"], [1.0, 1 / 3, 0.0, 2 / 3], atol=1e-6)
    np.testing.assert_allclose(f["text_gap"], [0.0, -0.3, -0.4, -0.1], atol=1e-6)
    np.testing.assert_allclose(f["audio_sim"], [0.9, 0.3, 0.0, 0.1], atol=1e-6)
    np.testing.assert_allclose(f["audio_extracted"], [1, 0, 0, 0])
    # same quadrant as the query (+, +) only for track a; c has no mood
    np.testing.assert_allclose(f["va_agree"], [1, 0, 0, 0])
    np.testing.assert_allclose(f["mood_from_audio"], [1, 0, 0, 0])
    np.testing.assert_allclose(f["mood_imputed"], [0, 0, 1, 1])
    # query terms rock + guitar: a has both, d has rock (genre, any case), b and c none
    np.testing.assert_allclose(f["tag_overlap"], [1.0, 0.0, 0.0, 0.5])
    np.testing.assert_allclose(f["hand_total"], sb.total)


def test_without_an_audio_query_the_audio_columns_are_zero() -> None:
    cands, qu, priors, sb = _request(_tracks(), audio=False, query_type="default")
    x = feature_matrix(cands, qu, priors, sb)
    f = {name: x[:, j] for j, name in enumerate(FEATURE_NAMES)}
    for name in ("has_audio_query", "audio_sim", "audio_rank", "audio_evidence", "tag_overlap", "q_type_mood"):
        np.testing.assert_allclose(f[name], 0.0)
    np.testing.assert_allclose(f["q_type_default"], 1.0)


def test_feature_matrix_of_no_candidates_is_empty() -> None:
    tracks = _tracks()
    cands, qu, priors, _ = _request(tracks)
    empty = Candidates(rows=np.zeros(0, np.int64), text_sim=np.zeros(0, np.float32),
                       audio_sim=np.zeros(0, np.float32), audio_query=None, audio_query_source="none", merged=0,
                       text=None, _text_vectors=np.zeros((0, 4), np.float32), _decoded=np.zeros(0, bool))
    x = feature_matrix(empty, qu, priors, score(empty, qu, priors))
    assert x.shape == (0, len(FEATURE_NAMES))


def test_grades_follow_quadrant_and_distance() -> None:
    labels = np.array([[0.5, 0.5], [0.45, 0.3], [0.1, 0.05], [-0.5, 0.5], [0.5, -0.9], [-0.5, -0.5]])
    # gain = 1 − dist/√2: 0.93, 0.92 (same quadrant, close) → 4; 0.62 (same quadrant) → 2; far → 0
    assert grades(labels, (0.5, 0.4)).tolist() == [4, 4, 2, 0, 0, 0]
    # across the valence axis but near: the gain still counts, the quadrant bonus does not
    assert grades(np.array([[-0.05, 0.4], [-0.2, 0.4], [0.3, 0.4]]), (0.05, 0.4)).tolist() == [2, 1, 3]
