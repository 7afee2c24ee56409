"""Audio imputation ensemble (kNN / XGBoost regression / prototype) on real extracted features.

Real data: the bundled immich clips (generated music with recorded mood, style, prompt BPM and key)
are decoded and analysed (6 s each); their text is the recorded style and mood, their metadata the
prompt BPM. Nothing here is invented: features come from the audio, text from labels.csv.
"""

import numpy as np
import polars as pl
import pytest

from pipelines.audio.extract import extract_many
from pipelines.audio.features import FEATURE_COLUMNS
from pipelines.audio.impute import MEMBERS, RegressionConfig, impute_audio_features
from pipelines.schema import AUDIO_ERROR
from tests.audio.clips import AUDIO_ROOT

IMMICH = AUDIO_ROOT / "immich"
GROUPS = {"rhythm", "energy", "spectral", "harmony", "timbre"}


@pytest.fixture(scope="module")
def immich(embed_cached) -> dict:
    """Real (features, text vectors, style, prompt bpm) for every labelled immich clip that decodes."""
    labels_path = IMMICH / "labels.csv"
    if not labels_path.is_file():
        pytest.skip("immich audio absent")
    labels = pl.read_csv(labels_path)
    labels = labels.filter(pl.col("path").map_elements(lambda p: (IMMICH / p).is_file(), return_dtype=pl.Boolean))
    items = [(str(i), str(IMMICH / p)) for i, p in enumerate(labels["path"])]
    feats = extract_many(items=items, workers=1, duration=6.0)
    ok = feats[AUDIO_ERROR].is_null().to_numpy()
    labels = labels.filter(pl.Series(ok))
    texts = [f"{m} {s} music" for m, s in zip(labels["mood"], labels["style"])]
    return {
        "ids": [f"immich-{i}" for i in range(labels.height)],
        "x": feats.filter(pl.Series(ok)).select(FEATURE_COLUMNS).to_numpy(),
        "text": embed_cached(texts),
        "style": labels["style"].to_list(),
        "mood": labels["mood"].to_list(),
        "meta": labels.select(pl.col("bpm_prompt").cast(pl.Float64)).to_numpy(),
    }


def _run(d: dict, train: np.ndarray, target: np.ndarray, **kw):
    return impute_audio_features(
        audio_ids=[d["ids"][i] for i in train], audio_matrix=d["x"][train], audio_text=d["text"][train],
        audio_has_text=np.ones(len(train), dtype=bool), audio_genres=[d["style"][i] for i in train],
        target_ids=[d["ids"][i] for i in target], target_text=d["text"][target],
        target_has_text=np.ones(len(target), dtype=bool), target_genres=[d["style"][i] for i in target],
        audio_meta=d["meta"][train], target_meta=d["meta"][target], feature_names=FEATURE_COLUMNS, **kw,
    )


def test_ensemble_validation_and_sources(immich: dict) -> None:
    n = len(immich["ids"])
    assert n >= 20
    train, target = np.arange(0, n, 1)[: n - 4], np.arange(n - 4, n)
    result = _run(immich, train, target)
    v = result.validation
    assert v["n_held_out"] >= 2 and v["n_audio_with_text"] == len(train)
    for member in (*MEMBERS, "ensemble", "global_mean"):
        assert set(v[member]["mae_by_group"]) == GROUPS, member
        assert np.isfinite(v[member]["mae_std_units"]) and -1.0 <= v[member]["cosine"] <= 1.0
    assert set(v["weights"]) == set(MEMBERS)
    assert sum(v["weights"].values()) == pytest.approx(1.0, abs=1e-6)
    assert v["regression_fit_s"] >= 0.0
    assert result.features.shape == (4, len(FEATURE_COLUMNS)) and np.all(np.isfinite(result.features))
    assert set(result.source) <= {"ensemble", "knn", "regression", "prototype"}
    assert np.all((result.confidence >= 0) & (result.confidence <= 1))


def test_imputation_beats_the_global_mean_on_unseen_tracks(immich: dict) -> None:
    """Leave-one-out over every other clip: text/metadata members must carry real signal about the audio."""
    n = len(immich["ids"])
    x = np.nan_to_num(immich["x"])
    mu, sd = x.mean(axis=0), np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
    errs, base = [], []
    for i in range(0, n, 2):
        train = np.setdiff1d(np.arange(n), [i])
        r = _run(immich, train, np.array([i]), regression=RegressionConfig(n_estimators=30))
        truth = (x[i] - mu) / sd
        errs.append(np.abs((r.features[0] - mu) / sd - truth).mean())
        base.append(np.abs((x[train].mean(axis=0) - mu) / sd - truth).mean())
    assert np.mean(errs) < 0.9 * np.mean(base), (np.mean(errs), np.mean(base))


def test_without_text_targets_fall_back_to_prototypes(immich: dict) -> None:
    n = len(immich["ids"])
    train = np.arange(n - 2)  # the last two clips stand for tracks without audio
    r = impute_audio_features(
        audio_ids=[immich["ids"][i] for i in train], audio_matrix=immich["x"][train],
        audio_text=immich["text"][train], audio_has_text=np.ones(len(train), dtype=bool),
        audio_genres=[immich["style"][i] for i in train], target_ids=["a", "b"],
        target_text=np.zeros((2, 384), np.float32), target_has_text=np.zeros(2, dtype=bool),
        target_genres=[immich["style"][n - 2], None], feature_names=FEATURE_COLUMNS,
    )
    assert r.source == ["prototype", "prototype"]
    assert r.confidence[0] >= r.confidence[1]  # a genre prototype is trusted more than the global mean
    style = immich["style"][n - 2]
    proto = immich["x"][[i for i in train if immich["style"][i] == style]].mean(axis=0)
    np.testing.assert_allclose(r.features[0], proto, rtol=1e-6, atol=1e-6)
