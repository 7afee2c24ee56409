"""Online ranking shared by the HTTP service and the evaluation harness (no web framework here).

Five timed stages per request (``RecommendResult.metadata.stages``, milliseconds):

1. query_understanding — embed the query once (MiniLM); (valence, arousal, confidence) from the
   query-mood model; query type from lexicons built from the bundle's own genres, tags and artists
   plus a mood signal (MTG-Jamendo mood/theme tags, the Glasgow/VADER lexicon, context cues).
2. retrieval — text, mood and audio FAISS searches (a few hundred each) run in a thread pool,
   restricted to the allow-list (filters + live links); union of ids = candidates.
3. scoring — text / audio / mood / collaborative similarities, per-query-type weights (WEIGHTS),
   per-track renormalisation over the signals the track actually has, popularity penalty.
4. reranking — MMR over the candidates' text vectors (vectorised) with artist spacing.
5. postprocessing — the allow-list (DuckDB over ``tracks.parquet`` with bound parameters; DEAD
   links removed) and result assembly. The allow-list is built before retrieval (it is passed into
   the FAISS searches) but its time is reported here.

``mode="baseline"``: MiniLM query embedding + exact inner product over all text vectors of the
allowed rows (same hard constraints: filters and no DEAD links), top k, nothing else.
"""

import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import duckdb
import numpy as np
import polars as pl

from pipelines import indexing
from pipelines import schema as S
from pipelines.bundle import Bundle
from pipelines.embedding import embed_texts

QueryType = Literal["mood", "genre", "artist", "attribute", "default"]
Mode = Literal["full", "baseline"]
STAGES: tuple[str, ...] = ("query_understanding", "retrieval", "scoring", "reranking", "postprocessing")


@dataclass(frozen=True)
class Weights:
    text: float
    audio: float
    mood: float
    collab: float
    popularity_penalty: float


# PLAN.md §5.2, the one table of per-query-type weights. "attribute" is the plan's "text-heavy"
# row ("rock guitar solo"): instrument/production words are best matched by text.
WEIGHTS: dict[str, Weights] = {
    "attribute": Weights(text=0.50, audio=0.25, mood=0.15, collab=0.10, popularity_penalty=0.05),
    "mood": Weights(text=0.15, audio=0.35, mood=0.35, collab=0.10, popularity_penalty=0.05),
    "genre": Weights(text=0.35, audio=0.30, mood=0.20, collab=0.10, popularity_penalty=0.05),
    "artist": Weights(text=0.40, audio=0.30, mood=0.15, collab=0.10, popularity_penalty=0.05),
    "default": Weights(text=0.20, audio=0.35, mood=0.30, collab=0.10, popularity_penalty=0.05),
}

RETRIEVAL_K = 300  # per index
AUDIO_SEED_K = 25  # tracks nearest the target mood whose audio vectors form the audio query
MMR_LAMBDA = 0.7  # relevance vs diversity
MMR_POOL_MIN = 100  # MMR looks at the best max(MMR_POOL_MIN, 5k) scored candidates
ARTIST_WINDOW = 3  # at most one track per artist in any window of this many results
POPULAR_QUANTILE = 0.99  # top 1 % most played get the popularity penalty
MOOD_MAX_DIST = 2.0 * math.sqrt(2.0)  # diameter of [-1, 1]²
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
_SPLIT = re.compile(r"\s*[,|;/]\s*")
_OPAQUE_ID = re.compile(r"^(artist|album|track)_\d+$")


class MoodPredictor(Protocol):
    def predict(self, texts: Sequence[str], *, embeddings: np.ndarray | None = None) -> np.ndarray:
        """(n, 3) float: valence, arousal in [-1, 1], confidence in [0, 1]."""
        ...


@dataclass(frozen=True)
class Filters:
    min_year: int | None = None
    max_year: int | None = None
    genres: tuple[str, ...] = ()
    exclude_artists: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self.min_year is None and self.max_year is None and not self.genres and not self.exclude_artists


@dataclass(frozen=True)
class RecommendRequest:
    query: str
    top_k: int = 20
    filters: Filters | None = None
    mode: Mode = "full"


