"""The ranking's request and result types and the request limits (the HTTP API serves these types).

Requests are msgspec structs whose constraints are checked when a request is decoded (the HTTP
edge); :func:`pipelines.rank.recommender.Recommender.recommend` checks the domain rules again for
Python callers. Annotations are evaluated eagerly: msgspec and Litestar introspect them.
"""

from typing import Annotated, Literal

import msgspec

QueryType = Literal["mood", "genre", "artist", "attribute", "default"]
# "full": the learned ranker when one is loaded, else the hand weights; "hand": the hand weights;
# "no_text" / "no_audio" / "no_mood": the hand weights without that signal (ablations);
# "baseline": the query embedding's exact inner product over the text vectors, nothing else.
Mode = Literal["full", "baseline", "hand", "no_text", "no_audio", "no_mood"]
MODES: tuple[str, ...] = ("full", "baseline", "hand", "no_text", "no_audio", "no_mood")
STAGES: tuple[str, ...] = ("query_understanding", "retrieval", "scoring", "reranking", "postprocessing")

DEFAULT_TOP_K = 20
MAX_TOP_K = 100
MAX_QUERY_CHARS = 512
MAX_SEEDS = 10
MAX_EXCLUDED_TRACKS = 1000
DEFAULT_DIVERSITY = 0.3  # when a request omits `diversity`
MMR_LAMBDA = 1.0 - DEFAULT_DIVERSITY  # relevance vs diversity in MMR

Year = Annotated[int, msgspec.Meta(ge=0, le=3000)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
TrackId = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]
Unit = Annotated[float, msgspec.Meta(ge=-1.0, le=1.0)]


class Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of request structs: keyword-only, unknown fields rejected."""


class Filters(Base):
    min_year: Year | None = None
    max_year: Year | None = None
    genres: Annotated[list[Name], msgspec.Meta(max_length=50)] = []
    exclude_genres: Annotated[list[Name], msgspec.Meta(max_length=50)] = []
    exclude_artists: Annotated[list[Name], msgspec.Meta(max_length=200)] = []
    exclude_track_ids: Annotated[list[TrackId], msgspec.Meta(max_length=MAX_EXCLUDED_TRACKS)] = []

    @property
    def empty(self) -> bool:
        return (
            self.min_year is None and self.max_year is None and not self.genres and not self.exclude_genres
            and not self.exclude_artists and not self.exclude_track_ids
        )


class TargetMood(Base):
    """A target point in mood space; overrides the mood detected from the query."""

    valence: Unit
    arousal: Unit


class RecommendRequest(Base):
    query: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_QUERY_CHARS, pattern=r"\S")]
    top_k: Annotated[int, msgspec.Meta(ge=1, le=MAX_TOP_K)] = DEFAULT_TOP_K
    filters: Filters | None = None
    mode: Mode = "full"
    # "more like this" (at most MAX_SEEDS); seeds are never returned
    seed_track_ids: Annotated[list[TrackId], msgspec.Meta(max_length=MAX_SEEDS)] = []
    target: TargetMood | None = None  # overrides the detected mood
    diversity: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None  # MMR λ = 1 - diversity
    explain: bool = False  # fill Track.explanation
    include_unavailable: bool = False  # also DEAD-link tracks (UNKNOWN/SUSPECT are always kept)


class Out(msgspec.Struct, kw_only=True):
    """Base of result structs."""


class MoodDetected(Out):
    valence: float
    arousal: float
    confidence: float


class TrackMood(Out):
    valence: float | None
    arousal: float | None
    source: str | None
    confidence: float | None


class Track(Out):
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
    # the hand scoring's per-signal contributions (sum = score unless a learned ranker ordered
    # the results: then score is the ranker's relevance, mapped to [0, 1] within the request)
    signals: dict[str, float] = {}
    explanation: dict[str, float] | None = None  # raw sims + effective weights (explain=True)


class Stages(Out):
    query_understanding: float
    retrieval: float
    scoring: float
    reranking: float
    postprocessing: float


class Metadata(Out):
    total_candidates: int
    processing_time_ms: float
    stages: Stages
    store_version: str


class RecommendResponse(Out):
    query: str
    mood_detected: MoodDetected | None
    query_type: str
    results: list[Track]
    metadata: Metadata
    audio_query_source: str = "none"  # "seeds" | "target_mood" | "none"
