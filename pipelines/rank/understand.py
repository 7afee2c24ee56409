"""Query understanding: embed the query once, predict its mood, detect its type, steer it by seeds/target.

The query type comes from lexicons built from the bundle's own genres, tags and artists plus a
mood signal (MTG-Jamendo mood/theme tags, the Glasgow/VADER lexicon, context cues); a confident
query-mood model makes an otherwise untyped query a mood query.
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from pipelines import schema as S
from pipelines.rank.types import QueryType, TargetMood

SEED_QUERY_WEIGHT = 0.5  # share of the query embedding in the seed-blended text query
STRONG_AFFECT = 0.45  # |valence| or |arousal| (lexicon, [-1, 1]) that marks a mood word
MODEL_MOOD_STRENGTH = 0.3  # query-mood model: |valence| or |arousal| that makes a query a mood query…
MODEL_MOOD_CONFIDENCE = 0.45  # …when the model is at least this confident
# Words that are about music itself; the lexicons rate some of them ("music" has valence 0.74)
# but they say nothing about the mood a user wants.
MUSIC_GENERIC = frozenset(
    "music song songs track tracks tune tunes playlist listen listening play playing like "
    "something some any good best new".split()
)
MOODTHEME_FILE = "corpus/moodtheme_tags.txt"
_TOKEN = re.compile(r"[a-z0-9]+(?:[&'-][a-z0-9]+)*")
_GENRE_SPLIT = re.compile(S.GENRE_SPLIT_PATTERN)
_OPAQUE_ID = re.compile(r"^(artist|album|track)_\d+$")


class MoodPredictor(Protocol):
    def predict(self, texts: Sequence[str], *, embeddings: np.ndarray | None = None) -> np.ndarray:
        """(n, 3) float: valence, arousal in [-1, 1], confidence in [0, 1]."""
        ...


@dataclass(frozen=True)
class QueryUnderstanding:
    embedding: np.ndarray  # (384,) float32
    valence: float
    arousal: float
    confidence: float
    query_type: QueryType
    matched: dict[str, list[str]]


def _ngrams(tokens: list[str], n_max: int = 4) -> set[str]:
    return {" ".join(tokens[i : i + n]) for n in range(1, n_max + 1) for i in range(len(tokens) - n + 1)}


def _norm_term(value: str) -> str:
    return " ".join(_TOKEN.findall(value.lower()))


@dataclass(frozen=True)
class QueryLexicons:
    """Vocabularies (lower-case, token-normalised) built from the bundle's own rows."""

    genres: frozenset[str]
    tags: frozenset[str]
    artists: frozenset[str]
    mood_terms: frozenset[str]

    @classmethod
    def from_tracks(cls, tracks: pl.DataFrame, *, mood_terms: Sequence[str] = ()) -> "QueryLexicons":
        genres: set[str] = set()
        for g in tracks[S.GENRE].drop_nulls().to_list():
            genres.update(t for t in (_norm_term(x) for x in _GENRE_SPLIT.split(g)) if t)
        tags: set[str] = set()
        for lst in tracks[S.TAGS].drop_nulls().to_list():
            tags.update(t for t in (_norm_term(x) for x in lst) if t)
        artists = {
            _norm_term(a)
            for a in tracks[S.ARTIST].drop_nulls().to_list()
            # Opaque catalogue ids and 1–2 letter names would match by accident.
            if not _OPAQUE_ID.match(a.strip().lower()) and len(_norm_term(a)) >= 3
        }
        return cls(
            genres=frozenset(genres), tags=frozenset(tags - genres), artists=frozenset(artists),
            mood_terms=frozenset(_norm_term(m) for m in mood_terms),
        )


def load_moodtheme_terms(*, data_dir: Path | None = None) -> list[str]:
    """MTG-Jamendo's 59 mood/theme tag names ("happy", "melancholic", …), or [] when absent."""
    from pipelines import store
    from pipelines.mood import lexicon

    try:
        path = lexicon.resolve_open_file(data_dir=data_dir or store.DATA_DIR, relative=MOODTHEME_FILE)
    except FileNotFoundError:
        return []
    return [line.strip().split("---")[-1] for line in path.read_text().splitlines() if line.strip()]


