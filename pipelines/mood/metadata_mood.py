"""Track mood from metadata that knows music: genre and tag priors, and an artist's other tracks.

Both are group means, turned into (n, 3) evidence [valence, arousal, confidence] that
:func:`pipelines.mood.fusion.fuse_evidences` weighs by confidence against audio and text:

- **genre/tag priors** (:class:`pipelines.mood.priors.TagPriors`): each key's prior as its deviation
  from the corpus mean in units of the items' mood spread, ``(μ_key − μ) / (SPREAD_SDS · sd)`` (the
  rule the audio model's backbone prior uses: ±2 SD span [−1, 1]); a track's keys are averaged with
  weight ``support confidence × source weight`` (observed 1; an imputed genre its imputation
  confidence; imputed or text-matched tags ``IMPUTED_TAG_WEIGHT``). Confidence = how far the priors
  carry to another catalogue (``TagPriors.transfer``: r of priors learned on MTG-Jamendo alone
  against MusicCaps moods and back, mean over axes; lower than the within-corpus CV r, and the
  crawl is neither corpus) × the weighted mean weight.
- **artist pooling**: the confidence-weighted mean of the *other* tracks of the same artist (their
  own audio/text evidence only, so nothing is counted twice). With intra-class correlation ρ (the
  share of mood variance between artists, estimated on MTG-Jamendo) the mean of n other tracks
  predicts a track with correlation ``√(ρ·B)``, ``B = nρ / (1 + (n − 1)ρ)`` the empirical-Bayes
  shrinkage factor; that correlation is the evidence's confidence, so fusing it shrinks a track
  toward its artist's mean the more, the more tracks the artist has and the weaker the track's own evidence.
"""

import re
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from pipelines.heal.genres import UNKNOWN_GENRE
from pipelines.heal.impute import MetadataImputationConfig
from pipelines.heal.textdoc import split_tags
from pipelines.mood.priors import SPREAD_SDS, TagPriors
from pipelines.schema import GENRE_SPLIT_PATTERN

# An imputed (kNN-voted) tag carries at least this share of its neighbours' votes: its weight.
IMPUTED_TAG_WEIGHT = MetadataImputationConfig().tag_share
OBSERVED = "observed"
UNKNOWN_GENRE_SOURCE = "unknown"
_GENRE_SPLIT = re.compile(GENRE_SPLIT_PATTERN)


def genre_keys(genre: str | None) -> list[str]:
    """The genres of a genre cell (split on the schema's separators), blanks dropped."""
    return [g for g in _GENRE_SPLIT.split(genre or "") if g.strip()]


def metadata_keys(
    *, genre: str | None, genre_source: str | None, genre_confidence: float | None, tags: str | None,
    tags_source: str | None, is_rated,
) -> list[tuple[str, float]]:
    """(key, source weight) of one track: its genres and the tags ``is_rated(tag)`` says the word
    norms do not rate (those are read as mood words elsewhere). An unknown genre gives nothing."""
    out: list[tuple[str, float]] = []
    if genre and genre_source != UNKNOWN_GENRE_SOURCE and genre.strip().casefold() != UNKNOWN_GENRE.casefold():
        w = 1.0 if genre_source in (OBSERVED, None) else float(genre_confidence or 0.0)
        out += [(g, w) for g in genre_keys(genre)]
    if tags:
        w = 1.0 if tags_source in (OBSERVED, None) else IMPUTED_TAG_WEIGHT
        out += [(t, w) for t in split_tags(tags) if not is_rated(t)]
    return [(k, w) for k, w in out if w > 0]


def prior_evidence(keys: Sequence[Sequence[tuple[str, float]]], priors: TagPriors) -> np.ndarray:
    """(n, 3) evidence of the tracks' (key, source weight) lists (module doc); NaN rows where no key
    has a prior."""
    out = np.full((len(keys), 3), np.nan)
    mean, sd = np.asarray(priors.mean), np.asarray(priors.spread)
    reliability = float(np.mean(priors.transfer))
    for i, track_keys in enumerate(keys):
        found = [(p, w) for p, w in ((priors.lookup(k), w) for k, w in track_keys) if p is not None]
        if not found:
            continue
        w = np.array([p.confidence * sw for p, sw in found])
        if w.sum() <= 0:
            continue
        dev = (np.array([[p.valence, p.arousal] for p, _ in found]) - mean) / (SPREAD_SDS * sd)
        out[i, :2] = np.clip((w[:, None] * dev).sum(0) / w.sum(), -1.0, 1.0)
        out[i, 2] = reliability * float((w**2).sum() / w.sum())
    return out


def shrinkage_confidence(n: np.ndarray, icc: float) -> np.ndarray:
    """Correlation of the mean of ``n`` other tracks of an artist with one more: ``√(ρ·B)``,
    ``B = nρ / (1 + (n − 1)ρ)`` (0 where n = 0 or ρ = 0)."""
    n = np.asarray(n, dtype=np.float64)
    b = np.where(n > 0, n * icc / np.maximum(1.0 + (n - 1.0) * icc, 1e-12), 0.0)
    return np.sqrt(np.clip(icc * b, 0.0, 1.0))


def artist_evidence(own: np.ndarray, artists: Sequence[str | None], icc: float) -> np.ndarray:
    """(n, 3) artist evidence: per track the confidence-weighted mean of the own evidence of the
    other tracks of its artist (``own`` (n, 3), NaN rows = no evidence; artists compared
    case-insensitively, None = unknown); confidence :func:`shrinkage_confidence` of how many others
    have evidence. NaN rows where the artist has no other track with evidence."""
    own = np.asarray(own, dtype=np.float64)
    out = np.full((len(artists), 3), np.nan)
    if icc <= 0:
        return out
    has = np.isfinite(own[:, :2]).all(1)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(artists):
        if a is not None and a.strip():
            groups[a.strip().casefold()].append(i)
    for rows in groups.values():
        idx = np.array(rows)
        ev = idx[has[idx]]
        if len(rows) < 2 or len(ev) == 0:
            continue
        c = np.clip(np.nan_to_num(own[ev, 2]), 0.0, 1.0)
        w = np.where(c.sum() > 0, c, 1.0)  # all zero confidence: plain mean
        sum_w, sum_wva = w.sum(), (w[:, None] * own[ev, :2]).sum(0)
        for i in idx:
            mine = has[i]
            n_other = len(ev) - int(mine)
            if n_other == 0:
                continue
            wi = w[np.searchsorted(ev, i)] if mine else 0.0
            vi = own[i, :2] if mine else 0.0
            denom = sum_w - wi
            if denom <= 0:
                continue
            out[i, :2] = (sum_wva - wi * vi) / denom
            out[i, 2] = shrinkage_confidence(np.array([n_other]), icc)[0]
    return out
