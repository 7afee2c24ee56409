"""msgspec request/response schemas of the HTTP API (annotations are evaluated eagerly here:
Litestar and msgspec introspect these at runtime)."""

from typing import Annotated, Literal

import msgspec

Year = Annotated[int, msgspec.Meta(ge=0, le=3000)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of request structs: keyword-only, unknown fields rejected."""


class Filters(Base):
    min_year: Year | None = None
    max_year: Year | None = None
    genres: Annotated[list[Name], msgspec.Meta(max_length=50)] = []
    exclude_artists: Annotated[list[Name], msgspec.Meta(max_length=200)] = []


class RecommendRequest(Base):
    query: Annotated[str, msgspec.Meta(min_length=1, max_length=512, pattern=r"\S")]
    top_k: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    filters: Filters | None = None
    mode: Literal["full", "baseline"] = "full"


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


class Health(Out):
    status: Literal["ok"]
    store_version: str
    tracks: int


class ErrorBody(Out):
    status_code: int
    detail: str
    extra: list[dict[str, str]] = []
