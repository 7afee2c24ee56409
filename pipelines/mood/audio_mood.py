"""The audio-mood model of the store: which audio evidence predicts mood, chosen by cross-validation.

Candidate feature sets: the librosa vector alone, the backbone's mood features alone
(:mod:`pipelines.mood.backbone_features`: 100 tag logits + the tags' zero-shot prior mood), and
both. Each is fitted by :func:`pipelines.mood.audio_model.fit_audio_mood_model` (per-axis candidate
selection and calibration by song-grouped CV on the train rows); the feature set with the best mean
cross-validated AUC over both axes is kept. A librosa-only model is always kept too: tracks whose
audio vector is imputed (no recording, so no backbone outputs) are scored with it.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from pipelines.audio.features import FEATURE_COLUMNS
from pipelines.mood.audio_model import AXES, AudioMoodModel, fit_audio_mood_model
from pipelines.mood.backbone_features import BACKBONE_FEATURES, TagPriorTable, backbone_features, has_backbone
from pipelines.schema import TRACK_ID

FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "librosa": tuple(FEATURE_COLUMNS),
    "backbone": BACKBONE_FEATURES,
    "librosa+backbone": (*FEATURE_COLUMNS, *BACKBONE_FEATURES),
}
LIBROSA = "librosa"


def cv_score(metrics: dict[str, Any]) -> float:
    """Mean over both axes of the chosen candidate's cross-validated AUC (train rows only)."""
    scores = np.array([metrics["chosen"][axis].get("cv_auc", np.nan) for axis in AXES], dtype=np.float64)
    return float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan")


@dataclass
class StoreAudioMoodModel:
    """Recordings with backbone outputs → the chosen model; the others → the librosa-only model."""

    chosen: str
    model: AudioMoodModel
    librosa_model: AudioMoodModel
    priors: TagPriorTable
    info: dict[str, Any] = field(default_factory=dict)

    def _frame(self, audio: pl.DataFrame) -> pl.DataFrame:
        if self.chosen == LIBROSA:
            return audio
        return audio.join(backbone_features(audio, self.priors), on=TRACK_ID, how="left")

    def predict(self, audio: pl.DataFrame) -> np.ndarray:
        """(n, 3) valence, arousal in [-1, 1], confidence; ``audio``: track_id, librosa columns and,
        where a recording was analysed, the backbone's ``msd_tags``/``mtt_tags`` lists."""
        out = np.zeros((audio.height, 3))
        if audio.height == 0:
            return out
        rich = has_backbone(audio) if self.chosen != LIBROSA else np.zeros(audio.height, dtype=bool)
        if rich.any():
            out[rich] = self.model.predict(self._frame(audio.filter(pl.Series(rich))))
        if (~rich).any():
            out[~rich] = self.librosa_model.predict(audio.filter(pl.Series(~rich)))
        return out


def fit_store_audio_mood_model(
    *, audio: pl.DataFrame, labels: pl.DataFrame, priors: TagPriorTable,
    feature_sets: Sequence[str] = tuple(FEATURE_SETS), **fit_kwargs: Any,
) -> tuple[StoreAudioMoodModel, dict[str, Any]]:
    """Fit every candidate feature set on ``labels`` (see ``fit_audio_mood_model``), keep the best by CV.

    ``audio``: track_id, librosa columns and the backbone tag lists. Metrics: per feature set the
    fit's metrics, ``cv_by_feature_set`` and ``chosen_feature_set``; rows without backbone outputs
    are left out of the backbone sets' fits (they cannot be scored by them).
    """
    frame = audio.join(backbone_features(audio, priors), on=TRACK_ID, how="left")
    fits: dict[str, tuple[AudioMoodModel, dict[str, Any]]] = {}
    rich = frame.filter(pl.Series(has_backbone(frame)))
    for name in feature_sets:
        data = frame if name == LIBROSA else rich
        if data.height == 0:
            continue
        fits[name] = fit_audio_mood_model(features=data, labels=labels, feature_columns=FEATURE_SETS[name],
                                          **fit_kwargs)
    scores = {name: cv_score(m) for name, (_, m) in fits.items()}
    chosen = max(scores, key=lambda k: (np.nan_to_num(scores[k], nan=-1.0), k == LIBROSA))
    librosa_fit = fits.get(LIBROSA) or fit_audio_mood_model(
        features=frame, labels=labels, feature_columns=FEATURE_SETS[LIBROSA], **fit_kwargs
    )
    model = StoreAudioMoodModel(chosen=chosen, model=fits[chosen][0], librosa_model=librosa_fit[0], priors=priors)
    metrics = {"chosen_feature_set": chosen, "cv_by_feature_set": scores, **{n: m for n, (_, m) in fits.items()}}
    model.info = {"chosen_feature_set": chosen, "cv_by_feature_set": scores, **fits[chosen][0].info}
    return model, metrics
