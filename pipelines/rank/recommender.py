"""Online ranking shared by the HTTP service and the evaluation harness (no web framework here).

Five timed stages per request (``RecommendResult.metadata.stages``, milliseconds):

1. query_understanding — embed the query once (MiniLM); (valence, arousal, confidence) from the
   query-mood model; query type from lexicons built from the bundle's own genres, tags and artists
   plus a mood signal (MTG-Jamendo mood/theme tags, the Glasgow/VADER lexicon, context cues).
2. retrieval — text, mood and audio FAISS searches (a few hundred each) run in a thread pool,
   restricted to the allow-list (filters + live links); union of ids = candidates, minus the
   seeds (and other versions of them), with at most ARTIST_CAP_CANDIDATES per artist (those with
   the best rank in any of the three searches).
3. scoring — text / audio / mood / collaborative similarities, per-query-type weights (WEIGHTS),
   per-track renormalisation over the signals the track actually has, popularity penalty.
   Collaborative = popularity within the track's cluster (its primary genre), see
   :func:`cluster_popularity`.
4. reranking — MMR over the candidates' text vectors (vectorised, λ = 1 − diversity) with artist
   spacing and version dedup (one result per artist + canonical title, :mod:`pipelines.rank.dedup`).
5. postprocessing — the allow-list (DuckDB over ``tracks.parquet`` with bound parameters; DEAD
   links removed unless ``include_unavailable``) and result assembly. The allow-list is built
   before retrieval (it is passed into the FAISS searches) but its time is reported here.

Query vectors ("more like this", ``seed_track_ids``): the text query is
``normalise(SEED_QUERY_WEIGHT · q̂ + (1 − SEED_QUERY_WEIGHT) · normalise(mean seed text))`` — the
user's words and the seeds count equally by default; the audio query is the seeds' mean audio
vector (seeds with audio; ``audio_query_source="seeds"``), else the vectors of the tracks nearest
the target mood (``"target_mood"``), else none. The mood target is ``req.target`` (confidence 1)
when given, else the confidence-weighted blend of the detected query mood and the seeds' mean mood.

``mode="baseline"``: MiniLM query embedding + exact inner product over all text vectors of the
allowed rows (same hard constraints: filters and no DEAD links), top k, nothing else.
"""

import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import duckdb
import numpy as np
import polars as pl

from pipelines.errors import UnknownTrackError
from pipelines.rank import dedup

from pipelines.index import build as indexing
from pipelines import schema as S
from pipelines.index.bundle import Bundle
from pipelines.embed.sentence import embed_texts

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
MMR_LAMBDA = 0.7  # relevance vs diversity (= 1 - DEFAULT_DIVERSITY)
DEFAULT_DIVERSITY = 0.3
MAX_SEEDS = 10
SEED_QUERY_WEIGHT = 0.5  # share of the query embedding in the seed-blended text query
ARTIST_CAP_CANDIDATES = 20  # at most this many merged candidates per artist
COLLAB_PRIOR = 10.0  # pseudo-count: small genres' percentiles shrink towards the global one
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
    exclude_genres: tuple[str, ...] = ()
    exclude_artists: tuple[str, ...] = ()
    exclude_track_ids: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return (
            self.min_year is None and self.max_year is None and not self.genres and not self.exclude_genres
            and not self.exclude_artists and not self.exclude_track_ids
        )


@dataclass(frozen=True)
class RecommendRequest:
    query: str
    top_k: int = 20
    filters: Filters | None = None
    mode: Mode = "full"
    seed_track_ids: tuple[str, ...] = ()  # ≤ MAX_SEEDS, "more like this"; seeds are never returned
    target: tuple[float, float] | None = None  # (valence, arousal) in [-1, 1]; overrides detected mood
    diversity: float | None = None  # 0..1; MMR λ = 1 - diversity; None = DEFAULT_DIVERSITY
    explain: bool = False  # fill RankedTrack.explanation
    include_unavailable: bool = False  # also DEAD-link tracks (UNKNOWN/SUSPECT are always kept)


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
    explanation: dict[str, float] | None = None  # raw sims + effective weights (explain=True)


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
    audio_query_source: str = "none"  # "seeds" | "target_mood" | "none"


