"""Track mood: fusion logic, labels from the real label files, the plan baseline, and the audio
mood model fitted on real audio features of the 28 immich tracks (+ a few rendered EMOPIA clips
when FluidSynth is available)."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines import store
from pipelines.mood.lexicon import MoodLexicon
from pipelines.mood.audio_model import (
    AROUSAL_SIGN,
    VALENCE_SIGN,
    AudioMoodModel,
    emopia_labels,
    emopia_midi_path,
    expected_calibration_error,
    fit_audio_mood_model,
    fuse_track_moods,
    grouped_folds,
    pool_moods,
    song_groups,
    immich_labels,
    is_finite_prediction,
    plan_baseline_mood,
)
from pipelines.schema import AROUSAL, MOOD_CONFIDENCE, MOOD_SOURCE, TRACK_ID, VALENCE
from tests.helpers import have_open_file

DATA_DIR = store.DATA_DIR


# ----------------------------------------------------------------------------- fusion
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
    assert df[MOOD_SOURCE].to_list() == ["fused", "audio", "imputed", "text", "prior", "fused"]
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
    assert (v[4], a[4], c[4]) == (0.0, 0.0, 0.0)
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


# ----------------------------------------------------------------------------- labels
@pytest.mark.skipif(not have_open_file("emopia/labels.csv"), reason="EMOPIA labels not found")
def test_emopia_labels() -> None:
    df = emopia_labels(data_dir=DATA_DIR)
    assert df.height == 990
    assert set(df["split"].unique()) == {"train", "val"}
    assert df.filter(pl.col("split") == "val").height == 114
    q = dict(zip(df["quadrant"].to_list(), zip(df[VALENCE_SIGN].to_list(), df[AROUSAL_SIGN].to_list())))
    assert q == {1: (1, 1), 2: (-1, 1), 3: (-1, -1), 4: (1, -1)}


@pytest.mark.skipif(not have_open_file("audio/immich/labels.csv"), reason="immich tracks not found")
def test_immich_labels_from_glasgow() -> None:
    lex = MoodLexicon.from_files(data_dir=DATA_DIR)
    df = immich_labels(data_dir=DATA_DIR, lexicon=lex)
    assert df.height == 28
    calm = df.filter(pl.col("mood") == "calm").row(0, named=True)
    assert calm[VALENCE] == pytest.approx((7.343 - 5) / 4)
    assert calm[AROUSAL] == pytest.approx((3.743 - 5) / 4)
    # words the Glasgow norms do not rate stay null (no invented targets)
    unrated = df.filter(pl.col("mood").is_in(["energetic", "nostalgic"]))
    assert unrated.height > 0 and unrated[VALENCE].null_count() == unrated.height
    assert all(Path(p).exists() for p in df["path"].to_list())


# ----------------------------------------------------------------------------- audio model
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


@pytest.fixture(scope="module")
def real_features(tmp_path_factory) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Audio features (first 12 s) of the 28 immich tracks and 12 EMOPIA clips rendered from
    their MIDI with the FluidSynth CLI (2 train + 1 val clip per quadrant), and their labels."""
    if not (have_open_file("audio/immich/labels.csv") and have_open_file("emopia/labels.csv")):
        pytest.skip("immich tracks or EMOPIA clips not found")
    if shutil.which("fluidsynth") is None or not SOUNDFONT.exists():
        pytest.skip("fluidsynth / FluidR3_GM soundfont not installed")
    os.environ.setdefault("NUMBA_CACHE_DIR", str(store.REPO_ROOT / ".numba_cache"))
    from pipelines.audio.features import extract_many

    lex = MoodLexicon.from_files(data_dir=DATA_DIR)
    imm = immich_labels(data_dir=DATA_DIR, lexicon=lex).with_columns(pl.lit("train").alias("split"))
    emo = emopia_labels(data_dir=DATA_DIR).sort("clip_id")
    picked = pl.concat(
        [emo.filter((pl.col("quadrant") == q) & (pl.col("split") == "train")).head(2) for q in range(1, 5)]
        + [emo.filter((pl.col("quadrant") == q) & (pl.col("split") == "val")).head(1) for q in range(1, 5)]
    )
    out = tmp_path_factory.mktemp("emopia_wav")
    items = list(zip(imm[TRACK_ID].to_list(), imm["path"].to_list()))
    for cid in picked["clip_id"].to_list():
        wav = out / f"{cid}.wav"
        subprocess.run(
            ["fluidsynth", "-ni", "-q", "-g", "0.7", "-F", str(wav), "-T", "wav", "-r", "22050",
             str(SOUNDFONT), str(emopia_midi_path(data_dir=DATA_DIR, clip_id=cid))],
            check=True, capture_output=True, timeout=120,
        )
        items.append((cid, str(wav)))
    feats = extract_many(items=items, workers=2, duration=12.0)
    assert feats["audio_error"].null_count() == feats.height, feats["audio_error"].drop_nulls().to_list()
    labels = pl.concat(
        [
            imm.select(TRACK_ID, VALENCE, AROUSAL, "split"),
            picked.select(pl.col("clip_id").alias(TRACK_ID), VALENCE_SIGN, AROUSAL_SIGN, "split"),
        ],
        how="diagonal_relaxed",
    )
    return feats, labels


def _feature_columns() -> list[str]:
    from pipelines.audio.features import FEATURE_COLUMNS

    return [c for c in FEATURE_COLUMNS if c != "key"]