@dataclass(frozen=True)
class TrackMood:
    valence: float | None
    arousal: float | None
    source: str | None
    confidence: float | None


@dataclass(frozen=True)
class RankedTrack:
    track_id: str
    title: str | None
    artist: str | None
    year: int | None
    genre: str | None
    tags: list[str]
    permalink_url: str | None
    url_status: str | None
    score: float
    mood: TrackMood
    signals: dict[str, float] = field(default_factory=dict)  # per-signal contributions


@dataclass(frozen=True)
class MoodDetected:
    valence: float
    arousal: float
    confidence: float


@dataclass(frozen=True)
class ResultMetadata:
    total_candidates: int
    processing_time_ms: float
    stages: dict[str, float]
    store_version: str


@dataclass(frozen=True)
class RecommendResult:
    query: str
    mood_detected: MoodDetected | None
    query_type: str
    results: list[RankedTrack]
    metadata: ResultMetadata


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
            genres.update(t for t in (_norm_term(x) for x in _SPLIT.split(g)) if t)
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
    from pipelines import lexicon, store

    try:
        path = lexicon.resolve_open_file(data_dir=data_dir or store.DATA_DIR, relative=MOODTHEME_FILE)
    except FileNotFoundError:
        return []
    return [line.strip().split("---")[-1] for line in path.read_text().splitlines() if line.strip()]


def _top_quantile_mask(values: np.ndarray, q: float) -> np.ndarray:
    """(n,) bool: values at or above the ``q`` quantile of the known values (never 0 or NaN)."""
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return np.zeros(values.shape, dtype=bool)
    cut = float(np.quantile(finite, q))
    filled = np.nan_to_num(values, nan=-np.inf)
    return (filled >= cut) & (filled > 0)


