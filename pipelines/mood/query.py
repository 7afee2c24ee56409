"""Query mood: free text → (valence, arousal, confidence), valence/arousal in [-1, 1].

``QueryMoodModel`` holds two linear heads predicting z-scored (valence, arousal), mapped back with
the Glasgow norms' mean and std: ``full`` over [MiniLM embedding | encoder layer features | lexicon
and anchor features] and ``pooled`` over [embedding | lexicon and anchor features], for callers that
hold only embeddings (track documents). ``pipelines.mood.query_training`` fits both. Confidence per
axis is ``2 Φ(|μ| / σ) − 1`` with σ the head's cross-validated residual std, averaged over the axes.
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

from pipelines import store
from pipelines.embed.layers import MEMO, N_LAYER_FEATURES, embed_with_layers
from pipelines.embed.sentence import EMBEDDING_DIM
from pipelines.errors import UnavailableError
from pipelines.mood.lexicon import ContextCues, MoodLexicon

K_ANCHORS = 5
MODEL_VERSION = 2
N_SIDE = MoodLexicon.N_FEATURES + 2


@dataclass
class LinearHead:
    """``x @ coef + intercept`` → z-scored (valence, arousal); feature scaling folded into ``coef``."""

    coef: np.ndarray  # (d, 2)
    intercept: np.ndarray  # (2,)
    resid_std_z: np.ndarray  # (2,) cross-validated residual std in z units
    config: dict[str, Any] = field(default_factory=dict)  # the chosen hyperparameters per axis

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ self.coef + self.intercept


@dataclass
class QueryMoodModel:
    full: LinearHead | None  # over [embedding | side | layer features]
    pooled: LinearHead | None  # over [embedding | side]
    lexicon: MoodLexicon
    anchor_words: list[str]  # Glasgow words, (m,)
    anchor_emb: np.ndarray  # (m, 384) float32
    anchor_targets: np.ndarray  # (m, 2) Glasgow valence/arousal on [-1, 1]
    source_stats: dict[str, tuple[np.ndarray, np.ndarray]]  # source -> (mean (2,), std (2,))
    cues: ContextCues = field(default_factory=ContextCues)
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

    def side_features(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        """(n, 7) lexicon (5) + anchor (2) features."""
        return np.hstack([self.lexicon.features(texts), self.anchor_features(texts, embeddings)])

    def features(
        self, texts: Sequence[str], *, embeddings: np.ndarray | None = None, layers: np.ndarray | None = None
    ) -> tuple[np.ndarray, bool]:
        """(x, full): the inputs of the full head when layer features are at hand (passed, left in
        ``pipelines.embed.layers.MEMO`` by the encoder that made ``embeddings``, or computed here
        when ``embeddings`` is None), else of the pooled head."""
        if embeddings is None:
            embeddings, layers = embed_with_layers(list(texts))
        embeddings = np.asarray(embeddings, np.float32)
        if embeddings.shape != (len(texts), EMBEDDING_DIM):
            raise ValueError(f"embeddings shape {embeddings.shape} != ({len(texts)}, {EMBEDDING_DIM})")
        if layers is None and self.full is not None:
            layers = MEMO.get(texts, embeddings)
        side = self.side_features(texts, embeddings)
        if layers is not None and self.full is not None:
            if np.shape(layers) != (len(texts), N_LAYER_FEATURES):
                raise ValueError(f"layers shape {np.shape(layers)} != ({len(texts)}, {N_LAYER_FEATURES})")
            return np.hstack([embeddings, side, layers]), True
        return np.hstack([embeddings, side]), False

    def to_scale(self, z: np.ndarray, *, source: str) -> np.ndarray:
        mean, std = self.source_stats[source]
        return z * std + mean

    def predict(
        self, texts: Sequence[str], *, embeddings: np.ndarray | None = None, layers: np.ndarray | None = None,
        context: bool = True,
    ) -> np.ndarray:
        """(n, 3) float64: valence, arousal in [-1, 1], confidence in [0, 1].

        ``context``: add the context-cue shifts (``self.cues``; by default the hand-set
        ``lexicon.CONTEXT_SHIFTS``: "workout", "sleep", …) to the estimate before clipping;
        confidence is computed from the shifted estimate.
        ``embeddings`` (n, 384) / ``layers`` (n, N_LAYER_FEATURES) may be passed when the caller
        has them (see :meth:`features` for which head answers)."""
        if len(texts) == 0:
            return np.zeros((0, 3))
        x, full = self.features(texts, embeddings=embeddings, layers=layers)
        head = self.full if full else self.pooled
        va = self.to_scale(head(x), source=self.output_source)
        if context:
            va = va + self.cues.shifts(texts)
        va = np.clip(va, -1.0, 1.0)
        _, out_std = self.source_stats[self.output_source]
        sigma = head.resid_std_z * out_std  # (2,) in output units
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
            raise UnavailableError(
                f"{path}: query mood model version {obj.get('version')}, this code reads version {MODEL_VERSION};"
                " rebuild it with `moodscape materialize` (the store's models are retrained from shipped data)"
            )
        return obj["model"]
