"""msgspec request/response schemas of the HTTP API (annotations are evaluated eagerly here:
Litestar and msgspec introspect these at runtime)."""

from typing import Annotated, Literal

import msgspec

Year = Annotated[int, msgspec.Meta(ge=0, le=3000)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
TrackId = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]
Unit = Annotated[float, msgspec.Meta(ge=-1.0, le=1.0)]

MAX_SEEDS = 10
MAX_EXCLUDED_TRACKS = 1000
MAX_BATCH = 32


class Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of request structs: keyword-only, unknown fields rejected."""


class Filters(Base):
    min_year: Year | None = None
    max_year: Year | None = None
    genres: Annotated[list[Name], msgspec.Meta(max_length=50)] = []
    exclude_genres: Annotated[list[Name], msgspec.Meta(max_length=50)] = []
    exclude_artists: Annotated[list[Name], msgspec.Meta(max_length=200)] = []
    exclude_track_ids: Annotated[list[TrackId], msgspec.Meta(max_length=MAX_EXCLUDED_TRACKS)] = []


class TargetMood(Base):
    """A target point in mood space; overrides the mood detected from the query."""

    valence: Unit
    arousal: Unit


class RecommendRequest(Base):
    query: Annotated[str, msgspec.Meta(min_length=1, max_length=512, pattern=r"\S")]
    top_k: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    filters: Filters | None = None
    mode: Literal["full", "baseline"] = "full"
    seed_track_ids: Annotated[list[TrackId], msgspec.Meta(max_length=MAX_SEEDS)] = []
    target: TargetMood | None = None
    diversity: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    explain: bool = False
    include_unavailable: bool = False


class BatchRequest(Base):
    requests: Annotated[list[RecommendRequest], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class Out(msgspec.Struct, kw_only=True):
    """Base of response structs."""


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
    signals: dict[str, float] = {}
    explanation: dict[str, float] | None = None


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
    audio_query_source: str = "none"


class BatchResponse(Out):
    responses: list[RecommendResponse]


class Counts(Out):
    tracks: int
    with_audio: int
    with_mood: int
    dead_links: int


class CacheInfo(Out):
    size: int
    capacity: int
    hits: int
    misses: int
    redis_hits: int
    redis: Literal["absent", "up", "down"]


class Health(Out):
    status: Literal["ok"]
    store_version: str
    tracks: int
    counts: Counts
    loaded_at: str
    reload: Literal["store", "fixed"]
    reload_error: str | None
    cache: CacheInfo


class ReloadResult(Out):
    store_version: str
    reloaded: bool


class ErrorBody(Out):
    status_code: int
    detail: str
    extra: list[dict[str, str]] = []
