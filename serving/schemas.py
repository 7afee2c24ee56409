"""msgspec request/response schemas of the HTTP API (annotations are evaluated eagerly here:
Litestar and msgspec introspect these at runtime). A single request and its response are the
ranking's own types (:mod:`pipelines.rank.types`); batches, health and reload results are the
HTTP edge's."""

from typing import Annotated, Literal

import msgspec

from pipelines.rank.types import Base, Out, RecommendRequest, RecommendResponse, Track
from serving.display import Display

MAX_BATCH = 32


class ServedTrack(Track, kw_only=True):
    """A result as served: the ranking's track plus display-only fields (the data stays as it is)."""

    display: Display | None = None  # what identifies the track for a person (title or its stand-in)
    audio_url: str | None = None  # this service's URL of the track's audio, when the store has it


class ServedResponse(RecommendResponse, kw_only=True):
    results: list[ServedTrack]


class BatchRequest(Base):
    requests: Annotated[list[RecommendRequest], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class BatchResponse(Out):
    responses: list[ServedResponse]


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


class AvailabilityInfo(Out):
    """The availability overlay applied over the served version's link statuses."""

    version: str | None  # when it was written (UTC ISO-8601); None: none applied yet
    age_s: float | None
    base_version: str | None  # the store version it was built against
    tracks: int  # tracks it lists
    dead: int  # of which DEAD
    error: str | None  # why the latest file was not applied (the last good overlay stays)


class Health(Out):
    status: Literal["ok"]
    store_version: str
    tracks: int
    counts: Counts
    loaded_at: str
    reload: Literal["store", "fixed"]
    reload_error: str | None
    cache: CacheInfo
    availability: AvailabilityInfo | None = None


class ReloadResult(Out):
    store_version: str
    reloaded: bool