@dataclass(frozen=True)
class QueryUnderstanding:
    embedding: np.ndarray  # (384,) float32
    valence: float
    arousal: float
    confidence: float
    query_type: QueryType
    matched: dict[str, list[str]]


@dataclass(frozen=True)
class Retrieved:
    """Merged candidates of one request's three searches."""

    cand: np.ndarray  # (c,) int64 sorted row ids (after seed removal and the per-artist cap)
    audio_query: np.ndarray | None  # (d,) unit audio query used, or None
    audio_query_source: str  # "seeds" | "target_mood" | "none"
    merged: int  # candidates before the per-artist cap
    # (c,) float32 similarity the text / audio search already computed for its own hits (the same
    # stored codes that decoding would give), NaN for candidates another search found.
    text_sim: np.ndarray | None = None
    audio_sim: np.ndarray | None = None


@dataclass(frozen=True)
class ScoreBreakdown:
    """Scores of c candidates with their parts (every array (c,))."""

    total: np.ndarray
    contrib: dict[str, np.ndarray]  # per-signal contributions (sum = total)
    explanation: dict[str, np.ndarray]  # raw sims and effective normalised weights
    text_vectors: np.ndarray | None = None  # (c, 384) the candidates' text vectors, reused by rerank…
    text_decoded: np.ndarray | None = None  # …(c,) bool: the rows of text_vectors decoded so far (None = all)


def _run_now(fn: Callable[..., Any], *args: Any) -> Future:
    """``fn(*args)`` in this thread, as a completed Future (the pool-less retrieval path)."""
    fut: Future = Future()
    try:
        fut.set_result(fn(*args))
    except Exception as exc:  # noqa: BLE001 - re-raised by .result(), as from a pool
        fut.set_exception(exc)
    return fut


