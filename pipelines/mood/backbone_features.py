"""Mood features from the audio backbone: its tag probabilities, and the mood those tags imply.

The backbone (``pipelines.audio.backbone``) gives every recording 50 MSD and 50 MagnaTagATune tag
probabilities. Each tag's mood prior (:mod:`pipelines.mood.priors`: the mean mood of shipped
tagged items that carry the tag) turns them into a zero-shot (valence, arousal): the deviation of
each tag's prior from the corpus mean, averaged with weight ``p(tag) × confidence(prior)``.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.audio.backbone import MSD_TAGS, MTT_TAGS
from pipelines.mood.priors import TagPriors
from pipelines.schema import TRACK_ID

MSD, MTT = "msd_tags", "mtt_tags"
PRIOR_VALENCE, PRIOR_AROUSAL = "bb_prior_valence", "bb_prior_arousal"
BACKBONE_FEATURES: tuple[str, ...] = (PRIOR_VALENCE, PRIOR_AROUSAL)


@dataclass(frozen=True)
class TagPriorTable:
    """Per backbone output tag (MSD then MTT order): prior deviation (valence, arousal) and weight."""

    deviation: np.ndarray  # (100, 2)
    weight: np.ndarray  # (100,) prior confidence, 0 where the tag has no prior
    tags: tuple[str, ...]

    @classmethod
    def from_priors(cls, priors: TagPriors) -> "TagPriorTable":
        tags = (*MSD_TAGS, *MTT_TAGS)
        dev = np.zeros((len(tags), 2))
        weight = np.zeros(len(tags))
        for i, tag in enumerate(tags):
            p = priors.lookup(tag)
            if p is not None:
                dev[i] = (p.valence - priors.mean[0], p.arousal - priors.mean[1])
                weight[i] = p.confidence
        return cls(deviation=dev, weight=weight, tags=tags)

    def zero_shot(self, probs: np.ndarray) -> np.ndarray:
        """(n, 100) tag probabilities → (n, 2) prior-weighted mood deviation (0 where no tag counts)."""
        w = np.asarray(probs, dtype=np.float64) * self.weight[None, :]
        total = w.sum(axis=1, keepdims=True)
        return np.where(total > 0, (w @ self.deviation) / np.maximum(total, 1e-12), 0.0)


def _stack(frame: pl.DataFrame, column: str, width: int) -> np.ndarray:
    """A list column → (n, width) float64, NaN rows where the list is null or the wrong length."""
    out = np.full((frame.height, width), np.nan)
    for i, v in enumerate(frame.get_column(column).to_list()):
        if v is not None and len(v) == width:
            out[i] = v
    return out


def has_backbone(frame: pl.DataFrame) -> np.ndarray:
    """(n,) bool: rows whose backbone tag lists are present."""
    if MSD not in frame.columns or MTT not in frame.columns:
        return np.zeros(frame.height, dtype=bool)
    return (frame.get_column(MSD).is_not_null() & frame.get_column(MTT).is_not_null()).to_numpy()


def tag_probabilities(frame: pl.DataFrame) -> np.ndarray:
    """(n, 100) MSD then MTT tag probabilities of the rows (NaN rows where the outputs are missing)."""
    if MSD not in frame.columns or MTT not in frame.columns:
        return np.full((frame.height, len(MSD_TAGS) + len(MTT_TAGS)), np.nan)
    return np.hstack([_stack(frame, MSD, len(MSD_TAGS)), _stack(frame, MTT, len(MTT_TAGS))])


def backbone_features(frame: pl.DataFrame, table: TagPriorTable) -> pl.DataFrame:
    """``frame`` (track_id + ``msd_tags``/``mtt_tags`` list columns) → track_id + ``BACKBONE_FEATURES``
    (the zero-shot mood deviation; NaN where the backbone outputs are missing)."""
    probs = tag_probabilities(frame)
    prior = table.zero_shot(np.nan_to_num(probs))
    prior[~np.isfinite(probs).all(axis=1)] = np.nan
    data = {TRACK_ID: frame.get_column(TRACK_ID)}
    data |= {PRIOR_VALENCE: prior[:, 0], PRIOR_AROUSAL: prior[:, 1]}
    return pl.DataFrame(data)
