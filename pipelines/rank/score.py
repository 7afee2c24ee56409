"""Scoring: text / audio / mood / collaborative signals, each weighted by how sure the system is.

Per candidate every signal has a similarity in [0, 1] and an *evidence* in [0, 1]: text, how
clearly the track's text matches the query (:func:`text_evidence`); audio, ``audio_conf`` (1 for
a recording; an imputed vector its confidence × IMPUTED_AUDIO_DISCOUNT); mood,
:meth:`TrackPriors.mood_evidence` (confidence and source); collab, 1 where plays are known.
Within one query's candidates a signal is z-normalised (:func:`normalise`; audio separately for
recordings and imputations) and mapped to ``v = clip(0.5 + evidence · z / (2 · Z_RANGE), 0, 1)``:
no evidence sits at the neutral 0.5. Spread rule: the weight is multiplied by
``min(1, sd / SPREAD_FLOOR[signal])`` (``sd`` over the candidates), so a near-constant signal
carries none; the mood weight also by the query mood's confidence / QUERY_CONF_FULL (≤ 1).
Contribution = weight / (row sum of WEIGHTS) · v, so the total is in [0, 1]; the popularity
penalty is subtracted for the top 1 % most played. Ablations zero one weight (:func:`ablated`).
Collaborative = popularity within the track's cluster (:func:`cluster_popularity`).
"""

import dataclasses
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
    "mood": Weights(text=0.10, audio=0.25, mood=0.55, collab=0.10, popularity_penalty=0.05),
    "genre": Weights(text=0.35, audio=0.30, mood=0.20, collab=0.10, popularity_penalty=0.05),
    "artist": Weights(text=0.40, audio=0.30, mood=0.15, collab=0.10, popularity_penalty=0.05),
    "default": Weights(text=0.15, audio=0.30, mood=0.45, collab=0.10, popularity_penalty=0.05),
}
SIGNALS: tuple[str, ...] = ("text", "audio", "mood", "collab")
# Ablation mode → the signal whose weight it sets to 0.
ABLATIONS: dict[str, str] = {"no_text": "text", "no_audio": "audio", "no_mood": "mood"}

# Mood sources (codes = position; a source not listed gets the code of "other").
MOOD_SOURCES: tuple[str, ...] = ("none", "prior", "imputed", "text", "fused", "audio", "other", "genre", "artist")
# How far a mood from each source is trusted, before its own confidence: "imputed" moods come
# from imputed audio alone; "prior" is the neutral placeholder of a track without evidence (older
# versions); "genre" is a genre/tag prior alone (a genre's typical mood, not this track's), "artist"
# the shrunk mean of the artist's other tracks.
MOOD_SOURCE_TRUST: dict[str, float] = {
    "none": 0.0, "prior": 0.0, "imputed": 0.5, "text": 1.0, "fused": 1.0, "audio": 1.0, "other": 0.75,
    "genre": 0.5, "artist": 0.75,
}
MOOD_CONF_FULL = 0.6  # a track mood confidence at or above this counts fully…
MOOD_EVIDENCE_BASE = 0.5  # …and a stated mood always counts at least this much (times its source's trust)
QUERY_CONF_FULL = 0.5  # a query mood confidence at or above this counts fully
AUDIO_SOURCE_EXTRACTED = "extracted"
AUDIO_SOURCE_NONE = "none"
IMPUTED_AUDIO_DISCOUNT = 0.5  # an imputed audio vector counts by its confidence × this
IMPUTED_AUDIO_CONF = 0.2  # imputation confidence assumed when the table does not carry one
# MiniLM cosines: unrelated texts sit at or below TEXT_MATCH_NONE; a clear match reaches TEXT_MATCH_FULL.
TEXT_MATCH_NONE, TEXT_MATCH_FULL = 0.25, 0.50
# Standard deviation over the candidates below which a signal counts as (near-)constant.
SPREAD_FLOOR: dict[str, float] = {"text": 0.02, "audio": 0.02, "mood": 0.03, "collab": 0.05}
Z_RANGE = 2.5  # ± this many standard deviations span [0, 1]

COLLAB_PRIOR = 10.0  # pseudo-count: small genres' percentiles shrink towards the global one
POPULAR_QUANTILE = 0.99  # top 1 % most played get the popularity penalty
MOOD_MAX_DIST = 2.0 * math.sqrt(2.0)  # diameter of [-1, 1]²


def ablated(w: Weights, mode: str) -> Weights:
    """``w`` with the weight of the signal an ablation ``mode`` removes set to 0 (other modes: ``w``)."""
    signal = ABLATIONS.get(mode)
    return w if signal is None else dataclasses.replace(w, **{signal: 0.0})


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


def mood_source_codes(sources: pl.Series) -> np.ndarray:
    """(n,) int8 codes into MOOD_SOURCES of a ``mood_source`` column (null → "none", unlisted → "other")."""
    known = {name: i for i, name in enumerate(MOOD_SOURCES)}
    names = sources.cast(pl.String).fill_null("none")
    return names.replace_strict(known, default=known["other"], return_dtype=pl.Int8).to_numpy().astype(np.int8)