def test_plan_baseline_on_real_features(real_features) -> None:
    feats, _ = real_features
    out = plan_baseline_mood(feats)
    assert out.shape == (feats.height, 2)
    assert np.isfinite(out).all() and (np.abs(out) <= 1).all()


def test_audio_mood_model_on_real_audio(real_features, tmp_path: Path) -> None:
    feats, labels = real_features
    model, metrics = fit_audio_mood_model(
        features=feats, labels=labels, feature_columns=_feature_columns(),
        candidates=[("logreg", 0.1), ("xgb", 30.0)], n_folds=3,
    )
    assert isinstance(model, AudioMoodModel)
    assert metrics["n_val"] == 4 and metrics["n_train"] == feats.height - 4
    # selection is by grouped CV on train rows: every candidate scored on both axes
    assert set(metrics["cv"]) == {"logreg_0.1", "xgb_30"}
    for axis in ("valence", "arousal"):
        assert set(metrics["cv"]["logreg_0.1"][axis]) >= {"acc", "auc", "log_loss", "brier", "ece"}
        assert metrics["chosen"][axis]["kind"] in {"logreg", "xgb"}
        assert metrics["calibration"][axis]["method"] in {"sigmoid", "isotonic"}
    for key in ("val", "val_uncalibrated", "val_plan_baseline"):
        assert set(metrics[key]) >= {"quadrant_acc", "valence_sign_acc", "arousal_sign_acc",
                                     "valence_brier", "arousal_brier", "valence_ece", "arousal_ece"}
    pred = model.predict(feats)
    assert pred.shape == (feats.height, 3) and is_finite_prediction(pred)
    # fitted on train rows: it must at least separate the training arousal signs
    joined = labels.filter(pl.col("split") == "train").join(feats, on=TRACK_ID)
    joined = joined.filter(pl.col(AROUSAL).is_not_null() | pl.col(AROUSAL_SIGN).is_not_null())
    sign = joined.select(pl.coalesce(pl.col(AROUSAL).sign(), pl.col(AROUSAL_SIGN))).to_series().to_numpy()
    fit_pred = model.predict(joined)
    assert np.mean(np.where(fit_pred[:, 1] > 0, 1, -1) == sign) > 0.75
    # null features are filled, not propagated
    holey = feats.head(2).with_columns(pl.lit(None, dtype=pl.Float64).alias("tempo"))
    assert is_finite_prediction(model.predict(holey))


def test_val_rows_do_not_influence_the_model(real_features) -> None:
    """Flipping every val label must leave the fitted model (selection, calibration) unchanged."""
    feats, labels = real_features
    kw = dict(features=feats, feature_columns=_feature_columns(), candidates=[("logreg", 0.1), ("logreg", 1.0)], n_folds=3)
    _, m1 = fit_audio_mood_model(labels=labels, **kw)
    flipped = labels.with_columns(
        pl.when(pl.col("split") == "val").then(-pl.col(VALENCE_SIGN)).otherwise(pl.col(VALENCE_SIGN)).alias(VALENCE_SIGN)
    )
    model2, m2 = fit_audio_mood_model(labels=flipped, **kw)
    assert m1["cv"] == m2["cv"] and m1["chosen"] == m2["chosen"] and m1["calibration"] == m2["calibration"]
    assert m1["val"]["valence_sign_acc"] + m2["val"]["valence_sign_acc"] == pytest.approx(1.0)


@pytest.mark.skipif(not have_open_file("emopia/labels.csv"), reason="EMOPIA labels not found")
def test_song_groups_keep_emopia_songs_in_one_fold() -> None:
    df = emopia_labels(data_dir=DATA_DIR)
    train = df.filter(pl.col("split") == "train")
    groups = song_groups(track_ids=train["clip_id"].to_list())
    assert groups[0].startswith("emopia:") and song_groups(track_ids=["calm_acoustic_1"])[0] == "track:calm_acoustic_1"
    # a song id with underscores keeps them ("Q4_d_49EtXDMFE_2" → "d_49EtXDMFE")
    assert song_groups(track_ids=["Q4_d_49EtXDMFE_2"])[0] == "emopia:d_49EtXDMFE"
    # clips of one song across quadrants share the group; the official split never splits a song
    assert len(set(groups)) < train.height
    strata = train["quadrant"].to_numpy()
    folds = grouped_folds(groups=groups, strata=strata, n_splits=5, seed=0)
    assert len(folds) == 5
    seen = np.zeros(train.height, dtype=int)
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
        seen[te] += 1
    assert (seen == 1).all()


def test_expected_calibration_error() -> None:
    y = np.array([0, 0, 1, 1] * 25)
    assert expected_calibration_error(p=y.astype(float), y=y) == 0.0
    assert expected_calibration_error(p=np.full(100, 0.5), y=y) == pytest.approx(0.0)
    # always saying 0.9 for a 50/50 outcome is off by 0.4
    assert expected_calibration_error(p=np.full(100, 0.9), y=y) == pytest.approx(0.4)


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


def test_fit_rejects_single_class_axis(real_features) -> None:
    feats, labels = real_features
    # the immich Glasgow targets are all positive-valence (calm, happy, tender): not learnable alone
    imm_only = labels.filter(pl.col(VALENCE).is_not_null())
    with pytest.raises(ValueError):
        fit_audio_mood_model(features=feats, labels=imm_only, feature_columns=_feature_columns())