class Recommender:
    """Recommendations over one loaded :class:`Bundle` (thread-safe; one per served version)."""

    def __init__(
        self,
        bundle: Bundle,
        *,
        encoder: Callable[[Sequence[str]], np.ndarray] = embed_texts,
        query_mood: MoodPredictor | None = None,
        lexicon: Any | None = None,
        mood_terms: Sequence[str] | None = None,
        max_workers: int = 3,
    ) -> None:
        self.bundle = bundle
        self.encoder = encoder
        if query_mood is None:
            from pipelines.querymood import QueryMoodModel

            query_mood = QueryMoodModel.load(bundle.query_mood_path)
        self.query_mood = query_mood
        if lexicon is None:
            from pipelines.lexicon import MoodLexicon

            lexicon = MoodLexicon.from_files()
        self.lexicon = lexicon
        tracks = bundle.tracks
        self.lexicons = QueryLexicons.from_tracks(
            tracks, mood_terms=load_moodtheme_terms() if mood_terms is None else mood_terms
        )
        n = tracks.height
        self._va = tracks.select(S.VALENCE, S.AROUSAL).to_numpy().astype(np.float32)
        self._mood_conf = np.nan_to_num(tracks[S.MOOD_CONFIDENCE].cast(pl.Float32).to_numpy(), nan=0.0)
        self._mood_conf = np.clip(self._mood_conf, 0.0, 1.0)
        plays = tracks[S.PLAYBACK_COUNT].cast(pl.Float64).to_numpy()
        max_plays = np.nanmax(plays) if np.isfinite(plays).any() else 0.0
        self._collab = (
            np.nan_to_num(np.log1p(np.maximum(plays, 0)) / np.log1p(max_plays), nan=0.0)
            if max_plays > 0 else np.zeros(n)
        ).astype(np.float32)
        self._popular = _top_quantile_mask(plays, POPULAR_QUANTILE)
        self._artist_key = np.array(
            [a.strip().lower() if a else None for a in tracks[S.ARTIST].to_list()], dtype=object
        )
        self._live = (tracks[S.URL_STATUS].fill_null("UNKNOWN") != "DEAD").to_numpy()
        self._live_ids = np.flatnonzero(self._live).astype(np.int64)
        self._duck = duckdb.connect()
        self._duck_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="retrieval")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._duck.close()

    # ---------------------------------------------------------------- query understanding
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

    # ---------------------------------------------------------------- allow-list (filters)
    def allowed_ids(self, filters: Filters | None) -> np.ndarray:
        """(m,) int64 sorted row ids satisfying ``filters`` whose link is not DEAD.

        Filters run in DuckDB over the bundle's ``tracks.parquet`` with bound parameters:
        ``min_year``/``max_year`` inclusive (unknown year never passes a year filter), ``genres``
        case-insensitive match against any of a track's genres (``a|b``, ``a, b``),
        ``exclude_artists`` case-insensitive exact artist names.
        """
        if filters is None or filters.empty:
            return self._live_ids
        clauses = ["coalesce(url_status, '') <> 'DEAD'"]
        params: list[Any] = [str(self.bundle.tracks_path)]
        if filters.min_year is not None:
            clauses.append(f"{S.YEAR} >= ?")
            params.append(int(filters.min_year))
        if filters.max_year is not None:
            clauses.append(f"{S.YEAR} <= ?")
            params.append(int(filters.max_year))
        if filters.genres:
            clauses.append(
                f"list_has_any(list_transform(regexp_split_to_array(lower(coalesce({S.GENRE}, '')), "
                f"'\\s*[,|;/]\\s*'), lambda x: trim(x)), ?::VARCHAR[])"
            )
            params.append([g.strip().lower() for g in filters.genres])
        if filters.exclude_artists:
            clauses.append(f"({S.ARTIST} IS NULL OR NOT list_contains(?::VARCHAR[], lower(trim({S.ARTIST}))))")
            params.append([a.strip().lower() for a in filters.exclude_artists])
        sql = (
            "SELECT file_row_number AS rid FROM read_parquet(?, file_row_number = true) "
            f"WHERE {' AND '.join(clauses)} ORDER BY rid"
        )
        with self._duck_lock:
            cur = self._duck.cursor()
        try:
            rows = cur.execute(sql, params).fetchnumpy()["rid"]
        finally:
            cur.close()
        return np.asarray(rows, dtype=np.int64)

    # ---------------------------------------------------------------- retrieval
    def _search(self, index, queries: np.ndarray, k: int, allow: np.ndarray) -> np.ndarray:
        if index is None or index.ntotal == 0 or len(allow) == 0:
            return np.zeros(0, dtype=np.int64)
        full = len(allow) == len(self._live)  # every row allowed: no selector needed
        _, ids = indexing.search(index=index, queries=queries, k=k, allow=None if full else allow)
        return ids[0][ids[0] >= 0]

    def audio_query_vector(self, *, valence: float, arousal: float, allow: np.ndarray) -> np.ndarray | None:
        """(d,) unit audio query vector, or None when no track has audio.

        There is no audio in a text query, so the audio query is the confidence-weighted mean of
        the audio vectors of the AUDIO_SEED_K tracks (with audio) nearest the target mood; weights
        are each track's mood_confidence (uniform if all are 0).
        """
        b = self.bundle
        if b.audio_index is None or b.mood_index is None:
            return None
        seeds_allow = np.intersect1d(allow, np.flatnonzero(b.has_audio & b.has_mood))
        if len(seeds_allow) == 0:
            return None
        _, ids = indexing.search(
            index=b.mood_index, queries=np.array([[valence, arousal]], np.float32), k=AUDIO_SEED_K,
            allow=seeds_allow,
        )
        ids = ids[0][ids[0] >= 0]
        if len(ids) == 0:
            return None
        w = self._mood_conf[ids].astype(np.float64)
        if w.sum() <= 0:
            w = np.ones_like(w)
        vec = (w[:, None] * b.audio_rows(ids)).sum(0) / w.sum()
        norm = np.linalg.norm(vec)
        return (vec / norm).astype(np.float32) if norm > 0 else None

    def retrieve(self, qu: QueryUnderstanding, allow: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Union of the three searches' ids (sorted) and the audio query vector used (or None)."""
        b = self.bundle
        target = np.array([[qu.valence, qu.arousal]], dtype=np.float32)
        text_f = self._pool.submit(self._search, b.text_index, qu.embedding[None, :], RETRIEVAL_K, allow)
        mood_f = self._pool.submit(self._search, b.mood_index, target, RETRIEVAL_K, allow)

        def audio_job() -> tuple[np.ndarray, np.ndarray | None]:
            qa = self.audio_query_vector(valence=qu.valence, arousal=qu.arousal, allow=allow)
            if qa is None:
                return np.zeros(0, dtype=np.int64), None
            return self._search(b.audio_index, qa[None, :], RETRIEVAL_K, allow), qa

        audio_f = self._pool.submit(audio_job)
        audio_ids, qa = audio_f.result()
        ids = np.unique(np.concatenate([text_f.result(), mood_f.result(), audio_ids]))
        return ids.astype(np.int64), qa

    # ---------------------------------------------------------------- scoring
    def score(
        self, *, cand: np.ndarray, qu: QueryUnderstanding, audio_query: np.ndarray | None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Scores (c,) and per-signal arrays (c,) for candidate row ids ``cand`` (c,).

        Every signal is in [0, 1]. Per track the positive weights are renormalised over the
        signals it has: audio only when the track and the query have an audio vector; mood
        weight multiplied by the track's mood_confidence (0 when its mood is unknown) and by the
        query mood's confidence, so an uncertain mood counts less. The popularity penalty is subtracted for the top 1 % most played.
        """
        w = WEIGHTS[qu.query_type]
        b = self.bundle
        text_sim = np.clip(b.text_rows(cand) @ qu.embedding, 0.0, 1.0)
        if audio_query is not None:
            audio_sim = np.clip(b.audio_rows(cand) @ audio_query, 0.0, 1.0)
            has_audio = self.bundle.has_audio[cand].astype(np.float32)
        else:
            audio_sim = np.zeros(len(cand), np.float32)
            has_audio = np.zeros(len(cand), np.float32)
        va = self._va[cand]
        dist = np.linalg.norm(va - np.array([qu.valence, qu.arousal], np.float32), axis=1)
        mood_sim = np.nan_to_num(1.0 - dist / MOOD_MAX_DIST, nan=0.0)
        # A mood counts in proportion to how sure we are of both ends: the track's mood and the
        # query's detected mood (a neutral or unfamiliar query has low confidence).
        mood_w = w.mood * self._mood_conf[cand] * self.bundle.has_mood[cand] * qu.confidence
        audio_w = w.audio * has_audio
        collab = self._collab[cand]
        denom = w.text + audio_w + mood_w + w.collab
        contrib = {
            "text": w.text * text_sim / denom,
            "audio": audio_w * audio_sim / denom,
            "mood": mood_w * mood_sim / denom,
            "collab": w.collab * collab / denom,
            "popularity_penalty": -w.popularity_penalty * self._popular[cand].astype(np.float32),
        }
        total = sum(contrib.values())
        return np.asarray(total, dtype=np.float32), contrib

    # ---------------------------------------------------------------- reranking
    def rerank(self, *, cand: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
        """Positions into ``cand`` of the k results: MMR (λ=MMR_LAMBDA) with artist spacing.

        The pairwise text-similarity matrix of the pool is one matrix product; the greedy loop runs
        k times over numpy vectors. Artist spacing: a candidate whose artist is among the previous
        ARTIST_WINDOW-1 picks is skipped unless nothing else is left.
        """
        if len(cand) == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64)
        pool_n = min(len(cand), max(MMR_POOL_MIN, 5 * k))
        pool = np.argsort(-scores, kind="stable")[:pool_n]
        vecs = self.bundle.text_rows(cand[pool])
        sim = vecs @ vecs.T  # (p, p)
        rel = scores[pool].astype(np.float64)
        artists = self._artist_key[cand[pool]]
        max_sim = np.full(pool_n, -np.inf)
        available = np.ones(pool_n, dtype=bool)
        picked: list[int] = []
        for _ in range(min(k, pool_n)):
            mmr = MMR_LAMBDA * rel - (1 - MMR_LAMBDA) * np.where(np.isfinite(max_sim), max_sim, 0.0)
            mmr = np.where(available, mmr, -np.inf)
            recent = {artists[p] for p in picked[-(ARTIST_WINDOW - 1):]} - {None}
            if recent:
                blocked = np.array([a in recent for a in artists]) & available
                spaced = np.where(blocked, -np.inf, mmr)
                if np.isfinite(spaced).any():
                    mmr = spaced
            best = int(np.argmax(mmr))
            if not np.isfinite(mmr[best]):
                break
            picked.append(best)
            available[best] = False
            max_sim = np.maximum(max_sim, sim[best])
        return pool[np.array(picked, dtype=np.int64)]

    # ---------------------------------------------------------------- assembly
    def _track(self, row: int, score: float, signals: dict[str, float]) -> RankedTrack:
        r = self.bundle.tracks.row(int(row), named=True)
        return RankedTrack(
            track_id=r[S.TRACK_ID], title=r[S.TITLE], artist=r[S.ARTIST], year=r[S.YEAR],
            genre=r[S.GENRE], tags=list(r[S.TAGS] or []), permalink_url=r[S.PERMALINK_URL],
            url_status=r[S.URL_STATUS], score=float(score),
            mood=TrackMood(
                valence=None if r[S.VALENCE] is None else float(r[S.VALENCE]),
                arousal=None if r[S.AROUSAL] is None else float(r[S.AROUSAL]),
                source=r[S.MOOD_SOURCE],
                confidence=None if r[S.MOOD_CONFIDENCE] is None else float(r[S.MOOD_CONFIDENCE]),
            ),
            signals=signals,
        )

    def track_by_id(self, track_id: str) -> RankedTrack | None:
        """The bundle row of ``track_id`` (score 0), or None."""
        hits = self.bundle.tracks.with_row_index("_rid").filter(pl.col(S.TRACK_ID) == track_id)
        if hits.height == 0:
            return None
        return self._track(int(hits["_rid"][0]), 0.0, {})

    def recommend(self, req: RecommendRequest) -> RecommendResult:
        """Run the pipeline for one request (see module docstring)."""
        t0 = time.perf_counter()
        stages = dict.fromkeys(STAGES, 0.0)
        if req.mode == "baseline":
            return self._baseline(req, t0, stages)

        t = time.perf_counter()
        qu = self.understand(req.query)
        stages["query_understanding"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        allow = self.allowed_ids(req.filters)
        post_ms = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        cand, audio_query = self.retrieve(qu, allow)
        stages["retrieval"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        scores, contrib = self.score(cand=cand, qu=qu, audio_query=audio_query)
        stages["scoring"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        order = self.rerank(cand=cand, scores=scores, k=req.top_k)
        stages["reranking"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        results = [
            self._track(
                int(cand[p]), float(scores[p]), {name: float(arr[p]) for name, arr in contrib.items()}
            )
            for p in order
            if self._live[cand[p]]  # DEAD links are never returned (already excluded by allow)
        ]
        stages["postprocessing"] = post_ms + (time.perf_counter() - t) * 1000
        return RecommendResult(
            query=req.query,
            mood_detected=MoodDetected(valence=qu.valence, arousal=qu.arousal, confidence=qu.confidence),
            query_type=qu.query_type,
            results=results,
            metadata=ResultMetadata(
                total_candidates=int(len(cand)),
                processing_time_ms=(time.perf_counter() - t0) * 1000,
                stages=stages,
                store_version=self.bundle.version,
            ),
        )

    def _baseline(self, req: RecommendRequest, t0: float, stages: dict[str, float]) -> RecommendResult:
        t = time.perf_counter()
        q = np.asarray(self.encoder([req.query]), dtype=np.float32).reshape(1, -1)
        stages["query_understanding"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        allow = self.allowed_ids(req.filters)
        post_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        scores, ids = indexing.exact_search(
            vectors=indexing.VectorSet(ids=allow, vectors=self.bundle.text_rows(allow)), queries=q, k=req.top_k, metric="ip"
        )
        keep = ids[0] >= 0
        stages["retrieval"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        results = [self._track(int(i), float(s), {"text": float(s)}) for i, s in zip(ids[0][keep], scores[0][keep])]
        stages["postprocessing"] = post_ms + (time.perf_counter() - t) * 1000
        return RecommendResult(
            query=req.query, mood_detected=None, query_type="default", results=results,
            metadata=ResultMetadata(
                total_candidates=int(len(allow)), processing_time_ms=(time.perf_counter() - t0) * 1000,
                stages=stages, store_version=self.bundle.version,
            ),
        )
