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
- ``tag_arousal``: a strongly regularised logistic regression from the backbone's 100 tag logits to
  the arousal sign of the training clips (EMOPIA train), scaled on the reference clips like the
  prior: tags such as loud/quiet/fast/slow/soft carry arousal across instruments;
- ``gate`` g = P(training-like | backbone embedding): a logistic regression telling the training
  clips (EMOPIA train) from the reference clips.

valence = g·trained + (1−g)·prior. Arousal averages, with equal weights, the estimators valid where
the recording is: in the training domain the two fitted to it, ½(trained + tag), elsewhere all
three, ⅓(trained + tag + prior) (loudness and brightness carry arousal on any recording, so the
trained arousal keeps a share out of domain); arousal = g·in + (1−g)·out. Without a tag model
(older model files) the out-of-domain arousal is ½(trained + prior). Recordings without backbone
outputs, and imputed audio vectors, use the trained model.
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
    tag_probabilities,
)
from pipelines.mood.labels import AROUSAL_SIGN
from pipelines.mood.priors import SPREAD_SDS
from pipelines.schema import TRACK_ID

GATE_C = 0.1  # L2 strength of the domain gate (a few hundred dims, a few hundred clips)
# L2 strength of the tag → arousal classifier. Trained on EMOPIA (piano) and used on any music, so it
# is chosen for transfer: training on EMOPIA train and scoring the immich clips (other instruments,
# arousal from their mood folder), AUC 0.70 at C 0.003–0.01 vs 0.66 at 0.1 and 0.60 at 1.
TAG_AROUSAL_C = 0.01
TAG_EPS = 1e-4  # tag probabilities are clipped to [ε, 1 − ε] before the logit


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


def tag_logits(frame: pl.DataFrame) -> np.ndarray:
    """(n, 100) logits of the rows' MSD then MTT tag probabilities (NaN rows where absent)."""
    p = np.clip(tag_probabilities(frame), TAG_EPS, 1.0 - TAG_EPS)
    return np.log(p / (1.0 - p))


@dataclass
class TagArousal:
    """Backbone tag logits → arousal in [−1, 1]: a logistic regression's decision value × ``scale``."""

    scaler: StandardScaler
    clf: LogisticRegression
    scale: float = 1.0
    n_train: int = 0

    @classmethod
    def fit(cls, *, logits: np.ndarray, arousal_sign: np.ndarray, reference: np.ndarray) -> "TagArousal":
        """Fit on training clips' ``logits`` (n, 100) and arousal signs (±1); scale so that
        ``SPREAD_SDS`` standard deviations of the decision value over ``reference`` reach ±1."""
        y = np.asarray(arousal_sign) > 0
        if len(y) < 4 or y.all() or not y.any():
            raise InvalidInputError("the tag arousal model needs both arousal signs", field="arousal_sign")
        scaler = StandardScaler().fit(logits)
        clf = LogisticRegression(C=TAG_AROUSAL_C, max_iter=2000).fit(scaler.transform(logits), y)
        model = cls(scaler=scaler, clf=clf, n_train=len(y))
        sd = float(model.decision(reference).std()) if len(reference) >= 2 else 0.0
        model.scale = 1.0 / (SPREAD_SDS * sd) if sd > 1e-9 else 1.0
        return model

    def decision(self, logits: np.ndarray) -> np.ndarray:
        return self.clf.decision_function(self.scaler.transform(logits))

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        return np.clip(self.decision(logits) * self.scale, -1.0, 1.0)


