"""msgspec request/response schemas of the HTTP API (annotations are evaluated eagerly here:
Litestar and msgspec introspect these at runtime). A single request and its response are the
ranking's own types (:mod:`pipelines.rank.types`); batches, health and reload results are the
HTTP edge's."""

from typing import Annotated, Literal

import msgspec

from pipelines.rank.types import Base, Out, RecommendRequest, RecommendResponse

MAX_BATCH = 32


class BatchRequest(Base):
    requests: Annotated[list[RecommendRequest], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


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
