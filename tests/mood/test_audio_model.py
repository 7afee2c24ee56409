"""The audio mood model fitted on real audio features of the 28 immich tracks and a few EMOPIA
clips rendered with the FluidSynth CLI."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines import store
from pipelines.audio.extract import extract_many
from pipelines.audio.features import FEATURE_COLUMNS
from pipelines.mood.audio_model import AudioMoodModel, fit_audio_mood_model
from pipelines.mood.fusion import is_finite_prediction, plan_baseline_mood
from pipelines.mood.labels import AROUSAL_SIGN, VALENCE_SIGN, emopia_labels, immich_labels
from pipelines.mood.lexicon import MoodLexicon, resolve_open_file
from pipelines.schema import AROUSAL, TRACK_ID, VALENCE
from tests.helpers import have_open_file

DATA_DIR = store.DATA_DIR


SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


@pytest.fixture(scope="module")
def real_features(tmp_path_factory) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Audio features (first 12 s) of the 28 immich tracks and 12 EMOPIA clips rendered from
    their MIDI with the FluidSynth CLI (2 train + 1 val clip per quadrant), and their labels."""
    if not (have_open_file("audio/immich/labels.csv") and have_open_file("emopia/labels.csv")):
        pytest.skip("immich tracks or EMOPIA clips not found")
    if shutil.which("fluidsynth") is None or not SOUNDFONT.exists():
        pytest.skip("fluidsynth / FluidR3_GM soundfont not installed")
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
             str(SOUNDFONT), str(resolve_open_file(data_dir=DATA_DIR, relative=f"emopia/midis/{cid}.mid"))],
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
    kw = dict(features=feats, feature_columns=_feature_columns(), candidates=[("logreg", 0.1), ("logreg", 1.0)],
              n_folds=3)
    _, m1 = fit_audio_mood_model(labels=labels, **kw)
    flipped = labels.with_columns(
        pl.when(pl.col("split") == "val").then(-pl.col(VALENCE_SIGN)).otherwise(pl.col(VALENCE_SIGN))
        .alias(VALENCE_SIGN)
    )
    model2, m2 = fit_audio_mood_model(labels=flipped, **kw)
    assert m1["cv"] == m2["cv"] and m1["chosen"] == m2["chosen"] and m1["calibration"] == m2["calibration"]
    assert m1["val"]["valence_sign_acc"] + m2["val"]["valence_sign_acc"] == pytest.approx(1.0)


def test_fit_rejects_single_class_axis(real_features) -> None:
    feats, labels = real_features
    # the immich Glasgow targets are all positive-valence (calm, happy, tender): not learnable alone
    imm_only = labels.filter(pl.col(VALENCE).is_not_null())
    with pytest.raises(ValueError):
        fit_audio_mood_model(features=feats, labels=imm_only, feature_columns=_feature_columns())