@dataclass
class StoreAudioMoodModel:
    """``trained`` (librosa classifier) and the backbone prior, mixed by the domain gate."""

    trained: AudioMoodModel
    priors: TagPriorTable
    prior_scale: np.ndarray  # (2,) multiplies the prior deviations (valence, arousal)
    gate: DomainGate | None  # None: too little audio to tell the domains apart; the trained model everywhere
    info: dict[str, Any] = field(default_factory=dict)
    tag_arousal: TagArousal | None = None  # None: too few labelled clips (or a model file from before it)

    def parts(self, audio: pl.DataFrame, embeddings: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """For rows WITH backbone outputs: trained (n, 3), prior (n, 2) in [−1, 1], gate (n,) and, with
        a tag model, tag_arousal (n,); ``embeddings``: the rows' backbone embeddings when the caller
        has them already."""
        if embeddings is None and self.gate is not None:
            embeddings = embeddings_of(audio)
        feats = backbone_features(audio, self.priors)
        prior = feats.select(PRIOR_VALENCE, PRIOR_AROUSAL).to_numpy() * self.prior_scale[None, :]
        out = {
            "trained": self.trained.predict(audio),
            "prior": np.clip(prior, -1.0, 1.0),
            "gate": np.ones(audio.height) if self.gate is None else self.gate(embeddings),
        }
        if self.tag_arousal is not None:
            out["tag_arousal"] = self.tag_arousal(tag_logits(audio))
        return out

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
            if "tag_arousal" in p:
                tag = p["tag_arousal"]
                a = g * 0.5 * (t[:, 1] + tag) + (1 - g) * (t[:, 1] + tag + prior[:, 1]) / 3.0
            else:
                a = g * t[:, 1] + (1 - g) * 0.5 * (t[:, 1] + prior[:, 1])
            conf = g * t[:, 2] + (1 - g) * np.abs(np.column_stack([v, a])).mean(axis=1)
            out[rich] = np.column_stack([v, a, np.clip(conf, 0.0, 1.0)])
        return out


def fit_store_audio_mood_model(
    *,
    trained: AudioMoodModel,
    training_audio: pl.DataFrame,
    reference_audio: pl.DataFrame,
    priors: TagPriorTable,
    arousal_signs: pl.DataFrame | None = None,
) -> tuple[StoreAudioMoodModel, dict[str, Any]]:
    """Assemble the model: ``trained`` as fitted; the gate on the backbone embeddings of
    ``training_audio`` (the trained model's train clips) vs ``reference_audio`` (diverse shipped
    clips); the prior scale from the reference clips' prior spread; the tag arousal model on the
    training clips' tags and ``arousal_signs`` (track_id, arousal_sign ±1), scaled on the reference
    clips. Both audio frames: track_id + backbone columns. Fewer than two clips with backbone outputs
    on either side: no gate (the trained model everywhere); no labels or one sign only: no tag model.
    Returns (model, metrics: gate, scale and tag-model facts)."""
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
    tag_model = _fit_tag_arousal(training_audio, reference_audio, arousal_signs)
    model = StoreAudioMoodModel(trained=trained, priors=priors, prior_scale=scale, gate=gate, tag_arousal=tag_model)
    metrics = {
        "gate_inside": len(inside),
        "gate_outside": len(outside),
        "gate_train_inside_mean": round(float(gate(inside).mean()), 4) if gate else None,
        "gate_train_outside_mean": round(float(gate(outside).mean()), 4) if gate else None,
        "prior_scale": [round(float(s), 3) for s in scale],
        "tag_arousal_clips": 0 if tag_model is None else tag_model.n_train,
    }
    model.info = {**trained.info, **metrics}
    return model, metrics


def _fit_tag_arousal(
    training_audio: pl.DataFrame, reference_audio: pl.DataFrame, arousal_signs: pl.DataFrame | None
) -> TagArousal | None:
    if arousal_signs is None:
        return None
    rows = training_audio.join(arousal_signs.select(TRACK_ID, AROUSAL_SIGN), on=TRACK_ID, how="inner")
    logits, ref = tag_logits(rows), tag_logits(reference_audio)
    ok = np.isfinite(logits).all(axis=1) & rows.get_column(AROUSAL_SIGN).is_not_null().to_numpy()
    try:
        return TagArousal.fit(
            logits=logits[ok],
            arousal_sign=rows.get_column(AROUSAL_SIGN).to_numpy()[ok],
            reference=ref[np.isfinite(ref).all(axis=1)],
        )
    except InvalidInputError:
        return None
