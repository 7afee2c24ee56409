"""The learned ranker's features: one row per (query, candidate), columns FEATURE_NAMES.

Everything comes from what the online ranking already has for a request: the query's mood,
confidence and type (:class:`QueryUnderstanding`), the candidates' similarities
(:class:`Candidates`), the hand scoring's sims, evidences and spread-adjusted weights
(:class:`ScoreBreakdown`) and the per-row priors (:class:`TrackPriors`: mood, confidences, audio
source, popularity). Per-query relative columns (``*_rank``: percentile within the candidates,
1 = best; ``text_gap``: distance to the best text match) let one model serve stores whose raw
similarity scales differ. Tag/genre overlap is the share of the query's matched genre/tag terms
found in the candidate's own terms (:class:`TermIndex`).
"""

import re
from collections.abc import Sequence

import numpy as np
import polars as pl

from pipelines import schema as S
from pipelines.rank.retrieve import Candidates
from pipelines.rank.score import MOOD_SOURCES, ScoreBreakdown, TrackPriors
from pipelines.rank.understand import QueryUnderstanding

FEATURE_NAMES: tuple[str, ...] = (
    "q_valence", "q_arousal", "q_confidence", "q_type_mood", "q_type_default", "q_type_lexical",
    "text_sim", "text_gap", "text_rank",
    "has_audio_query", "audio_sim", "audio_rank", "audio_evidence", "audio_extracted",
    "mood_sim", "mood_rank", "mood_evidence", "mood_conf", "mood_from_audio", "mood_imputed",
    "t_valence", "t_arousal", "va_agree", "v_product", "a_product",
    "collab", "popular", "tag_overlap",
    "hand_total", "hand_rank", "w_text", "w_audio", "w_mood",
)
_LEXICAL_TYPES = ("genre", "attribute", "artist")
_AUDIO_SOURCE_CODE = MOOD_SOURCES.index("audio")
_IMPUTED_CODES = np.array([MOOD_SOURCES.index(s) for s in ("imputed", "prior", "none")], np.int8)
_TERM = re.compile(r"[a-z0-9]+(?:[&'-][a-z0-9]+)*")
_SPLIT = re.compile(S.GENRE_SPLIT_PATTERN)


def norm_term(value: str) -> str:
    """A genre/tag/query term lower-cased and token-normalised ("Hip-Hop " → "hip-hop")."""
    return " ".join(_TERM.findall(value.lower()))


class TermIndex:
    """Which rows carry each genre/tag term (normalised): term → sorted (m,) int64 row ids."""

    def __init__(self, rows_of: dict[str, np.ndarray]) -> None:
        self.rows_of = rows_of

    @classmethod
    def from_terms(cls, terms: Sequence[Sequence[str] | None]) -> "TermIndex":
        """``terms[i]``: the genre/tag strings of row i (None: none)."""
        acc: dict[str, list[int]] = {}
        for i, lst in enumerate(terms):
            for t in {norm_term(x) for x in (lst or ())}:
                if t:
                    acc.setdefault(t, []).append(i)
        return cls({t: np.asarray(r, np.int64) for t, r in acc.items()})

    @classmethod
    def from_tracks(cls, tracks: pl.DataFrame) -> "TermIndex":
        """The genre tokens and tags of each row of a tracks frame (``S.GENRE``, ``S.TAGS`` list)."""
        genres = tracks[S.GENRE].cast(pl.String).to_list() if S.GENRE in tracks.columns else [None] * tracks.height
        tags = tracks[S.TAGS].to_list() if S.TAGS in tracks.columns else [None] * tracks.height
        return cls.from_terms([
            [*(_SPLIT.split(g) if g else ()), *(t or ())] for g, t in zip(genres, tags)
        ])

    def overlap(self, rows: np.ndarray, query_terms: Sequence[str]) -> np.ndarray:
        """(c,) float32: share of ``query_terms`` each of ``rows`` carries (0 without terms)."""
        out = np.zeros(len(rows), np.float32)
        wanted = {t for t in (norm_term(q) for q in query_terms) if t}
        if not wanted:
            return out
        for t in wanted & self.rows_of.keys():
            out += np.isin(rows, self.rows_of[t])
        return out / len(wanted)


