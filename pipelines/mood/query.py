"""Query mood: free text → (valence, arousal, confidence), valence/arousal in [-1, 1].

``QueryMoodModel`` is an ensemble of regressors over [MiniLM embedding | lexicon and anchor
features] predicting z-scored (valence, arousal), mapped back with the Glasgow norms' mean and std;
``pipelines.mood.query_training`` fits it. Confidence per axis is ``2 Φ(|μ| / σ) − 1`` with
``σ = sqrt(σ_resid² + σ_ens(x)²)``, averaged over the two axes.
"""

import functools
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from scipy.special import ndtr
from sklearn.linear_model import Ridge
from sklearn.neural_network import MLPRegressor

from pipelines import store
from pipelines.embed.sentence import EMBEDDING_DIM, embed_texts
from pipelines.mood.lexicon import MoodLexicon, context_shift

K_ANCHORS = 5
MODEL_VERSION = 1


@dataclass
class QueryMoodModel:
    """Bootstrap ensemble of regressors over [embedding, lexicon features] → z-scored (v, a)."""

    members: list[Any]
    lexicon: MoodLexicon
    lex_mean: np.ndarray  # (7,)
    lex_std: np.ndarray  # (7,)
    anchor_words: list[str]  # Glasgow words, (m,)
    anchor_emb: np.ndarray  # (m, 384) float32
    anchor_targets: np.ndarray  # (m, 2) Glasgow valence/arousal on [-1, 1]
    source_stats: dict[str, tuple[np.ndarray, np.ndarray]]  # source -> (mean (2,), std (2,))
    resid_std_z: np.ndarray  # (2,) held-out residual std in z units
    output_source: str = "glasgow"
    info: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def _anchor_index(self) -> dict[str, int]:
        """Anchor word → row (built once per loaded model, not per query)."""
        return {w: i for i, w in enumerate(self.anchor_words)}

    def anchor_features(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        """(n, 2) cos^4-weighted mean Glasgow (valence, arousal) of the nearest anchor words,
        excluding an anchor identical to the text (leave-one-out for training words)."""
        sims = embeddings @ self.anchor_emb.T  # (n, m)
        index = self._anchor_index
        for row, text in enumerate(texts):
            j = index.get(text)
            if j is not None:
                sims[row, j] = -np.inf
        top = np.argpartition(-sims, K_ANCHORS, axis=1)[:, :K_ANCHORS]
        w = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0) ** 4 + 1e-12
        return (w[:, :, None] * self.anchor_targets[top]).sum(1) / w.sum(1, keepdims=True)

    def raw_side_features(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        """(n, 7) unstandardised lexicon (5) + anchor (2) features."""
        return np.hstack([self.lexicon.features(texts), self.anchor_features(texts, embeddings)])

    def features(self, texts: Sequence[str], *, embeddings: np.ndarray | None = None) -> np.ndarray:
        """float32 (n, 384 + 7) model inputs for ``texts``."""
        if embeddings is None:
            embeddings = embed_texts(list(texts))
        if embeddings.shape != (len(texts), EMBEDDING_DIM):
            raise ValueError(f"embeddings shape {embeddings.shape} != ({len(texts)}, {EMBEDDING_DIM})")
        side = (self.raw_side_features(texts, embeddings) - self.lex_mean) / self.lex_std
        return np.hstack([embeddings, side]).astype(np.float32)

    def predict_z(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean and std of z-scored predictions, each (n, 2), for features ``x``."""
        preds = np.stack([_member_predict(m, x) for m in self.members])  # (k, n, 2)
        return preds.mean(0), preds.std(0)

    def to_scale(self, z: np.ndarray, *, source: str) -> np.ndarray:
        mean, std = self.source_stats[source]
        return z * std + mean

    def context_shifts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 2) (Δvalence, Δarousal) of each text's context cues (``lexicon.context_shift``)."""
        shifts = [context_shift(t) for t in texts]
        return np.array([[c.valence, c.arousal] for c in shifts], dtype=np.float64).reshape(len(texts), 2)

    def predict(
        self, texts: Sequence[str], *, embeddings: np.ndarray | None = None, context: bool = True
    ) -> np.ndarray:
        """(n, 3) float64: valence, arousal in [-1, 1], confidence in [0, 1].

        ``context``: add the curated context-cue shifts (``lexicon.CONTEXT_SHIFTS``: "workout",
        "sleep", "upbeat" …) to the model's estimate before clipping; confidence is computed from
        the shifted estimate (a cue is evidence about the side of neutral).

        ``embeddings`` (n, 384) may be passed when the caller already has them."""
        if len(texts) == 0:
            return np.zeros((0, 3))
        mu_z, ens_std_z = self.predict_z(self.features(texts, embeddings=embeddings))
        va = self.to_scale(mu_z, source=self.output_source)
        if context:
            va = va + self.context_shifts(texts)
        va = np.clip(va, -1.0, 1.0)
        _, out_std = self.source_stats[self.output_source]
        sigma = np.sqrt(self.resid_std_z**2 + ens_std_z**2) * out_std  # (n, 2) in output units
        conf_axes = 2.0 * ndtr(np.abs(va) / sigma) - 1.0
        return np.column_stack([va, conf_axes.mean(1)])

    def save(self, path: Path) -> Path:
        """Write the model with joblib, atomically."""
        path = Path(path)
        with store.atomic_path(path, ".joblib") as tmp:
            joblib.dump({"version": MODEL_VERSION, "model": self}, tmp)
        return path

    @classmethod
    def load(cls, path: Path) -> "QueryMoodModel":
        from pipelines.mood import lexicon

        obj = store.read_model(Path(path), legacy_modules={"pipelines.querymood": sys.modules[__name__],
                                                          "pipelines.lexicon": lexicon})
        if obj.get("version") != MODEL_VERSION:
            raise ValueError(f"query mood model version {obj.get('version')} != {MODEL_VERSION}")
        return obj["model"]


_ACTIVATIONS = {
    "relu": lambda h: np.maximum(h, 0.0),
    "tanh": np.tanh,
    "logistic": lambda h: 1.0 / (1.0 + np.exp(-h)),
    "identity": lambda h: h,
}


def _member_predict(model: Any, x: np.ndarray) -> np.ndarray:
    """``model.predict(x)`` for a fitted Ridge / MLPRegressor, as plain numpy matrix products.

    One query is served per request, and sklearn's input validation costs more than the arithmetic;
    this computes the same numbers (float64, tested equal) without it. Other estimators go through
    their own ``predict``.
    """
    if isinstance(model, Ridge):
        return x @ model.coef_.T + model.intercept_
    if isinstance(model, MLPRegressor) and model.out_activation_ == "identity" and model.activation in _ACTIVATIONS:
        h = np.asarray(x, dtype=np.float64)
        act = _ACTIVATIONS[model.activation]
        last = len(model.coefs_) - 1
        for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_)):
            h = h @ w + b
            if i < last:
                h = act(h)
        return h
    return model.predict(x)
