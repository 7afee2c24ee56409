"""Fusion of per-track audio and text moods, pooling of same-kind evidences, the audio baseline."""

import numpy as np
import polars as pl
import pytest

from pipelines.errors import InvalidInputError
from pipelines.mood.fusion import (
    fuse_evidences,
    fuse_track_moods,
    is_finite_prediction,
    plan_baseline_mood,
    pool_moods,
)
from pipelines.schema import AROUSAL, MOOD_CONFIDENCE, MOOD_SOURCE, TRACK_ID, VALENCE


def test_fusion_sources_and_weights() -> None:
    nan = np.nan
    audio = np.array(
        [
            [0.8, 0.6, 0.9],  # fused with text
            [0.5, -0.5, 0.4],  # audio only
            [-0.2, 0.3, 0.2],  # imputed audio only
            [nan, nan, nan],  # text only
            [nan, nan, nan],  # nothing
            [0.4, 0.4, 0.0],  # both zero-confidence → plain mean
        ]
    )
    imputed = np.array([False, False, True, False, False, False])
    text = np.array(
        [
            [0.2, 0.0, 0.3],
            [nan, nan, nan],
            [nan, nan, nan],
            [-0.7, -0.4, 0.6],
            [nan, nan, nan],
            [-0.4, 0.0, 0.0],
        ]
    )
    df = fuse_track_moods(
        track_ids=[f"t{i}" for i in range(6)], audio_pred=audio, audio_is_imputed=imputed, text_pred=text
    )
    assert df.columns == [TRACK_ID, VALENCE, AROUSAL, MOOD_SOURCE, MOOD_CONFIDENCE]
    assert df[MOOD_SOURCE].to_list() == ["fused", "audio", "imputed", "text", None, "fused"]
    v, a, c = df[VALENCE].to_numpy(), df[AROUSAL].to_numpy(), df[MOOD_CONFIDENCE].to_numpy()
    # weights 0.9 / 0.3 → 0.75 / 0.25
    assert v[0] == pytest.approx(0.75 * 0.8 + 0.25 * 0.2)
    assert a[0] == pytest.approx(0.75 * 0.6)
    d = np.hypot(0.6, 0.6)
    assert c[0] == pytest.approx((0.81 + 0.09) / 1.2 * (1 - d / (2 * np.sqrt(2))))
    assert c[0] < 0.9  # disagreement costs confidence
    assert (v[1], a[1], c[1]) == (0.5, -0.5, 0.4)
    assert (v[2], c[2]) == (-0.2, 0.2)
    assert (v[3], a[3], c[3]) == (-0.7, -0.4, 0.6)
    assert df[VALENCE][4] is None and df[AROUSAL][4] is None and c[4] == 0.0  # no evidence, no mood
    assert v[5] == pytest.approx(0.0) and a[5] == pytest.approx(0.2) and c[5] == 0.0


def test_fusion_agreement_keeps_confidence_and_clips() -> None:
    audio = np.array([[0.5, 0.5, 0.8], [1.7, -3.0, 1.5]])
    text = np.array([[0.5, 0.5, 0.8], [np.nan, np.nan, np.nan]])
    df = fuse_track_moods(track_ids=["a", "b"], audio_pred=audio, audio_is_imputed=None, text_pred=text)
    assert df[MOOD_CONFIDENCE][0] == pytest.approx(0.8)
    assert df[VALENCE][1] == 1.0 and df[AROUSAL][1] == -1.0 and df[MOOD_CONFIDENCE][1] == 1.0


def test_fusion_none_inputs_and_shape_check() -> None:
    text = np.array([[0.1, 0.2, 0.3]])
    df = fuse_track_moods(track_ids=["x"], audio_pred=None, audio_is_imputed=None, text_pred=text)
    assert df[MOOD_SOURCE].to_list() == ["text"]
    with pytest.raises(ValueError):
        fuse_track_moods(track_ids=["x", "y"], audio_pred=None, audio_is_imputed=None, text_pred=text)