def query_terms(qu: QueryUnderstanding) -> list[str]:
    """The genre and tag terms the query matched (``QueryUnderstanding.matched``)."""
    return [*qu.matched.get("genre", ()), *qu.matched.get("attribute", ())]


def _rank_pct(values: np.ndarray) -> np.ndarray:
    """(c,) float32 percentile of each value within ``values`` (1 = largest, ties share a rank)."""
    c = len(values)
    if c <= 1:
        return np.ones(c, np.float32)
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(c, np.float32)
    ranks[order] = np.arange(c, dtype=np.float32)
    return 1.0 - ranks / (c - 1)


def _part(breakdown: ScoreBreakdown, name: str, c: int) -> np.ndarray:
    value = breakdown.explanation.get(name)
    return np.zeros(c, np.float32) if value is None else np.asarray(value, np.float32)


def feature_matrix(
    cands: Candidates, qu: QueryUnderstanding, priors: TrackPriors, breakdown: ScoreBreakdown,
    *, terms: TermIndex | None = None,
) -> np.ndarray:
    """(c, len(FEATURE_NAMES)) float32 features of one request's candidates."""
    rows = cands.rows
    c = len(rows)
    x = np.zeros((c, len(FEATURE_NAMES)), np.float32)
    if c == 0:
        return x
    col = {name: j for j, name in enumerate(FEATURE_NAMES)}

    def put(name: str, value: np.ndarray | float) -> None:
        x[:, col[name]] = value

    put("q_valence", qu.valence)
    put("q_arousal", qu.arousal)
    put("q_confidence", qu.confidence)
    put("q_type_mood", float(qu.query_type == "mood"))
    put("q_type_default", float(qu.query_type == "default"))
    put("q_type_lexical", float(qu.query_type in _LEXICAL_TYPES))
    text = np.nan_to_num(np.asarray(cands.text_sim, np.float32), nan=0.0)
    put("text_sim", text)
    put("text_gap", text - text.max())
    put("text_rank", _rank_pct(text))
    has_aq = cands.audio_query is not None
    audio = np.nan_to_num(np.asarray(cands.audio_sim, np.float32), nan=0.0) if has_aq else np.zeros(c, np.float32)
    put("has_audio_query", float(has_aq))
    put("audio_sim", audio)
    put("audio_rank", _rank_pct(audio) if has_aq else 0.0)
    put("audio_evidence", _part(breakdown, "audio_evidence", c))
    put("audio_extracted", priors.audio_extracted[rows])
    mood = _part(breakdown, "mood_sim", c)
    put("mood_sim", mood)
    put("mood_rank", _rank_pct(mood))
    put("mood_evidence", _part(breakdown, "mood_evidence", c))
    put("mood_conf", priors.mood_conf[rows] * priors.has_mood[rows])
    source = priors.mood_source[rows]
    put("mood_from_audio", source == _AUDIO_SOURCE_CODE)
    put("mood_imputed", np.isin(source, _IMPUTED_CODES))
    va = np.nan_to_num(priors.va[rows], nan=0.0)
    put("t_valence", va[:, 0])
    put("t_arousal", va[:, 1])
    agree = ((va[:, 0] >= 0) == (qu.valence >= 0)) & ((va[:, 1] >= 0) == (qu.arousal >= 0)) & priors.has_mood[rows]
    put("va_agree", agree)
    put("v_product", va[:, 0] * qu.valence)
    put("a_product", va[:, 1] * qu.arousal)
    put("collab", priors.collab[rows])
    put("popular", priors.popular[rows])
    if terms is not None:
        put("tag_overlap", terms.overlap(rows, query_terms(qu)))
    put("hand_total", breakdown.total)
    put("hand_rank", _rank_pct(np.asarray(breakdown.total, np.float32)))
    for name in ("text", "audio", "mood"):
        put(f"w_{name}", _part(breakdown, f"w_{name}", c))
    return x
