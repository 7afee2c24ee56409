"""The store's audio-mood model: a trained model where the audio is like its training audio, music
knowledge from the backbone's tags elsewhere.

The only labelled audio Moodscape may train on is rendered EMOPIA piano (plus 28 generated immich
tracks). A classifier fitted there (:func:`pipelines.mood.audio_model.fit_audio_mood_model` on the
librosa vector) learns piano: valence from mode, arousal from loudness. On real recordings its
valence does not transfer, so the model has two parts, mixed per recording by a *domain gate*:

- ``trained``: the librosa classifier (as fitted and calibrated by song-grouped CV on the train rows);
- ``prior``: the backbone's zero-shot mood (:mod:`pipelines.mood.backbone_features`: tag
  probabilities × co-occurrence priors learned from MTG-Jamendo and MusicCaps), nothing fitted to
  audio labels; scaled so ±2 standard deviations over the diverse reference clips (immich and the
  librosa examples) span [−1, 1];
- ``gate`` g = P(training-like | backbone embedding): a logistic regression telling the training
  clips (EMOPIA train) from the reference clips.

valence = g·trained + (1−g)·prior; arousal = g·trained + (1−g)·½(trained + prior) (loudness and
brightness carry arousal on any recording, so the trained arousal keeps half the weight out of
domain). Recordings without backbone outputs, and imputed audio vectors, use the trained model.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pipelines import store
from pipelines.audio.space import BACKBONE_EMBEDDINGS, stack_embeddings
from pipelines.errors import InvalidInputError
from pipelines.mood.audio_model import AudioMoodModel
from pipelines.mood.backbone_features import (
    PRIOR_AROUSAL,
    PRIOR_VALENCE,
    TagPriorTable,
    backbone_features,
    has_backbone,
)

GATE_C = 0.1  # L2 strength of the domain gate (a few hundred dims, a few hundred clips)
SPREAD_SDS = 2.0  # prior deviations of this many reference SDs reach ±1


def reference_clips(*, data_dir: Path = store.DATA_DIR) -> list[tuple[str, str]]:
    """(id, path) of the librosa example clips shipped under ``data/audio/librosa``: diverse reference audio."""
    base = data_dir / "audio" / "librosa"
    return [(f"librosa_{p.stem}", str(p)) for p in sorted(base.glob("*.ogg"))]


def embeddings_of(frame: pl.DataFrame) -> np.ndarray:
    """(n, E) backbone embeddings of the rows (NaN rows where absent)."""
    return stack_embeddings([frame.get_column(c).to_list() for c in BACKBONE_EMBEDDINGS])


@dataclass
class DomainGate:
    """P(a recording is like the trained model's training audio) from its backbone embedding."""

    scaler: StandardScaler
    clf: LogisticRegression

    @classmethod
    def fit(cls, *, inside: np.ndarray, outside: np.ndarray) -> "DomainGate":
        if len(inside) < 2 or len(outside) < 2:
            raise InvalidInputError("the domain gate needs ≥ 2 clips on each side", field="reference")
        x = np.vstack([inside, outside])
        y = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
        scaler = StandardScaler().fit(x)
        clf = LogisticRegression(C=GATE_C, class_weight="balanced", max_iter=2000).fit(scaler.transform(x), y)
        return cls(scaler=scaler, clf=clf)

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        return self.clf.predict_proba(self.scaler.transform(embeddings))[:, 1]


@dataclass
class StoreAudioMoodModel:
    """``trained`` (librosa classifier) and the backbone prior, mixed by the domain gate."""

    trained: AudioMoodModel
    priors: TagPriorTable
    prior_scale: np.ndarray  # (2,) multiplies the prior deviations (valence, arousal)
    gate: DomainGate | None  # None: too little audio to tell the domains apart; the trained model everywhere
    info: dict[str, Any] = field(default_factory=dict)

    def parts(self, audio: pl.DataFrame, embeddings: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """For rows WITH backbone outputs: trained (n, 3), prior (n, 2) in [−1, 1], gate (n,);
        ``embeddings``: the rows' backbone embeddings when the caller has them already."""
        if embeddings is None and self.gate is not None:
            embeddings = embeddings_of(audio)
        feats = backbone_features(audio, self.priors)
        prior = feats.select(PRIOR_VALENCE, PRIOR_AROUSAL).to_numpy() * self.prior_scale[None, :]
        return {
            "trained": self.trained.predict(audio),
            "prior": np.clip(prior, -1.0, 1.0),
            "gate": np.ones(audio.height) if self.gate is None else self.gate(embeddings),
        }

    def predict(self, audio: pl.DataFrame) -> np.ndarray:
        """(n, 3) valence, arousal in [−1, 1], confidence; ``audio``: track_id, librosa columns and,
        where a recording was analysed, the backbone columns."""
        out = np.zeros((audio.height, 3))
        if audio.height == 0:
            return out
        embeddings = embeddings_of(audio)
        rich = has_backbone(audio) & np.isfinite(embeddings).all(axis=1)
        if (~rich).any():
            out[~rich] = self.trained.predict(audio.filter(pl.Series(~rich)))
        if rich.any():
            p = self.parts(audio.filter(pl.Series(rich)), embeddings[rich])
            g, t, prior = p["gate"], p["trained"], p["prior"]
            v = g * t[:, 0] + (1 - g) * prior[:, 0]
            a = g * t[:, 1] + (1 - g) * 0.5 * (t[:, 1] + prior[:, 1])
            conf = g * t[:, 2] + (1 - g) * np.abs(np.column_stack([v, a])).mean(axis=1)
            out[rich] = np.column_stack([v, a, np.clip(conf, 0.0, 1.0)])
        return out


def fit_store_audio_mood_model(
    *, trained: AudioMoodModel, training_audio: pl.DataFrame, reference_audio: pl.DataFrame, priors: TagPriorTable
) -> tuple[StoreAudioMoodModel, dict[str, Any]]:
    """Assemble the model: ``trained`` as fitted; the gate on the backbone embeddings of
    ``training_audio`` (the trained model's train clips) vs ``reference_audio`` (diverse shipped
    clips); the prior scale from the reference clips' prior spread. Both frames: track_id + backbone
    columns. Fewer than two clips with backbone outputs on either side: no gate (the trained model
    everywhere). Returns (model, metrics: gate and scale facts)."""
    inside, outside = embeddings_of(training_audio), embeddings_of(reference_audio)
    inside, outside = inside[np.isfinite(inside).all(1)], outside[np.isfinite(outside).all(1)]
    try:
        gate = DomainGate.fit(inside=inside, outside=outside)
    except InvalidInputError:
        gate = None
    ref = backbone_features(reference_audio, priors).select(PRIOR_VALENCE, PRIOR_AROUSAL).to_numpy()
    ref = ref[np.isfinite(ref).all(1)]
    sd = ref.std(axis=0) if len(ref) >= 2 else np.ones(2)
    scale = 1.0 / (SPREAD_SDS * np.where(sd > 1e-9, sd, 1.0))
    model = StoreAudioMoodModel(trained=trained, priors=priors, prior_scale=scale, gate=gate)
    metrics = {
        "gate_inside": len(inside),
        "gate_outside": len(outside),
        "gate_train_inside_mean": round(float(gate(inside).mean()), 4) if gate else None,
        "gate_train_outside_mean": round(float(gate(outside).mean()), 4) if gate else None,
        "prior_scale": [round(float(s), 3) for s in scale],
    }
    model.info = {**trained.info, **metrics}
    return model, metrics
