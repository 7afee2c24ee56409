"""Scoring: text / audio / mood / collaborative similarities, per-query-type weights, popularity.

Every signal is in [0, 1]. Per track the positive weights are renormalised over the signals it
has: audio only when the track and the query have an audio vector; the mood weight is multiplied
by the track's mood_confidence (0 when its mood is unknown) and by the query mood's confidence.
The popularity penalty is subtracted for the top 1 % most played. Collaborative = popularity
within the track's cluster (its primary genre), see :func:`cluster_popularity`.
"""

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines import schema as S
from pipelines.rank.retrieve import Candidates
from pipelines.rank.understand import QueryUnderstanding


@dataclass(frozen=True)
class Weights:
    text: float
    audio: float
    mood: float
    collab: float
    popularity_penalty: float


# The one table of per-query-type weights. "attribute" is the "text-heavy" row ("rock guitar
# solo"): instrument/production words are best matched by text.
WEIGHTS: dict[str, Weights] = {
    "attribute": Weights(text=0.50, audio=0.25, mood=0.15, collab=0.10, popularity_penalty=0.05),
    "mood": Weights(text=0.15, audio=0.35, mood=0.35, collab=0.10, popularity_penalty=0.05),
    "genre": Weights(text=0.35, audio=0.30, mood=0.20, collab=0.10, popularity_penalty=0.05),
    "artist": Weights(text=0.40, audio=0.30, mood=0.15, collab=0.10, popularity_penalty=0.05),
    "default": Weights(text=0.20, audio=0.35, mood=0.30, collab=0.10, popularity_penalty=0.05),
}

COLLAB_PRIOR = 10.0  # pseudo-count: small genres' percentiles shrink towards the global one
POPULAR_QUANTILE = 0.99  # top 1 % most played get the popularity penalty
MOOD_MAX_DIST = 2.0 * math.sqrt(2.0)  # diameter of [-1, 1]²


def _top_quantile_mask(values: np.ndarray, q: float) -> np.ndarray:
    """(n,) bool: values at or above the ``q`` quantile of the known values (never 0 or NaN)."""
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return np.zeros(values.shape, dtype=bool)
    cut = float(np.quantile(finite, q))
    filled = np.nan_to_num(values, nan=-np.inf)
    return (filled >= cut) & (filled > 0)


def primary_genre_expr(genre: pl.Expr) -> pl.Expr:
    """Polars expression: the first genre token ("Rock|Pop" → "rock"), lower-cased; null if none."""
    return genre.str.to_lowercase().str.extract(S.PRIMARY_GENRE_PATTERN, 1)


def cluster_popularity(*, tracks: pl.DataFrame, prior: float = COLLAB_PRIOR) -> np.ndarray:
    """(n,) float32 in [0, 1]: each track's popularity within its cluster (primary genre).

    Mid-rank percentile of log(1 + plays) — (tracks below + ½ tracks tied) / tracks with known
    plays — among the known-play tracks of the same primary genre (:func:`primary_genre_expr`).
    A genre with few known-play tracks is unreliable, so its percentile is shrunk towards the
    global one: ``(n_g · p_genre + prior · p_global) / (n_g + prior)``. Null genre → the global
    percentile; unknown plays → 0 (no evidence). Vectorised: two sorts (np.lexsort), no row loop.
    """
    n = tracks.height
    plays = tracks[S.PLAYBACK_COUNT].cast(pl.Float64).to_numpy()
    known = ~np.isnan(plays)
    out = np.zeros(n, dtype=np.float32)
    if not known.any():
        return out
    lp = np.log1p(np.maximum(plays[known], 0.0))
    genre = _primary_genre_codes(tracks[S.GENRE])[known]
    p_global, _ = _midrank_percentile(values=lp, groups=np.zeros(len(lp), np.int64))
    p_genre, n_g = _midrank_percentile(values=lp, groups=genre)
    blended = np.where(genre < 0, p_global, (n_g * p_genre + prior * p_global) / (n_g + prior))
    out[known] = np.clip(blended, 0.0, 1.0)
    return out


