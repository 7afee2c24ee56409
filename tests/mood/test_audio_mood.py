"""The store's audio-mood model: the backbone's zero-shot prior, the domain gate, imputed rows."""

import numpy as np
import polars as pl
import pytest

from pipelines.audio.backbone import EMBED_DIM, MSD_TAGS, MTT_TAGS
from pipelines.audio.features import FEATURE_COLUMNS
from pipelines.mood.audio_model import fit_audio_mood_model
from pipelines.mood.audio_mood import fit_store_audio_mood_model
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


def _with_embeddings(frame: pl.DataFrame, centre: float, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    emb = (centre + rng.normal(size=(frame.height, 2 * EMBED_DIM))).astype(np.float32)
    return frame.with_columns(
        pl.Series("msd_embedding", emb[:, :EMBED_DIM].tolist(), dtype=pl.List(pl.Float32)),
        pl.Series("mtt_embedding", emb[:, EMBED_DIM:].tolist(), dtype=pl.List(pl.Float32)),
    )


def test_gate_trusts_the_trained_model_in_domain_and_the_prior_outside() -> None:
    """Training-like recordings get the trained model; others the backbone prior (valence) and a
    half-half arousal; rows without backbone outputs always get the trained model."""
    train, v, a = _audio(120, 1)
    train = train.with_columns(pl.Series("tempo", v * 3.0), pl.Series("rms_mean", a * 3.0))  # librosa carries mood
    labels = pl.DataFrame({TRACK_ID: train[TRACK_ID], "valence_sign": v, "arousal_sign": a})
    trained, _ = fit_audio_mood_model(features=train, labels=labels, feature_columns=FEATURE_COLUMNS,
                                      candidates=(("logreg", 1.0),), calibration_methods=("sigmoid",))
    inside = _with_embeddings(train, 2.0, 3)
    reference = _with_embeddings(_audio(40, 4)[0], -2.0, 5)
    model, metrics = fit_store_audio_mood_model(
        trained=trained, training_audio=inside, reference_audio=reference, priors=_priors()
    )
    assert metrics["gate_train_inside_mean"] > 0.9 and metrics["gate_train_outside_mean"] < 0.1
    test, tv, ta = _audio(60, 6)
    test = test.with_columns(pl.Series("tempo", -tv * 3.0))  # librosa says the opposite valence
    like_training, unlike = _with_embeddings(test, 2.0, 7), _with_embeddings(test, -2.0, 8)
    t = trained.predict(test)
    assert model.predict(like_training)[:, 0] == pytest.approx(t[:, 0], abs=0.1)
    out = model.predict(unlike)
    parts = model.parts(unlike)
    assert np.mean(np.sign(out[:, 0]) == tv) > 0.9  # the tags' prior, not the (wrong) librosa valence
    assert out[:, 1] == pytest.approx(0.5 * (t[:, 1] + parts["prior"][:, 1]), abs=0.1)
    no_backbone = unlike.with_columns(pl.lit(None, dtype=pl.List(pl.Float32)).alias("msd_tags"))
    assert model.predict(no_backbone) == pytest.approx(t)


def test_without_enough_training_audio_the_trained_model_is_used_everywhere() -> None:
    train, v, a = _audio(40, 9)
    labels = pl.DataFrame({TRACK_ID: train[TRACK_ID], "valence_sign": v, "arousal_sign": a})
    trained, _ = fit_audio_mood_model(features=train, labels=labels, feature_columns=FEATURE_COLUMNS,
                                      candidates=(("logreg", 1.0),), calibration_methods=("sigmoid",))
    model, metrics = fit_store_audio_mood_model(
        trained=trained, training_audio=_with_embeddings(train, 2.0, 1).head(1),
        reference_audio=_with_embeddings(train, -2.0, 2), priors=_priors(),
    )
    assert model.gate is None and metrics["gate_train_inside_mean"] is None
    test = _with_embeddings(_audio(10, 3)[0], -2.0, 4)
    pred, t = model.predict(test), trained.predict(test)
    assert pred[:, :2] == pytest.approx(t[:, :2])


def test_tag_arousal_joins_the_arousal_mix_when_training_signs_are_given() -> None:
    """The tag model learns arousal from the training clips' tags (here MTT fast/slow), is scaled on
    the reference clips, and takes a third of the out-of-domain arousal (half in domain)."""
    train, v, a = _audio(120, 11)
    labels = pl.DataFrame({TRACK_ID: train[TRACK_ID], "valence_sign": v, "arousal_sign": a})
    trained, _ = fit_audio_mood_model(features=train, labels=labels, feature_columns=FEATURE_COLUMNS,
                                      candidates=(("logreg", 1.0),), calibration_methods=("sigmoid",))
    model, metrics = fit_store_audio_mood_model(
        trained=trained, training_audio=_with_embeddings(train, 2.0, 12),
        reference_audio=_with_embeddings(_audio(40, 13)[0], -2.0, 14), priors=_priors(),
        arousal_signs=labels.select(TRACK_ID, "arousal_sign"),
    )
    assert model.tag_arousal is not None and metrics["tag_arousal_clips"] == 120
    test, _, ta = _audio(60, 15)
    unlike, like = _with_embeddings(test, -2.0, 16), _with_embeddings(test, 2.0, 17)
    parts = model.parts(unlike)
    tag = parts["tag_arousal"]
    assert np.all(np.abs(tag) <= 1.0) and np.mean(np.sign(tag) == ta) > 0.9
    t, prior, g = parts["trained"][:, 1], parts["prior"][:, 1], parts["gate"]
    expected = g * 0.5 * (t + tag) + (1 - g) * (t + tag + prior) / 3.0
    assert model.predict(unlike)[:, 1] == pytest.approx(expected, abs=1e-9)
    p_like = model.parts(like)
    assert model.predict(like)[:, 1] == pytest.approx(0.5 * (p_like["trained"][:, 1] + p_like["tag_arousal"]), abs=0.05)
    one_sign = labels.with_columns(pl.lit(1).alias("arousal_sign")).select(TRACK_ID, "arousal_sign")
    no_tag, _ = fit_store_audio_mood_model(
        trained=trained, training_audio=_with_embeddings(train, 2.0, 12),
        reference_audio=_with_embeddings(_audio(40, 13)[0], -2.0, 14), priors=_priors(), arousal_signs=one_sign,
    )
    assert no_tag.tag_arousal is None  # one sign only: nothing to learn, the older mix