def test_pool_moods() -> None:
    nan = np.nan
    q = np.array([[0.5, 0.5, 0.6], [0.2, -0.2, 0.5], [nan, nan, nan], [nan, nan, nan], [0.6, 0.6, 0.5]])
    t = np.array([[0.5, 0.5, 0.4], [nan, nan, nan], [-0.4, 0.3, 0.3], [nan, nan, nan], [-0.6, -0.6, 0.5]])
    out = pool_moods(preds=[q, t])
    assert out[0, :2] == pytest.approx([0.5, 0.5]) and out[0, 2] == pytest.approx(1 - 0.4 * 0.6)
    assert out[1] == pytest.approx(q[1]) and out[2] == pytest.approx(t[2])
    assert np.isnan(out[3]).all()
    # contradicting evidences cancel and lose confidence
    assert out[4, :2] == pytest.approx([0.0, 0.0]) and out[4, 2] < 0.75 * 0.5
    with pytest.raises(ValueError):
        pool_moods(preds=[q, t[:2]])


def test_plan_baseline_formula_and_ranges() -> None:
    feats = pl.DataFrame({
        "tempo": [200.0, 60.0, None], "rms_mean": [0.5, 0.0, 0.1], "spectral_centroid_mean": [5000.0, 500.0, 900.0],
        "pulse_clarity": [1.0, 0.0, 0.5], "chroma_std": [0.1, 0.3, 0.2], "spectral_flux_mean": [0.1, 0.3, 0.2],
    })
    out = plan_baseline_mood(feats)
    # loud, fast, bright, steady harmony → both axes at the top; quiet, slow, dark → the bottom
    assert out[0] == pytest.approx([1.0, 1.0]) and out[1] == pytest.approx([-1.0, -1.0])
    assert np.isfinite(out).all()  # a null input is neutral, never NaN


def test_is_finite_prediction() -> None:
    assert is_finite_prediction(np.array([[0.5, -1.0, 0.2]]))
    assert not is_finite_prediction(np.array([[np.nan, 0.0, 0.2]]))
    assert not is_finite_prediction(np.array([[1.5, 0.0, 0.2]])) and not is_finite_prediction(np.array([[0, 0, 1.1]]))


def test_fuse_evidences_names_what_a_mood_rests_on() -> None:
    nan = [np.nan] * 3
    audio = np.array([[0.6, 0.2, 0.4], nan, [0.2, 0.2, 0.3], nan, nan])
    genre = np.array([[0.0, 0.4, 0.2], [0.3, -0.1, 0.15], [-0.2, 0.0, 0.1], nan, [0.1, 0.1, 0.2]])
    artist = np.array([nan, nan, [0.5, 0.5, 0.4], nan, [0.3, 0.3, 0.1]])
    kinds = np.array(["audio", "audio", "imputed", "audio", "audio"])
    df = fuse_evidences(track_ids=list("abcde"), evidences=[
        (audio, kinds), (None, np.full(5, "text")), (genre, np.full(5, "genre")), (artist, np.full(5, "artist")),
    ])
    # own audio + genre → fused; genre alone → genre; imputed audio + priors → the most confident
    # kind; nothing → null; genre + artist without own evidence → the most confident kind
    assert df[MOOD_SOURCE].to_list() == ["fused", "genre", "artist", None, "genre"]
    v, a, c = df[VALENCE].to_list(), df[AROUSAL].to_list(), df[MOOD_CONFIDENCE].to_list()
    assert v[0] == pytest.approx((0.4 * 0.6 + 0.2 * 0.0) / 0.6) and a[0] == pytest.approx((0.4 * 0.2 + 0.2 * 0.4) / 0.6)
    d = np.hypot(0.6, 0.2)
    assert c[0] == pytest.approx((0.16 + 0.04) / 0.6 * (1 - d / (2 * np.sqrt(2))))
    assert (v[1], a[1], c[1]) == (0.3, -0.1, 0.15)
    assert v[2] == pytest.approx((0.3 * 0.2 + 0.1 * -0.2 + 0.4 * 0.5) / 0.8)
    assert v[3] is None and c[3] == 0.0
    with pytest.raises(InvalidInputError):
        fuse_evidences(track_ids=["a"], evidences=[(np.zeros((2, 3)), np.array(["audio"]))])
