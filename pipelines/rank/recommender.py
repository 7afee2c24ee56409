"""Online ranking shared by the HTTP service and the evaluation harness (no web framework here).

Five timed stages per request (``RecommendResponse.metadata.stages``, milliseconds):

1. query_understanding — embed the query once, its mood and type (:mod:`pipelines.rank.understand`),
   then steered by the seeds and an explicit mood target.
2. retrieval — text, mood and audio searches restricted to the allow-list, merged into candidates
   that carry their similarities and vectors (:mod:`pipelines.rank.retrieve`).
3. scoring — confidence- and spread-weighted signals per query type, popularity
   (:mod:`pipelines.rank.score`); in ``mode="full"`` a learned ranker, when given, orders the
   candidates (its scores mapped to [0, 1] within the request) and the hand scores explain them.
4. reranking — MMR with artist spacing and version dedup (:mod:`pipelines.rank.rerank`) over the
   relevance mapped to [0, 1] within the request (:func:`unit_relevance`).
5. postprocessing — the allow-list (:mod:`pipelines.rank.allow`; built before retrieval, which
   it restricts, but its time is reported here) and result assembly.

Query vectors ("more like this", ``seed_track_ids``): the text query blends the query embedding
with the seeds' mean text vector; the audio query is the seeds' mean audio vector (seeds with
audio; ``audio_query_source="seeds"``), else the vectors of the tracks nearest the target mood
(``"target_mood"``), else none. The mood target is ``req.target`` (confidence 1) when given, else
the confidence-weighted blend of the detected query mood and the seeds' mean mood.

``mode="baseline"``: the query embedding's exact inner product over the text vectors of the
allowed rows (same hard constraints: filters and no DEAD links), top k, nothing else.
``mode="hand"``: the hand weights even when a ranker is loaded; ``"no_text"`` / ``"no_audio"`` /
``"no_mood"``: the hand weights without that signal (ablations; the ranker is not used).
"""

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import polars as pl

from pipelines import schema as S
from pipelines.embed.sentence import embed_texts
from pipelines.errors import InvalidInputError, UnknownTrackError
from pipelines.index.bundle import Bundle
from pipelines.rank import dedup
from pipelines.rank.allow import AllowList
from pipelines.rank.rerank import mmr
from pipelines.rank.retrieve import Candidates, Retriever
from pipelines.rank.score import ScoreBreakdown, TrackPriors, dense_codes, score
from pipelines.rank.types import (
    DEFAULT_DIVERSITY,
    MAX_SEEDS,
    MMR_LAMBDA,
    MODES,
    STAGES,
    Filters,
    Metadata,
    MoodDetected,
    QueryType,
    RecommendRequest,
    RecommendResponse,
    Stages,
    TargetMood,
    Track,
    TrackMood,
)
from pipelines.rank.understand import (
    MoodPredictor,
    QueryLexicons,
    QueryReader,
    QueryUnderstanding,
    load_moodtheme_terms,
    steer,
)