def _midrank_percentile(*, values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per element of ``values`` (m,): (below + ½ tied) / group size within its ``groups`` (m,) int
    group, and that group size (both (m,) float64)."""
    m = len(values)
    order = np.lexsort((values, groups))
    v, g = values[order], groups[order]
    pos = np.arange(m)
    new_group = np.r_[True, g[1:] != g[:-1]]
    new_run = new_group | np.r_[True, v[1:] != v[:-1]]
    group_start = np.maximum.accumulate(np.where(new_group, pos, 0))
    group_id = np.cumsum(new_group) - 1
    group_size = np.diff(np.r_[pos[new_group], m])[group_id]
    run_id = np.cumsum(new_run) - 1
    run_start = pos[new_run]
    run_len = np.diff(np.r_[run_start, m])
    pct = (run_start[run_id] - group_start + 0.5 * run_len[run_id]) / group_size
    pct_out, size_out = np.empty(m), np.empty(m)
    pct_out[order], size_out[order] = pct, group_size
    return pct_out, size_out


def dense_codes(values: pl.Series) -> np.ndarray:
    """(n,) int64 codes of a String series (equal strings share a code, ≥ 0); -1 for null."""
    return values.cast(pl.String).cast(pl.Categorical).to_physical().cast(pl.Int64).fill_null(-1).to_numpy()


def _primary_genre_codes(genre: pl.Series) -> np.ndarray:
    """(n,) int64 codes of each row's primary genre (-1: none); the regex runs once per distinct string."""
    distinct = genre.cast(pl.String).unique().drop_nulls()
    primary = pl.select(primary_genre_expr(pl.lit(distinct))).to_series()
    return dense_codes(genre.cast(pl.String).replace_strict(distinct, primary, default=None, return_dtype=pl.String))


@dataclass(frozen=True)
class TrackPriors:
    """Per-row inputs of scoring that do not depend on the query (every array (n,))."""

    va: np.ndarray  # (n, 2) float32 valence, arousal (NaN = unknown)
    mood_conf: np.ndarray  # float32 in [0, 1] (0 = unknown)
    has_mood: np.ndarray  # bool
    has_audio: np.ndarray  # bool
    collab: np.ndarray  # float32 popularity within the cluster
    popular: np.ndarray  # bool: gets the popularity penalty

    @classmethod
    def from_tracks(cls, tracks: pl.DataFrame, *, has_audio: np.ndarray, has_mood: np.ndarray) -> "TrackPriors":
        mood_conf = np.nan_to_num(tracks[S.MOOD_CONFIDENCE].cast(pl.Float32).to_numpy(), nan=0.0)
        plays = tracks[S.PLAYBACK_COUNT].cast(pl.Float64).to_numpy()
        return cls(
            va=tracks.select(S.VALENCE, S.AROUSAL).to_numpy().astype(np.float32),
            mood_conf=np.clip(mood_conf, 0.0, 1.0), has_mood=has_mood, has_audio=has_audio,
            collab=cluster_popularity(tracks=tracks), popular=_top_quantile_mask(plays, POPULAR_QUANTILE),
        )


@dataclass(frozen=True)
class ScoreBreakdown:
    """Scores of c candidates with their parts (every array (c,))."""

    total: np.ndarray
    contrib: dict[str, np.ndarray]  # per-signal contributions (sum = total)
    explanation: dict[str, np.ndarray]  # raw sims and effective normalised weights


def score(cands: Candidates, qu: QueryUnderstanding, priors: TrackPriors) -> ScoreBreakdown:
    """Scores with their parts for the candidates (see the module docstring)."""
    w = WEIGHTS[qu.query_type]
    cand = cands.rows
    c = len(cand)
    text_sim = np.clip(cands.text_sim, 0.0, 1.0)
    if cands.audio_query is not None:
        has_audio = priors.has_audio[cand].astype(np.float32)
        audio_sim = np.clip(np.nan_to_num(cands.audio_sim, nan=0.0), 0.0, 1.0)
    else:
        audio_sim = np.zeros(c, np.float32)
        has_audio = np.zeros(c, np.float32)
    va = priors.va[cand]
    dist = np.linalg.norm(va - np.array([qu.valence, qu.arousal], np.float32), axis=1)
    mood_sim = np.nan_to_num(1.0 - dist / MOOD_MAX_DIST, nan=0.0)
    # A mood counts in proportion to how sure we are of both ends: the track's mood and the
    # query's detected mood (a neutral or unfamiliar query has low confidence).
    track_conf = priors.mood_conf[cand] * priors.has_mood[cand]
    mood_w = w.mood * track_conf * qu.confidence
    audio_w = w.audio * has_audio
    collab = priors.collab[cand]
    denom = w.text + audio_w + mood_w + w.collab
    contrib = {
        "text": w.text * text_sim / denom,
        "audio": audio_w * audio_sim / denom,
        "mood": mood_w * mood_sim / denom,
        "collab": w.collab * collab / denom,
        "popularity_penalty": -w.popularity_penalty * priors.popular[cand].astype(np.float32),
    }
    total = np.asarray(sum(contrib.values()), dtype=np.float32)
    parts = {
        "text_sim": text_sim, "audio_sim": audio_sim, "mood_sim": mood_sim, "collab": collab,
        "w_text": w.text / denom, "w_audio": audio_w / denom, "w_mood": mood_w / denom,
        "w_collab": w.collab / denom, "mood_confidence": track_conf,
        "query_mood_confidence": np.full(c, qu.confidence, np.float32),
    }
    return ScoreBreakdown(total=total, contrib=contrib, explanation=parts)