class QueryReader:
    """Embeds a query, predicts its mood and detects its type (thread-safe, no per-query state)."""

    def __init__(
        self, *, encoder: Callable[[Sequence[str]], np.ndarray], query_mood: MoodPredictor, lexicon: Any,
        lexicons: QueryLexicons,
    ) -> None:
        self.encoder = encoder
        self.query_mood = query_mood
        self.lexicon = lexicon
        self.lexicons = lexicons

    def understand(self, query: str) -> QueryUnderstanding:
        """Embed once, predict mood, detect the query type."""
        emb = np.asarray(self.encoder([query]), dtype=np.float32).reshape(1, -1)
        v, a, c = (float(x) for x in np.asarray(self.query_mood.predict([query], embeddings=emb))[0])
        qtype, matched = self.detect_query_type(query)
        if qtype == "default" and c >= MODEL_MOOD_CONFIDENCE and max(abs(v), abs(a)) >= MODEL_MOOD_STRENGTH:
            # No lexicon word fired, but the learned query-mood model is confident the text carries
            # a clear mood ("i miss my ex"): weight it as a mood query.
            qtype = "mood"
            matched = {**matched, "mood_model": [f"valence {v:+.2f}, arousal {a:+.2f}, confidence {c:.2f}"]}
        return QueryUnderstanding(
            embedding=emb[0], valence=float(np.clip(v, -1, 1)), arousal=float(np.clip(a, -1, 1)),
            confidence=float(np.clip(c, 0, 1)), query_type=qtype, matched=matched,
        )

    def detect_query_type(self, query: str) -> tuple[QueryType, dict[str, list[str]]]:
        """Query type by priority artist > mood > genre > attribute > default.

        Artists, genres and tags are whole-n-gram matches against the bundle's own vocabularies;
        the mood signal is a mood/theme tag word, a strongly affective lexicon word that is not a
        music word or a corpus genre/tag, or a context cue (workout, sleep, …) the norms rate.
        """
        tokens = _TOKEN.findall(query.lower())
        grams = _ngrams(tokens)
        lx = self.lexicons
        matched = {
            "artist": sorted(grams & lx.artists),
            "genre": sorted(grams & lx.genres),
            "attribute": sorted(grams & lx.tags),
            "mood": sorted(self._mood_words(tokens)),
        }
        for qtype in ("artist", "mood", "genre", "attribute"):
            if matched[qtype]:
                return qtype, matched  # type: ignore[return-value]
        return "default", matched

    def _mood_words(self, tokens: list[str]) -> set[str]:
        found = {t for t in tokens if t in self.lexicons.mood_terms}
        vocab = self.lexicons.genres | self.lexicons.tags
        for tok in tokens:
            if tok in MUSIC_GENERIC or tok in vocab or tok in found:
                continue
            entry = self.lexicon.lookup(tok)
            if entry is None:
                continue
            v = self.lexicon.valence.get(entry, 0.0)
            a = self.lexicon.arousal.get(entry, 0.0)
            if max(abs(v), abs(a)) >= STRONG_AFFECT:
                found.add(tok)
        if hasattr(self.lexicon, "context_cues"):
            found.update(self.lexicon.context_cues(" ".join(tokens)))
        return found


def steer(
    qu: QueryUnderstanding, *, n_seeds: int, seed_text: np.ndarray, seed_va: np.ndarray, seed_conf: np.ndarray,
    target: TargetMood | None,
) -> QueryUnderstanding:
    """The query after ``n_seeds`` seeds and an explicit mood ``target``.

    ``seed_text`` (s, 384): the seeds' text vectors; ``seed_va`` (m, 2) / ``seed_conf`` (m,): mood
    and mood confidence of the seeds that have a mood.

    Text: ``normalise(SEED_QUERY_WEIGHT · q + (1 − SEED_QUERY_WEIGHT) · normalise(mean seed
    text))``. Mood: ``target`` → that point, confidence 1, query type "mood" unless an artist
    matched; else with seeds that have a mood: ``(c_q · m_q + c_s · m_s) / (c_q + c_s)`` where
    m_s is the seeds' confidence-weighted mean mood, c_s their mean confidence and c_q the
    query's; the blended confidence is ``(c_q² + c_s²) / (c_q + c_s)``.
    """
    emb, v, a, c = qu.embedding, qu.valence, qu.arousal, qu.confidence
    qtype, matched = qu.query_type, dict(qu.matched)
    if n_seeds:
        m = seed_text.astype(np.float64).mean(0)
        if np.linalg.norm(m) > 0:
            blend = SEED_QUERY_WEIGHT * emb + (1 - SEED_QUERY_WEIGHT) * m / np.linalg.norm(m)
            if np.linalg.norm(blend) > 0:
                emb = (blend / np.linalg.norm(blend)).astype(np.float32)
        matched["seeds"] = [str(n_seeds)]
    if target is not None:
        v, a, c = float(target.valence), float(target.arousal), 1.0
        if not matched.get("artist"):
            qtype = "mood"
        matched["target"] = [f"valence {v:+.2f}, arousal {a:+.2f}"]
    elif n_seeds:
        conf = seed_conf.astype(np.float64)
        if len(conf) and conf.sum() > 0:
            m_s = (conf[:, None] * seed_va).sum(0) / conf.sum()
            c_s = float(conf.mean())
            v = float((c * v + c_s * m_s[0]) / (c + c_s))
            a = float((c * a + c_s * m_s[1]) / (c + c_s))
            c = float((c * c + c_s * c_s) / (c + c_s))
    return QueryUnderstanding(
        embedding=emb, valence=float(np.clip(v, -1, 1)), arousal=float(np.clip(a, -1, 1)),
        confidence=float(np.clip(c, 0, 1)), query_type=qtype, matched=matched,
    )
