"""The store's audio-mood model: feature sets chosen by CV, backbone rows vs imputed rows."""

import numpy as np
import polars as pl
import pytest

from pipelines.audio.backbone import MSD_TAGS, MTT_TAGS
from pipelines.audio.features import FEATURE_COLUMNS
from pipelines.mood.audio_mood import LIBROSA, fit_store_audio_mood_model
from pipelines.mood.backbone_features import BACKBONE_FEATURES, TagPriorTable, backbone_features, has_backbone
from pipelines.mood.priors import TagPrior, TagPriors
from pipelines.schema import TRACK_ID


def _priors() -> TagPriorTable:
    return TagPriorTable.from_priors(
        TagPriors(
            priors={"happy": TagPrior(0.9, 0.6, 0.9, 100), "sad": TagPrior(-0.5, -0.3, 0.9, 100),
                    "fast": TagPrior(0.3, 0.5, 0.5, 40)},
            mean=(0.3, 0.2),
            items={},
        )
    )


def _audio(n: int, seed: int) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Librosa columns are noise; the MSD happy/sad and MTT fast/slow tags carry the mood."""
    rng = np.random.default_rng(seed)
    v, a = rng.choice([-1, 1], n), rng.choice([-1, 1], n)
    msd = rng.uniform(0.0, 0.2, (n, len(MSD_TAGS)))
    mtt = rng.uniform(0.0, 0.2, (n, len(MTT_TAGS)))
    msd[:, MSD_TAGS.index("happy")] = np.where(v > 0, 0.7, 0.1) + rng.uniform(0, 0.2, n)
    msd[:, MSD_TAGS.index("sad")] = np.where(v < 0, 0.7, 0.1) + rng.uniform(0, 0.2, n)
    mtt[:, MTT_TAGS.index("fast")] = np.where(a > 0, 0.7, 0.1) + rng.uniform(0, 0.2, n)
    mtt[:, MTT_TAGS.index("slow")] = np.where(a < 0, 0.7, 0.1) + rng.uniform(0, 0.2, n)
    data = {TRACK_ID: [f"song{i // 2}_{i % 2}" for i in range(n)]}
    data |= {c: rng.normal(size=n) for c in FEATURE_COLUMNS}
    frame = pl.DataFrame(data).with_columns(
        pl.Series("msd_tags", msd.astype(np.float32).tolist(), dtype=pl.List(pl.Float32)),
        pl.Series("mtt_tags", mtt.astype(np.float32).tolist(), dtype=pl.List(pl.Float32)),
    )
    return frame, v, a


def test_backbone_features_shape_and_zero_shot() -> None:
    frame, v, _ = _audio(20, 0)
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col("msd_tags"))
                               .alias("msd_tags"))
    feats = backbone_features(frame, _priors())
    assert feats.columns == [TRACK_ID, *BACKBONE_FEATURES]
    assert has_backbone(frame).tolist() == [False] + [True] * 19
    row0 = feats.row(0)[1:]
    assert all(np.isnan(x) for x in row0)  # no backbone outputs: every feature missing
    prior_v = feats.get_column("bb_prior_valence").to_numpy()[1:]
    assert np.corrcoef(prior_v, v[1:])[0, 1] > 0.8  # happy/sad probabilities move the zero-shot valence


def test_fit_chooses_backbone_and_scores_imputed_rows_with_librosa() -> None:
    frame, v, a = _audio(160, 1)
    labels = pl.DataFrame({TRACK_ID: frame[TRACK_ID], "valence_sign": v, "arousal_sign": a,
                           "split": ["train"] * 120 + ["val"] * 40})
    model, metrics = fit_store_audio_mood_model(
        audio=frame, labels=labels, priors=_priors(), candidates=(("logreg", 1.0),), calibration_methods=("sigmoid",)
    )
    assert model.chosen != LIBROSA
    assert metrics["cv_by_feature_set"][model.chosen] > metrics["cv_by_feature_set"][LIBROSA] + 0.2
    test, tv, ta = _audio(60, 2)
    pred = model.predict(test)
    assert pred.shape == (60, 3)
    assert np.mean(np.sign(pred[:, 0]) == tv) > 0.9 and np.mean(np.sign(pred[:, 1]) == ta) > 0.9
    imputed = test.with_columns(pl.lit(None, dtype=pl.List(pl.Float32)).alias("msd_tags"))
    want = model.librosa_model.predict(imputed)
    assert model.predict(imputed) == pytest.approx(want)