def _audio_evidence(tracks: pl.DataFrame, has_audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((n,) float32 audio confidence in [0, 1], (n,) bool extracted): 1 for extracted audio, the
    imputation's ``audio_confidence`` (IMPUTED_AUDIO_CONF where the table has none) otherwise, 0
    without an audio vector."""
    n = tracks.height
    source = (tracks[S.AUDIO_SOURCE].cast(pl.String).fill_null(AUDIO_SOURCE_NONE) if S.AUDIO_SOURCE in tracks.columns
              else pl.Series([AUDIO_SOURCE_NONE] * n, dtype=pl.String))
    extracted = (source == AUDIO_SOURCE_EXTRACTED).to_numpy() & has_audio
    if S.AUDIO_CONFIDENCE in tracks.columns:
        conf = np.nan_to_num(tracks[S.AUDIO_CONFIDENCE].cast(pl.Float32).to_numpy(), nan=IMPUTED_AUDIO_CONF)
    else:
        conf = np.full(n, IMPUTED_AUDIO_CONF, np.float32)
    conf = np.where(extracted, 1.0, np.clip(conf, 0.0, 1.0)) * has_audio
    return conf.astype(np.float32), extracted


@dataclass(frozen=True)
class TrackPriors:
    """Per-row inputs of scoring that do not depend on the query (every array (n,))."""

    va: np.ndarray  # (n, 2) float32 valence, arousal (NaN = unknown)
    mood_conf: np.ndarray  # float32 in [0, 1] (0 = unknown)
    has_mood: np.ndarray  # bool
    has_audio: np.ndarray  # bool
    collab: np.ndarray  # float32 popularity within the cluster
    popular: np.ndarray  # bool: gets the popularity penalty
    audio_conf: np.ndarray  # float32 in [0, 1]: 1 extracted, the imputation confidence, 0 without audio
    audio_extracted: np.ndarray  # bool: the audio vector comes from the recording
    mood_source: np.ndarray  # int8 codes into MOOD_SOURCES
    has_plays: np.ndarray  # bool: the play count is known

    @classmethod
    def from_tracks(cls, tracks: pl.DataFrame, *, has_audio: np.ndarray, has_mood: np.ndarray) -> "TrackPriors":
        mood_conf = np.nan_to_num(tracks[S.MOOD_CONFIDENCE].cast(pl.Float32).to_numpy(), nan=0.0)
        plays = tracks[S.PLAYBACK_COUNT].cast(pl.Float64).to_numpy()
        audio_conf, extracted = _audio_evidence(tracks, np.asarray(has_audio, bool))
        return cls(
            va=tracks.select(S.VALENCE, S.AROUSAL).to_numpy().astype(np.float32),
            mood_conf=np.clip(mood_conf, 0.0, 1.0), has_mood=has_mood, has_audio=has_audio,
            collab=cluster_popularity(tracks=tracks), popular=_top_quantile_mask(plays, POPULAR_QUANTILE),
            audio_conf=audio_conf, audio_extracted=extracted,
            mood_source=mood_source_codes(tracks[S.MOOD_SOURCE]), has_plays=~np.isnan(plays),
        )

    def audio_evidence(self, rows: np.ndarray) -> np.ndarray:
        """(c,) float32: how much the audio vectors of ``rows`` count (imputed ones discounted)."""
        conf = self.audio_conf[rows]
        return np.where(self.audio_extracted[rows], conf, IMPUTED_AUDIO_DISCOUNT * conf).astype(np.float32)

    def mood_evidence(self, rows: np.ndarray) -> np.ndarray:
        """(c,) float32: how much the moods of ``rows`` count (confidence × source trust)."""
        trust = np.array([MOOD_SOURCE_TRUST[s] for s in MOOD_SOURCES], np.float32)[self.mood_source[rows]]
        conf = np.minimum(self.mood_conf[rows] / MOOD_CONF_FULL, 1.0)
        evidence = MOOD_EVIDENCE_BASE + (1.0 - MOOD_EVIDENCE_BASE) * conf
        return (evidence * trust * self.has_mood[rows]).astype(np.float32)


@dataclass(frozen=True)
class ScoreBreakdown:
    """Scores of c candidates with their parts (every array (c,))."""

    total: np.ndarray
    contrib: dict[str, np.ndarray]  # per-signal contributions (sum = total)
    # raw sims ("<signal>_sim", "collab"), evidences ("<signal>_evidence"), normalised values
    # ("<signal>_value"), effective weights ("w_<signal>": contribution = weight × value),
    # the track's and the query's mood confidences
    explanation: dict[str, np.ndarray]


def mood_match(va: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(c,) float32 in [0, 1]: 1 − distance from each (valence, arousal) row of ``va`` (c, 2) to
    the target's region / MOOD_MAX_DIST (0 for an unknown mood). The region is, per axis, the
    target's side of 0 at least as far out as the target (0 counts as positive): a stronger mood of
    the same kind matches as well as the target itself, one across 0 does not."""
    sign = np.where(np.asarray(target) >= 0, 1.0, -1.0)
    gap = np.maximum(0.0, np.abs(target) - va * sign)  # how far short of the target, per axis
    return np.nan_to_num(1.0 - np.linalg.norm(gap, axis=1) / MOOD_MAX_DIST, nan=0.0).astype(np.float32)


def text_evidence(text_sim: np.ndarray) -> np.ndarray:
    """(c,) float32: how much a text similarity says; 0 at or below TEXT_MATCH_NONE (unrelated
    texts score that much), 1 from TEXT_MATCH_FULL on, linear between."""
    e = (np.asarray(text_sim, np.float32) - TEXT_MATCH_NONE) / (TEXT_MATCH_FULL - TEXT_MATCH_NONE)
    return np.clip(e, 0.0, 1.0).astype(np.float32)


def normalise(
    sim: np.ndarray, evidence: np.ndarray, floor: float, groups: np.ndarray | None = None,
    *, weighted_stats: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """((c,) values in [0, 1], (c,) spread factors in [0, 1]) of one signal over a query's candidates.

    ``0.5 + evidence · z / (2 · Z_RANGE)`` clipped, z the signal's z-score around its
    evidence-weighted mean; the spread factor is ``min(1, sd / floor)`` (0 when no candidate has
    evidence or the signal is constant). ``groups`` (c,) int/bool: each group is standardised on
    its own (imputed audio vectors, averages of many recordings, sit closer to any query than
    recordings do: a shared offset, not evidence). ``weighted_stats=False``: mean and sd over
    every candidate alike (for an evidence that grows with the similarity itself, so the value
    stays monotonic in it).
    """
    c = len(sim)
    v = np.full(c, 0.5, np.float32)
    spread = np.zeros(c, np.float32)
    keys = np.zeros(c, np.int64) if groups is None else np.asarray(groups).astype(np.int64)
    for key in np.unique(keys):
        m = keys == key
        s, e = sim[m].astype(np.float64), evidence[m].astype(np.float64)
        if float(e.sum()) <= 0:
            continue
        w = e if weighted_stats else np.ones_like(e)
        mean = float((w * s).sum()) / float(w.sum())
        sd = math.sqrt(float((w * (s - mean) ** 2).sum()) / float(w.sum()))
        if sd <= 1e-6:  # constant up to float rounding
            continue
        v[m] = np.clip(0.5 + e * (s - mean) / (sd * 2.0 * Z_RANGE), 0.0, 1.0)
        spread[m] = min(1.0, sd / floor)
    return v, spread


def score(cands: Candidates, qu: QueryUnderstanding, priors: TrackPriors, *, mode: str = "full") -> ScoreBreakdown:
    """Scores with their parts for the candidates (see the module docstring); ``mode`` an ablation
    ("no_text", "no_audio", "no_mood") zeroes that signal's weight."""
    row = WEIGHTS[qu.query_type]
    w = ablated(row, mode)  # the other signals keep their contributions: the row sum stays the full one
    cand = cands.rows
    c = len(cand)
    has_audio_query = cands.audio_query is not None
    sims = {
        "text": np.clip(cands.text_sim, 0.0, 1.0).astype(np.float32),
        "audio": np.clip(np.nan_to_num(cands.audio_sim, nan=0.0), 0.0, 1.0).astype(np.float32)
        if has_audio_query else np.zeros(c, np.float32),
        "mood": mood_match(priors.va[cand], np.array([qu.valence, qu.arousal], np.float32)),
        "collab": priors.collab[cand],
    }
    evidence = {
        "text": text_evidence(sims["text"]),
        "audio": priors.audio_evidence(cand) * (~np.isnan(cands.audio_sim)) if has_audio_query
        else np.zeros(c, np.float32),
        "mood": priors.mood_evidence(cand),
        "collab": priors.has_plays[cand].astype(np.float32),
    }
    row_sum = row.text + row.audio + row.mood + row.collab
    q_conf = min(1.0, max(0.0, float(qu.confidence)) / QUERY_CONF_FULL)
    base = {"text": w.text, "audio": w.audio, "mood": w.mood * q_conf, "collab": w.collab}
    contrib: dict[str, np.ndarray] = {}
    parts: dict[str, np.ndarray] = {}
    for name in SIGNALS:
        groups = priors.audio_extracted[cand] if name == "audio" else None
        v, spread = normalise(sims[name], evidence[name], SPREAD_FLOOR[name], groups,
                              weighted_stats=name != "text")
        weight = (base[name] * spread / row_sum).astype(np.float32)
        contrib[name] = (weight * v).astype(np.float32)
        parts["collab" if name == "collab" else f"{name}_sim"] = sims[name]
        parts[f"{name}_evidence"] = evidence[name]
        parts[f"{name}_value"] = v
        parts[f"w_{name}"] = weight
    contrib["popularity_penalty"] = -w.popularity_penalty * priors.popular[cand].astype(np.float32)
    total = np.asarray(sum(contrib.values()), dtype=np.float32)
    parts["mood_confidence"] = priors.mood_conf[cand] * priors.has_mood[cand]
    parts["query_mood_confidence"] = np.full(c, qu.confidence, np.float32)
    return ScoreBreakdown(total=total, contrib=contrib, explanation=parts)