def _aligned(*, cand: np.ndarray, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(c,) float32: ``values[j]`` at the position of ``ids[j]`` in the sorted ``cand``, NaN elsewhere."""
    out = np.full(len(cand), np.nan, np.float32)
    if len(cand) and len(ids):
        pos = np.minimum(np.searchsorted(cand, ids), len(cand) - 1)
        hit = cand[pos] == ids
        out[pos[hit]] = values[hit]
    return out


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
    from pipelines.mood import lexicon
    from pipelines import store

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


def primary_genre_expr(genre: pl.Expr) -> pl.Expr:
    """Polars expression: the first genre token ("Rock|Pop" → "rock"), lower-cased; null if none."""
    return genre.str.to_lowercase().str.extract(r"^\s*([^,|;/]*[^,|;/\s])", 1)


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


def _dense_codes(values: pl.Series) -> np.ndarray:
    """(n,) int64 codes of a String series (equal strings share a code, ≥ 0); -1 for null."""
    return values.cast(pl.String).cast(pl.Categorical).to_physical().cast(pl.Int64).fill_null(-1).to_numpy()


def _primary_genre_codes(genre: pl.Series) -> np.ndarray:
    """(n,) int64 codes of each row's primary genre (-1: none); the regex runs once per distinct string."""
    distinct = genre.cast(pl.String).unique().drop_nulls()
    primary = pl.select(primary_genre_expr(pl.lit(distinct))).to_series()
    return _dense_codes(genre.cast(pl.String).replace_strict(distinct, primary, default=None, return_dtype=pl.String))


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
            from pipelines.mood.query import QueryMoodModel

            query_mood = QueryMoodModel.load(bundle.query_mood_path)
        self.query_mood = query_mood
        if lexicon is None:
            from pipelines.mood.lexicon import MoodLexicon

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
        self._collab = cluster_popularity(tracks=tracks)
        self._popular = _top_quantile_mask(plays, POPULAR_QUANTILE)
        artists = tracks[S.ARTIST].str.strip_chars().str.to_lowercase()
        self._artist_code = _dense_codes(pl.Series(artists).replace("", None))
        self._version_code = dedup.key_codes(dedup.canonical_keys(tracks[S.ARTIST], tracks[S.TITLE]))
        self._live = (tracks[S.URL_STATUS].fill_null("UNKNOWN") != "DEAD").to_numpy()
        self._live_ids = np.flatnonzero(self._live).astype(np.int64)
        # Rows that may seed the audio query (have audio and a mood), for unfiltered requests.
        self._seed_ok_live = bundle.has_audio & bundle.has_mood & self._live
        self._all_ids = np.arange(n, dtype=np.int64)
        ids = tracks[S.TRACK_ID]
        self._id_order = ids.arg_sort().to_numpy().astype(np.int64)
        self._ids_sorted = ids.gather(self._id_order)
        self._duck = duckdb.connect()
        self._duck_lock = threading.Lock()
        # max_workers=0: the three searches run one after another in the request's own thread
        # (no hand-offs; under full load that is cheaper, idle it is slower).
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="retrieval") if max_workers > 0 else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._duck.close()

    def rows_of(self, track_ids: Sequence[str]) -> np.ndarray:
        """(len(track_ids),) int64 row ids of ``track_ids``; -1 where unknown (binary search)."""
        if len(track_ids) == 0:
            return np.zeros(0, dtype=np.int64)
        q = pl.Series(list(track_ids), dtype=pl.String)
        pos = self._ids_sorted.search_sorted(q).to_numpy().astype(np.int64)
        pos = np.minimum(pos, max(len(self._ids_sorted) - 1, 0))
        if len(self._ids_sorted) == 0:
            return np.full(len(q), -1, dtype=np.int64)
        found = (self._ids_sorted.gather(pos) == q).fill_null(False).to_numpy()
        return np.where(found, self._id_order[pos], -1).astype(np.int64)

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
    def allowed_ids(self, filters: Filters | None, *, include_unavailable: bool = False) -> np.ndarray:
        """(m,) int64 sorted row ids satisfying ``filters`` whose link is not DEAD.

        Filters run in DuckDB over the bundle's ``tracks.parquet`` with bound parameters:
        ``min_year``/``max_year`` inclusive (unknown year never passes a year filter), ``genres``
        case-insensitive match against any of a track's genres (``a|b``, ``a, b``),
        ``exclude_genres`` drops a track if any of its genres is listed (no genre: kept),
        ``exclude_artists`` case-insensitive exact artist names, ``exclude_track_ids`` exact ids.
        ``include_unavailable``: DEAD links are allowed too (UNKNOWN/SUSPECT are always allowed).
        """
        if filters is None or filters.empty:
            return self._all_ids if include_unavailable else self._live_ids
        clauses = ["TRUE" if include_unavailable else "coalesce(url_status, '') <> 'DEAD'"]
        params: list[Any] = [str(self.bundle.tracks_path)]
        genre_list = (
            f"list_transform(regexp_split_to_array(lower(coalesce({S.GENRE}, '')), "
            f"'\\s*[,|;/]\\s*'), lambda x: trim(x))"
        )
        if filters.min_year is not None:
            clauses.append(f"{S.YEAR} >= ?")
            params.append(int(filters.min_year))
        if filters.max_year is not None:
            clauses.append(f"{S.YEAR} <= ?")
            params.append(int(filters.max_year))
        if filters.genres:
            clauses.append(f"list_has_any({genre_list}, ?::VARCHAR[])")
            params.append([g.strip().lower() for g in filters.genres])
        if filters.exclude_genres:
            clauses.append(f"NOT list_has_any({genre_list}, ?::VARCHAR[])")
            params.append([g.strip().lower() for g in filters.exclude_genres if g.strip()])
        if filters.exclude_artists:
            clauses.append(f"({S.ARTIST} IS NULL OR NOT list_contains(?::VARCHAR[], lower(trim({S.ARTIST}))))")
            params.append([a.strip().lower() for a in filters.exclude_artists])
        if filters.exclude_track_ids:
            clauses.append(f"NOT list_contains(?::VARCHAR[], {S.TRACK_ID})")
            params.append(list(filters.exclude_track_ids))
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
    def _search(
        self, index, queries: np.ndarray, k: int, allow: np.ndarray, positions: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Row ids (m,) int64 of one query's top ``k`` allowed hits and their FAISS scores (m,)."""
        if index is None or index.ntotal == 0 or len(allow) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        full = len(allow) == len(self._live)  # every row allowed: no selector needed
        if allow is self._live_ids and not full:
            # Unfiltered request: search without an O(n) selector, over-fetching by the DEAD share,
            # and drop DEAD rows; fall back to the selector only if too few live rows came back.
            over = k + int(math.ceil(2 * k * (1 - len(allow) / len(self._live)))) + 16
            scores, ids = indexing.search(index=index, queries=queries, k=over)
            ok = ids[0] >= 0
            ok[ok] = self._live[ids[0][ok]]
            if ok.sum() >= k or (ids[0] < 0).any():
                return ids[0][ok][:k], scores[0][ok][:k]
        scores, ids = indexing.search(index=index, queries=queries, k=k, allow=None if full else allow, positions=positions)
        ok = ids[0] >= 0
        return ids[0][ok], scores[0][ok]

    def audio_query_vector(self, *, valence: float, arousal: float, allow: np.ndarray) -> np.ndarray | None:
        """(d,) unit audio query vector, or None when no track has audio.

        There is no audio in a text query, so the audio query is the confidence-weighted mean of
        the audio vectors of the AUDIO_SEED_K tracks (with audio) nearest the target mood; weights
        are each track's mood_confidence (uniform if all are 0).
        """
        b = self.bundle
        if b.audio_index is None or b.mood_index is None:
            return None
        q = np.array([[valence, arousal]], np.float32)
        ids = np.zeros(0, dtype=np.int64)
        if allow is self._live_ids:
            # Unfiltered request: a wider search without a selector, then keep the eligible rows
            # (exact whenever AUDIO_SEED_K of them are among the nearest 8·AUDIO_SEED_K).
            _, wide = indexing.search(index=b.mood_index, queries=q, k=8 * AUDIO_SEED_K)
            wide = wide[0][wide[0] >= 0]
            ids = wide[self._seed_ok_live[wide]][:AUDIO_SEED_K]
        if len(ids) < AUDIO_SEED_K:
            seeds_allow = np.intersect1d(allow, np.flatnonzero(b.has_audio & b.has_mood))
            if len(seeds_allow) == 0:
                return None
            _, ids = indexing.search(index=b.mood_index, queries=q, k=AUDIO_SEED_K, allow=seeds_allow,
                                     positions=b.mood_pos)
            ids = ids[0][ids[0] >= 0]
        if len(ids) == 0:
            return None
        w = self._mood_conf[ids].astype(np.float64)
        if w.sum() <= 0:
            w = np.ones_like(w)
        vec = (w[:, None] * b.audio_rows(ids)).sum(0) / w.sum()
        norm = np.linalg.norm(vec)
        return (vec / norm).astype(np.float32) if norm > 0 else None

    def seed_audio_vector(self, seed_rows: np.ndarray) -> np.ndarray | None:
        """(d,) unit mean audio vector of the seeds that have audio, or None (no audio index/seed)."""
        b = self.bundle
        if b.audio_index is None or len(seed_rows) == 0:
            return None
        with_audio = seed_rows[b.has_audio[seed_rows]]
        if len(with_audio) == 0:
            return None
        vec = b.audio_rows(with_audio).astype(np.float64).mean(0)
        norm = np.linalg.norm(vec)
        return (vec / norm).astype(np.float32) if norm > 0 else None

    def retrieve(
        self, qu: QueryUnderstanding, allow: np.ndarray, *, seed_rows: np.ndarray | None = None
    ) -> "Retrieved":
        """Merged candidates of the text, mood and audio searches (see :class:`Retrieved`).

        ``seed_rows`` (s,) int64: their mean audio vector is the audio query when they have audio;
        they and every other version of them (same dedup key) are removed from the candidates.
        Then at most ARTIST_CAP_CANDIDATES candidates per artist are kept: those with the best
        (lowest) rank in any of the three searches (np.lexsort, no per-row loop).
        """
        b = self.bundle
        seeds = np.zeros(0, np.int64) if seed_rows is None else np.asarray(seed_rows, np.int64)
        k = RETRIEVAL_K + len(seeds)  # the seeds themselves are likely hits: keep k useful results
        target = np.array([[qu.valence, qu.arousal]], dtype=np.float32)
        submit = self._pool.submit if self._pool is not None else _run_now
        text_f = submit(self._search, b.text_index, qu.embedding[None, :], k, allow, b.text_pos)
        mood_f = submit(self._search, b.mood_index, target, k, allow, b.mood_pos)
        seed_audio = self.seed_audio_vector(seeds)

        def audio_job() -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray | None, str]:
            if seed_audio is not None:
                qa, source = seed_audio, "seeds"
            else:
                qa = self.audio_query_vector(valence=qu.valence, arousal=qu.arousal, allow=allow)
                source = "none" if qa is None else "target_mood"
            if qa is None:
                return (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)), None, source
            return self._search(b.audio_index, qa[None, :], k, allow, b.audio_pos), qa, source

        (audio_ids, audio_scores), qa, source = submit(audio_job).result()
        text_ids, text_scores = text_f.result()
        lists = [text_ids, mood_f.result()[0], audio_ids]
        ids = np.concatenate(lists).astype(np.int64)
        ranks = np.concatenate([np.arange(len(x), dtype=np.int64) for x in lists])
        order = np.lexsort((ranks, ids))  # by id, then rank: the first row of an id is its best rank
        ids, ranks = ids[order], ranks[order]
        first = np.r_[True, ids[1:] != ids[:-1]] if len(ids) else np.zeros(0, bool)
        cand, best = ids[first], ranks[first]
        if len(seeds):
            seed_codes = self._version_code[seeds]
            drop = np.isin(cand, seeds) | np.isin(self._version_code[cand], seed_codes[seed_codes >= 0])
            cand, best = cand[~drop], best[~drop]
        merged = len(cand)
        keep = self._artist_cap(cand=cand, best_rank=best, cap=ARTIST_CAP_CANDIDATES)
        cand = cand[keep]
        return Retrieved(
            cand=cand, audio_query=qa, audio_query_source=source, merged=merged,
            text_sim=_aligned(cand=cand, ids=text_ids, values=text_scores),
            audio_sim=_aligned(cand=cand, ids=audio_ids, values=audio_scores),
        )

    def _artist_cap(self, *, cand: np.ndarray, best_rank: np.ndarray, cap: int) -> np.ndarray:
        """(c,) bool: keep at most ``cap`` of each artist's candidates (lowest ``best_rank``); no artist = kept."""
        if len(cand) == 0:
            return np.zeros(0, dtype=bool)
        codes = self._artist_code[cand]
        order = np.lexsort((best_rank, codes))  # by artist, then best rank
        c = codes[order]
        pos = np.arange(len(c))
        starts = np.r_[True, c[1:] != c[:-1]]
        within = pos - np.maximum.accumulate(np.where(starts, pos, 0))  # position inside the artist group
        keep = np.empty(len(cand), dtype=bool)
        keep[order] = (within < cap) | (c < 0)
        return keep

    # ---------------------------------------------------------------- scoring
    def score(
        self, *, cand: np.ndarray, qu: QueryUnderstanding, audio_query: np.ndarray | None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Scores (c,) and per-signal contributions (c,) for candidate row ids ``cand`` (c,)."""
        sb = self.score_breakdown(cand=cand, qu=qu, audio_query=audio_query)
        return sb.total, sb.contrib

    def score_breakdown(
        self, *, cand: np.ndarray, qu: QueryUnderstanding, audio_query: np.ndarray | None,
        known_text: np.ndarray | None = None, known_audio: np.ndarray | None = None,
    ) -> "ScoreBreakdown":
        """Scores with their parts for candidate row ids ``cand`` (c,) (every array (c,)).

        ``known_text`` / ``known_audio`` (c,): similarities the searches already computed
        (:class:`Retrieved`), NaN elsewhere; only the other candidates' vectors are decoded.

        Every signal is in [0, 1]. Per track the positive weights are renormalised over the
        signals it has: audio only when the track and the query have an audio vector; mood
        weight multiplied by the track's mood_confidence (0 when its mood is unknown) and by the
        query mood's confidence, so an uncertain mood counts less. The popularity penalty is
        subtracted for the top 1 % most played. Collaborative = popularity within the cluster.
        """
        w = WEIGHTS[qu.query_type]
        b = self.bundle
        c = len(cand)
        text_sim = np.full(c, np.nan, np.float32) if known_text is None else known_text.astype(np.float32)
        need = np.isnan(text_sim)
        text_vecs = np.zeros((c, len(qu.embedding)), np.float32)
        if need.any():
            text_vecs[need] = b.text_rows(cand[need])
            text_sim[need] = text_vecs[need] @ qu.embedding
        text_sim = np.clip(text_sim, 0.0, 1.0)
        if audio_query is not None:
            has_audio = b.has_audio[cand].astype(np.float32)
            audio_sim = np.full(c, np.nan, np.float32) if known_audio is None else known_audio.astype(np.float32)
            need_a = np.isnan(audio_sim) & (has_audio > 0)
            audio_sim[need_a] = b.audio_rows(cand[need_a]) @ audio_query
            audio_sim = np.clip(np.nan_to_num(audio_sim, nan=0.0), 0.0, 1.0)
        else:
            audio_sim = np.zeros(c, np.float32)
            has_audio = np.zeros(c, np.float32)
        va = self._va[cand]
        dist = np.linalg.norm(va - np.array([qu.valence, qu.arousal], np.float32), axis=1)
        mood_sim = np.nan_to_num(1.0 - dist / MOOD_MAX_DIST, nan=0.0)
        # A mood counts in proportion to how sure we are of both ends: the track's mood and the
        # query's detected mood (a neutral or unfamiliar query has low confidence).
        track_conf = self._mood_conf[cand] * b.has_mood[cand]
        mood_w = w.mood * track_conf * qu.confidence
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
        total = np.asarray(sum(contrib.values()), dtype=np.float32)
        parts = {
            "text_sim": text_sim, "audio_sim": audio_sim, "mood_sim": mood_sim, "collab": collab,
            "w_text": w.text / denom, "w_audio": audio_w / denom, "w_mood": mood_w / denom,
            "w_collab": w.collab / denom, "mood_confidence": track_conf,
            "query_mood_confidence": np.full(c, qu.confidence, np.float32),
        }
        return ScoreBreakdown(total=total, contrib=contrib, explanation=parts, text_vectors=text_vecs, text_decoded=need)

    # ---------------------------------------------------------------- reranking
    def rerank(
        self, *, cand: np.ndarray, scores: np.ndarray, k: int, mmr_lambda: float = MMR_LAMBDA,
        text_vectors: np.ndarray | None = None, text_decoded: np.ndarray | None = None,
    ) -> np.ndarray:
        """Positions into ``cand`` (c,) of the k results: MMR with artist spacing and version dedup.

        MMR: ``λ · score − (1 − λ) · max text cosine to the picks so far``. The pairwise
        text-similarity matrix of the pool is one matrix product; the greedy loop runs k times
        over numpy vectors. Artist spacing: a candidate whose artist is among the previous
        ARTIST_WINDOW-1 picks is skipped unless nothing else is left. Version dedup: once a track
        is picked, every candidate with its (artist, canonical title) key is dropped.
        """
        if len(cand) == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64)
        lam = float(mmr_lambda)
        pool_n = min(len(cand), max(MMR_POOL_MIN, 5 * k))
        pool = np.argsort(-scores, kind="stable")[:pool_n]
        # ``text_vectors`` (c, 384), row-aligned with ``cand``, saves decoding them again; rows
        # not in ``text_decoded`` (hits whose similarity came from the text search) are decoded here.
        if text_vectors is None:
            vecs = self.bundle.text_rows(cand[pool])
        else:
            vecs = text_vectors[pool]
            missing = np.zeros(pool_n, bool) if text_decoded is None else ~text_decoded[pool]
            if missing.any():
                vecs[missing] = self.bundle.text_rows(cand[pool[missing]])
        sim = vecs @ vecs.T  # (p, p)
        rel = scores[pool].astype(np.float64)
        artists = self._artist_code[cand[pool]]
        versions = self._version_code[cand[pool]]
        max_sim = np.zeros(pool_n)
        available = np.ones(pool_n, dtype=bool)
        picked: list[int] = []
        for _ in range(min(k, pool_n)):
            mmr = np.where(available, lam * rel - (1 - lam) * max_sim, -np.inf)
            recent = artists[picked[-(ARTIST_WINDOW - 1):]] if picked and ARTIST_WINDOW > 1 else artists[:0]
            recent = recent[recent >= 0]
            if len(recent):
                spaced = np.where(np.isin(artists, recent), -np.inf, mmr)
                if np.isfinite(spaced).any():
                    mmr = spaced
            best = int(np.argmax(mmr))
            if not np.isfinite(mmr[best]):
                break
            picked.append(best)
            available[best] = False
            if versions[best] >= 0:
                available &= versions != versions[best]
            max_sim = sim[best] if len(picked) == 1 else np.maximum(max_sim, sim[best])
        return pool[np.array(picked, dtype=np.int64)]

    # ---------------------------------------------------------------- assembly
    def _track(
        self, row: int, score: float, signals: dict[str, float], *, explanation: dict[str, float] | None = None
    ) -> RankedTrack:
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
            explanation=explanation,
        )

    def track_by_id(self, track_id: str) -> RankedTrack | None:
        """The bundle row of ``track_id`` (score 0), or None (binary search, no table scan)."""
        row = int(self.rows_of([track_id])[0])
        return None if row < 0 else self._track(row, 0.0, {})

    def _check(self, req: RecommendRequest) -> None:
        if req.diversity is not None and not 0.0 <= float(req.diversity) <= 1.0:
            raise ValueError(f"diversity must be in [0, 1], got {req.diversity}")
        if len(req.seed_track_ids) > MAX_SEEDS:
            raise ValueError(f"at most {MAX_SEEDS} seed_track_ids, got {len(req.seed_track_ids)}")
        if req.target is not None and (len(req.target) != 2 or not all(-1.0 <= float(x) <= 1.0 for x in req.target)):
            raise ValueError(f"target must be (valence, arousal) in [-1, 1], got {req.target}")

    def seed_rows(self, seed_track_ids: Sequence[str]) -> np.ndarray:
        """(s,) int64 distinct row ids of the seeds (request order); UnknownTrackError if one is unknown."""
        ids = list(dict.fromkeys(seed_track_ids))
        rows = self.rows_of(ids)
        if (rows < 0).any():
            raise UnknownTrackError(ids[int(np.argmax(rows < 0))], field="seed_track_ids")
        return rows

    def steer(
        self, qu: QueryUnderstanding, *, seed_rows: np.ndarray, target: tuple[float, float] | None
    ) -> QueryUnderstanding:
        """The query after seeds and an explicit mood target (see the module docstring).

        Text: ``normalise(SEED_QUERY_WEIGHT · q + (1 − SEED_QUERY_WEIGHT) · normalise(mean seed
        text))``. Mood: ``target`` → that point, confidence 1, query type "mood" unless an artist
        matched; else with seeds that have a mood: ``(c_q · m_q + c_s · m_s) / (c_q + c_s)`` where
        m_s is the seeds' confidence-weighted mean mood, c_s their mean confidence and c_q the
        query's; the blended confidence is ``(c_q² + c_s²) / (c_q + c_s)``.
        """
        emb, v, a, c = qu.embedding, qu.valence, qu.arousal, qu.confidence
        qtype, matched = qu.query_type, dict(qu.matched)
        if len(seed_rows):
            m = self.bundle.text_rows(seed_rows).astype(np.float64).mean(0)
            if np.linalg.norm(m) > 0:
                blend = SEED_QUERY_WEIGHT * emb + (1 - SEED_QUERY_WEIGHT) * m / np.linalg.norm(m)
                if np.linalg.norm(blend) > 0:
                    emb = (blend / np.linalg.norm(blend)).astype(np.float32)
            matched["seeds"] = [str(len(seed_rows))]
        if target is not None:
            v, a, c = float(target[0]), float(target[1]), 1.0
            if not matched.get("artist"):
                qtype = "mood"
            matched["target"] = [f"valence {v:+.2f}, arousal {a:+.2f}"]
        elif len(seed_rows):
            with_mood = seed_rows[self.bundle.has_mood[seed_rows]]
            conf = self._mood_conf[with_mood].astype(np.float64)
            if len(with_mood) and conf.sum() > 0:
                m_s = (conf[:, None] * self._va[with_mood]).sum(0) / conf.sum()
                c_s = float(conf.mean())
                v = float((c * v + c_s * m_s[0]) / (c + c_s))
                a = float((c * a + c_s * m_s[1]) / (c + c_s))
                c = float((c * c + c_s * c_s) / (c + c_s))
        return QueryUnderstanding(
            embedding=emb, valence=float(np.clip(v, -1, 1)), arousal=float(np.clip(a, -1, 1)),
            confidence=float(np.clip(c, 0, 1)), query_type=qtype, matched=matched,
        )

    def recommend(self, req: RecommendRequest) -> RecommendResult:
        """Run the pipeline for one request (see module docstring).

        Raises UnknownTrackError for an unknown seed id, ValueError for an out-of-range
        diversity/target or more than MAX_SEEDS seeds.
        """
        t0 = time.perf_counter()
        stages = dict.fromkeys(STAGES, 0.0)
        self._check(req)
        seeds = self.seed_rows(req.seed_track_ids)
        if req.mode == "baseline":
            return self._baseline(req, t0, stages, seeds)

        t = time.perf_counter()
        qu = self.steer(self.understand(req.query), seed_rows=seeds, target=req.target)
        stages["query_understanding"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        allow = self.allowed_ids(req.filters, include_unavailable=req.include_unavailable)
        post_ms = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        got = self.retrieve(qu, allow, seed_rows=seeds)
        cand = got.cand
        stages["retrieval"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        sb = self.score_breakdown(cand=cand, qu=qu, audio_query=got.audio_query,
                                  known_text=got.text_sim, known_audio=got.audio_sim)
        stages["scoring"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        diversity = DEFAULT_DIVERSITY if req.diversity is None else float(req.diversity)
        order = self.rerank(cand=cand, scores=sb.total, k=req.top_k, mmr_lambda=1.0 - diversity,
                            text_vectors=sb.text_vectors, text_decoded=sb.text_decoded)
        stages["reranking"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        results = [
            self._track(
                int(cand[p]), float(sb.total[p]), {name: float(arr[p]) for name, arr in sb.contrib.items()},
                explanation={name: float(arr[p]) for name, arr in sb.explanation.items()} if req.explain else None,
            )
            for p in order
            # DEAD links are never returned unless asked for (already excluded by allow)
            if req.include_unavailable or self._live[cand[p]]
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
            audio_query_source=got.audio_query_source,
        )

    def similar(self, *, track_id: str, top_k: int = 10, include_unavailable: bool = False) -> RecommendResult:
        """Tracks like ``track_id``: its own text doc as the query and itself as the only seed.

        Raises UnknownTrackError(field="track_id") when the id is not in the served version.
        """
        rows = self.rows_of([track_id])
        if rows[0] < 0:
            raise UnknownTrackError(track_id, field="track_id")
        r = self.bundle.tracks.row(int(rows[0]), named=True)
        query = next((x for x in (r[S.TEXT_DOC], r[S.TITLE], r[S.ARTIST]) if x and x.strip()), track_id)
        return self.recommend(RecommendRequest(
            query=query, top_k=top_k, seed_track_ids=(track_id,), include_unavailable=include_unavailable,
        ))

    def _baseline(
        self, req: RecommendRequest, t0: float, stages: dict[str, float], seeds: np.ndarray
    ) -> RecommendResult:
        """Exact inner product of the query embedding over the allowed rows (seeds dropped)."""
        t = time.perf_counter()
        q = np.asarray(self.encoder([req.query]), dtype=np.float32).reshape(1, -1)
        stages["query_understanding"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        allow = self.allowed_ids(req.filters, include_unavailable=req.include_unavailable)
        post_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        # Exact scan over the bundle's stored text vectors, without an (m, 384) copy of the allowed rows.
        scores, ids = self.bundle.text_exact_search(
            query=q, k=req.top_k + len(seeds), allow=None if len(allow) == len(self.bundle) else allow
        )
        keep = (ids[0] >= 0) & ~np.isin(ids[0], seeds)
        ids, scores = ids[0][keep][: req.top_k], scores[0][keep][: req.top_k]
        stages["retrieval"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        results = [
            self._track(int(i), float(s), {"text": float(s)},
                        explanation={"text_sim": float(s), "w_text": 1.0} if req.explain else None)
            for i, s in zip(ids, scores)
        ]
        stages["postprocessing"] = post_ms + (time.perf_counter() - t) * 1000
        return RecommendResult(
            query=req.query, mood_detected=None, query_type="default", results=results,
            metadata=ResultMetadata(
                total_candidates=int(len(allow)), processing_time_ms=(time.perf_counter() - t0) * 1000,
                stages=stages, store_version=self.bundle.version,
            ),
        )
