"""The learned ranker: a LambdaMART model (xgboost ``rank:ndcg``) over :mod:`pipelines.rank.features`.

:meth:`LearnedRanker.predict` scores one request's candidates (higher = better) from the features
the online ranking already computed; a version folder carries it as ``bundle.RANKER_FILE`` and
:func:`ranker_for_bundle` loads it (None without one: the hand weights rank). Training is
:mod:`pipelines.rank.ranker_training`.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import xgboost as xgb

from pipelines.index.bundle import Bundle
from pipelines.rank.features import FEATURE_NAMES, TermIndex, feature_matrix
from pipelines.rank.retrieve import Candidates
from pipelines.rank.score import ScoreBreakdown, TrackPriors
from pipelines.rank.understand import QueryUnderstanding
from pipelines.store import atomic_path

FORMAT_VERSION = 1


@dataclass
class LearnedRanker:
    """A fitted booster, its feature names and training report; ``terms`` (bound to one bundle's
    rows by :meth:`bind`) gives the tag/genre overlap feature (0 when unbound)."""

    booster: xgb.Booster
    feature_names: tuple[str, ...] = FEATURE_NAMES
    info: dict[str, Any] = field(default_factory=dict)
    terms: TermIndex | None = None

    def __post_init__(self) -> None:
        if tuple(self.feature_names) != FEATURE_NAMES:
            raise ValueError("ranker was trained on other features than pipelines.rank.features.FEATURE_NAMES")
        self.booster.set_param({"nthread": 1})  # one request's few hundred rows: threads only cost

    def features(
        self, cands: Candidates, qu: QueryUnderstanding, priors: TrackPriors, breakdown: ScoreBreakdown
    ) -> np.ndarray:
        return feature_matrix(cands, qu, priors, breakdown, terms=self.terms)

    def predict(
        self, cands: Candidates, qu: QueryUnderstanding, priors: TrackPriors, breakdown: ScoreBreakdown
    ) -> np.ndarray:
        """(c,) float32 scores of the candidates, higher = better."""
        if len(cands) == 0:
            return np.zeros(0, np.float32)
        return self.scores(self.features(cands, qu, priors, breakdown))

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(c,) float32 scores of a feature matrix (c, len(FEATURE_NAMES))."""
        return np.asarray(self.booster.inplace_predict(np.ascontiguousarray(x, np.float32)), np.float32)

    def bind(self, terms: TermIndex | None) -> "LearnedRanker":
        self.terms = terms
        return self

    def save(self, path: Path) -> Path:
        payload = {
            "format": FORMAT_VERSION, "booster": bytes(self.booster.save_raw("ubj")),
            "feature_names": list(self.feature_names), "info": self.info,
        }
        with atomic_path(Path(path), ".joblib") as tmp:
            joblib.dump(payload, tmp)
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> "LearnedRanker":
        payload = joblib.load(Path(path))
        if payload.get("format") != FORMAT_VERSION:
            raise ValueError(f"ranker format {payload.get('format')} != {FORMAT_VERSION}")
        booster = xgb.Booster()
        booster.load_model(bytearray(payload["booster"]))
        return cls(booster=booster, feature_names=tuple(payload["feature_names"]), info=payload.get("info", {}))


def ranker_for_bundle(bundle: Bundle) -> LearnedRanker | None:
    """The ranker published in ``bundle``'s version folder, bound to its rows; None without one."""
    path = bundle.ranker_path
    if not path.exists():
        return None
    return LearnedRanker.load(path).bind(TermIndex.from_tracks(bundle.tracks))