def unit_relevance(scores: np.ndarray) -> np.ndarray:
    """(c,) float32 ``scores`` mapped to [0, 1] within the request (min → 0, max → 1; all equal → 1)."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    finite = np.isfinite(s)
    if not finite.any():
        return np.zeros(len(s), np.float32)
    lo, hi = float(s[finite].min()), float(s[finite].max())
    out = np.where(finite, (s - lo) / (hi - lo) if hi > lo else 1.0, 0.0)
    return out.astype(np.float32)


def check_request(req: RecommendRequest) -> None:
    """The domain rules of a request; InvalidInputError naming the field breaks one."""
    if req.mode not in MODES:
        raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, got {req.mode!r}", field="mode")
    if req.diversity is not None and not 0.0 <= float(req.diversity) <= 1.0:
        raise InvalidInputError(f"diversity must be in [0, 1], got {req.diversity}", field="diversity")
    if len(req.seed_track_ids) > MAX_SEEDS:
        raise InvalidInputError(
            f"at most {MAX_SEEDS} seed_track_ids, got {len(req.seed_track_ids)}", field="seed_track_ids"
        )
    if req.target is not None:
        for name in ("valence", "arousal"):
            value = float(getattr(req.target, name))
            if not -1.0 <= value <= 1.0:
                raise InvalidInputError(f"{name} must be in [-1, 1], got {value}", field=f"target.{name}")
    f = req.filters
    if f is not None and f.min_year is not None and f.max_year is not None and f.min_year > f.max_year:
        raise InvalidInputError("min_year > max_year", field="filters.min_year")


class Ranker(Protocol):
    """A learned ranker over one request's candidates (``pipelines.rank.learned.LearnedRanker``)."""

    def predict(
        self, cands: Candidates, qu: QueryUnderstanding, priors: TrackPriors, breakdown: ScoreBreakdown
    ) -> np.ndarray:
        """(c,) float scores of the candidates, higher = better."""
        ...


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
        ranker: Ranker | None = None,
    ) -> None:
        """``ranker``: orders the candidates in ``mode="full"`` (None: the hand scores do)."""
        self.bundle = bundle
        self.encoder = encoder
        self.ranker = ranker
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
        self.reader = QueryReader(encoder=encoder, query_mood=query_mood, lexicon=lexicon, lexicons=self.lexicons)
        self.priors = TrackPriors.from_tracks(tracks, has_audio=bundle.has_audio, has_mood=bundle.has_mood)
        artists = tracks[S.ARTIST].str.strip_chars().str.to_lowercase()
        self._artist_code = dense_codes(pl.Series(artists).replace("", None))
        self._version_code = dedup.key_codes(dedup.canonical_keys(tracks[S.ARTIST], tracks[S.TITLE]))
        self._published_live = (tracks[S.URL_STATUS] != S.DEAD).fill_null(True).to_numpy()
        self._live = self._published_live
        self._status_of: dict[str, str] = {}  # link statuses served over the bundle's (apply_availability)
        self.availability_version: str = ""
        self.allow = AllowList(tracks_path=bundle.tracks_path, live=self._live)
        self.retriever = Retriever(
            bundle=bundle, live=self._live, live_ids=self.allow.live_ids,
            seed_weight=self.priors.mood_conf * self.priors.audio_conf,
            artist_code=self._artist_code, version_code=self._version_code, max_workers=max_workers,
        )
        ids = tracks[S.TRACK_ID]
        self._id_order = ids.arg_sort().to_numpy().astype(np.int64)
        self._ids_sorted = ids.gather(self._id_order)

    def close(self) -> None:
        self.retriever.close()
        self.allow.close()

    def apply_availability(self, statuses: Mapping[str, str], *, version: str) -> int:
        """Serve ``statuses`` (track id → link status) over the bundle's own from now on: a listed
        DEAD track is no longer returned, a listed live one is returned again (even if the bundle has
        it DEAD). Each call replaces the previous one; ids the bundle lacks are ignored. Returns the
        rows listed. ``version`` names the statuses (part of the response cache key)."""
        ids = list(statuses)
        rows = self.rows_of(ids)
        known = rows >= 0
        live = self._published_live.copy()
        live[rows[known]] = np.array([statuses[t] != S.DEAD for t in ids], dtype=bool)[known]
        self._status_of = {t: statuses[t] for t, ok in zip(ids, known) if ok}
        self.allow.set_live(live)
        self.retriever.set_live(live=live, live_ids=self.allow.live_ids)
        self._live = live
        self.availability_version = version
        return int(known.sum())

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

    # ---------------------------------------------------------------- the stages
    def understand(self, query: str) -> QueryUnderstanding:
        """Embed once, predict mood, detect the query type."""
        return self.reader.understand(query)

    def detect_query_type(self, query: str) -> tuple[QueryType, dict[str, list[str]]]:
        return self.reader.detect_query_type(query)

    def steer(
        self, qu: QueryUnderstanding, *, seed_rows: np.ndarray, target: TargetMood | None
    ) -> QueryUnderstanding:
        """The query after seeds and an explicit mood target (:func:`pipelines.rank.understand.steer`)."""
        with_mood = seed_rows[self.bundle.has_mood[seed_rows]]
        return steer(
            qu, n_seeds=len(seed_rows), target=target,
            seed_text=self.bundle.text.rows(seed_rows) if len(seed_rows) else np.zeros((0, len(qu.embedding))),
            seed_va=self.priors.va[with_mood], seed_conf=self.priors.mood_conf[with_mood],
        )

    def allowed_ids(self, filters: Filters | None, *, include_unavailable: bool = False) -> np.ndarray:
        """(m,) int64 sorted row ids satisfying ``filters`` (DEAD links only if ``include_unavailable``)."""
        return self.allow.allowed_ids(filters, include_unavailable=include_unavailable)

    def retrieve(self, qu: QueryUnderstanding, allow: np.ndarray, *, seed_rows: np.ndarray | None = None) -> Candidates:
        return self.retriever.retrieve(qu, allow, seed_rows=seed_rows)

    def score_breakdown(self, cands: Candidates, qu: QueryUnderstanding, *, mode: str = "full") -> ScoreBreakdown:
        return score(cands, qu, self.priors, mode=mode)

    def relevance(self, cands: Candidates, qu: QueryUnderstanding, sb: ScoreBreakdown, *, mode: str) -> np.ndarray:
        """(c,) relevance that orders the candidates: the ranker's scores mapped to [0, 1] in
        ``mode="full"`` when a ranker is loaded, else the hand totals."""
        if mode != "full" or self.ranker is None or len(cands) == 0:
            return sb.total
        return unit_relevance(self.ranker.predict(cands, qu, self.priors, sb))

    def rerank(
        self, *, cand: np.ndarray, scores: np.ndarray, k: int, mmr_lambda: float = MMR_LAMBDA,
        vectors: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> np.ndarray:
        """Positions into ``cand`` (c,) row ids of the k results (:func:`pipelines.rank.rerank.mmr`).

        ``vectors(positions)``: the text vectors of those candidates (default: decoded from the bundle).
        """
        audio_index, extracted = self.bundle.audio, self.priors.audio_extracted[cand]
        return mmr(
            scores=scores, k=k, mmr_lambda=mmr_lambda,
            vectors=vectors or (lambda pos: self.bundle.text.rows(cand[pos])),
            artists=self._artist_code[cand], versions=self._version_code[cand],
            # recordings only: an imputed audio vector is an average of donors, not a sound
            audio=None if audio_index is None else (lambda pos: audio_index.rows(cand[pos]) * extracted[pos, None]),
            moods=np.where(self.bundle.has_mood[cand, None], self.priors.va[cand], np.nan),
        )

    # ---------------------------------------------------------------- assembly
    def _track(
        self, row: int, score: float, signals: dict[str, float], *, explanation: dict[str, float] | None = None
    ) -> Track:
        r = self.bundle.tracks.row(int(row), named=True)
        return Track(
            track_id=r[S.TRACK_ID], title=r[S.TITLE], artist=r[S.ARTIST], year=r[S.YEAR],
            genre=r[S.GENRE], tags=list(r[S.TAGS] or []), permalink_url=r[S.PERMALINK_URL],
            url_status=self._status_of.get(r[S.TRACK_ID], r[S.URL_STATUS]), score=float(score),
            mood=TrackMood(
                valence=None if r[S.VALENCE] is None else float(r[S.VALENCE]),
                arousal=None if r[S.AROUSAL] is None else float(r[S.AROUSAL]),
                source=r[S.MOOD_SOURCE],
                confidence=None if r[S.MOOD_CONFIDENCE] is None else float(r[S.MOOD_CONFIDENCE]),
            ),
            signals=signals,
            explanation=explanation,
        )

    def track_by_id(self, track_id: str) -> Track:
        """The bundle row of ``track_id`` (score 0); UnknownTrackError(field="track_id") if absent."""
        row = int(self.rows_of([track_id])[0])
        if row < 0:
            raise UnknownTrackError(track_id, field="track_id")
        return self._track(row, 0.0, {})

    def seed_rows(self, seed_track_ids: Sequence[str]) -> np.ndarray:
        """(s,) int64 distinct row ids of the seeds (request order); UnknownTrackError if one is unknown."""
        ids = list(dict.fromkeys(seed_track_ids))
        rows = self.rows_of(ids)
        if (rows < 0).any():
            raise UnknownTrackError(ids[int(np.argmax(rows < 0))], field="seed_track_ids")
        return rows

    def recommend(self, req: RecommendRequest) -> RecommendResponse:
        """Run the pipeline for one request (see module docstring).

        Raises InvalidInputError (:func:`check_request`) and UnknownTrackError for an unknown seed.
        """
        t0 = time.perf_counter()
        stages = dict.fromkeys(STAGES, 0.0)
        check_request(req)
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
        cands = self.retrieve(qu, allow, seed_rows=seeds)
        cand = cands.rows
        stages["retrieval"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        sb = self.score_breakdown(cands, qu, mode=req.mode)
        relevance = self.relevance(cands, qu, sb, mode=req.mode)
        stages["scoring"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        diversity = DEFAULT_DIVERSITY if req.diversity is None else float(req.diversity)
        # MMR weighs relevance against text similarity: relevance on one [0, 1] scale per request
        order = self.rerank(cand=cand, scores=unit_relevance(relevance), k=req.top_k,
                            mmr_lambda=1.0 - diversity, vectors=cands.text_vectors)
        stages["reranking"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        results = [
            self._track(
                int(cand[p]), float(relevance[p]), {name: float(arr[p]) for name, arr in sb.contrib.items()},
                explanation={name: float(arr[p]) for name, arr in sb.explanation.items()} if req.explain else None,
            )
            for p in order
            # DEAD links are never returned unless asked for (already excluded by allow)
            if req.include_unavailable or self._live[cand[p]]
        ]
        stages["postprocessing"] = post_ms + (time.perf_counter() - t) * 1000
        return RecommendResponse(
            query=req.query,
            mood_detected=MoodDetected(valence=qu.valence, arousal=qu.arousal, confidence=qu.confidence),
            query_type=qu.query_type,
            results=results,
            metadata=Metadata(
                total_candidates=int(len(cand)),
                processing_time_ms=(time.perf_counter() - t0) * 1000,
                stages=Stages(**stages),
                store_version=self.bundle.version,
            ),
            audio_query_source=cands.audio_query_source,
        )

    def similar(self, *, track_id: str, top_k: int = 10, include_unavailable: bool = False) -> RecommendResponse:
        """Tracks like ``track_id``: its own text doc as the query and itself as the only seed.

        Raises UnknownTrackError(field="track_id") when the id is not in the served version.
        """
        rows = self.rows_of([track_id])
        if rows[0] < 0:
            raise UnknownTrackError(track_id, field="track_id")
        r = self.bundle.tracks.row(int(rows[0]), named=True)
        query = next((x for x in (r[S.TEXT_DOC], r[S.TITLE], r[S.ARTIST]) if x and x.strip()), track_id)
        return self.recommend(RecommendRequest(
            query=query, top_k=top_k, seed_track_ids=[track_id], include_unavailable=include_unavailable,
        ))

    def _baseline(
        self, req: RecommendRequest, t0: float, stages: dict[str, float], seeds: np.ndarray
    ) -> RecommendResponse:
        """Exact inner product of the query embedding over the allowed rows (seeds dropped)."""
        t = time.perf_counter()
        q = np.asarray(self.encoder([req.query]), dtype=np.float32).reshape(1, -1)
        stages["query_understanding"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        allow = self.allowed_ids(req.filters, include_unavailable=req.include_unavailable)
        post_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        # Exact scan over the stored text vectors, without an (m, 384) copy of the allowed rows.
        ids, scores = self.bundle.text.exact(
            q, req.top_k + len(seeds), None if len(allow) == len(self.bundle) else allow
        )
        keep = ~np.isin(ids, seeds)
        ids, scores = ids[keep][: req.top_k], scores[keep][: req.top_k]
        stages["retrieval"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        results = [
            self._track(int(i), float(s), {"text": float(s)},
                        explanation={"text_sim": float(s), "w_text": 1.0} if req.explain else None)
            for i, s in zip(ids, scores)
        ]
        stages["postprocessing"] = post_ms + (time.perf_counter() - t) * 1000
        return RecommendResponse(
            query=req.query, mood_detected=None, query_type="default", results=results,
            metadata=Metadata(
                total_candidates=int(len(allow)), processing_time_ms=(time.perf_counter() - t0) * 1000,
                stages=Stages(**stages), store_version=self.bundle.version,
            ),
        )
