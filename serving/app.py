"""The Litestar application: HTTP glue over ``pipelines.rank.recommender`` (no ranking logic here).

The lifespan loads the published store version into a :class:`serving.reload.RecommenderHolder`
(``app.state.holder``; ``app.state.recommender`` mirrors the current one for read-only helpers)
and a :class:`serving.cache.ResponseCache` (``app.state.cache``). Each request leases the current
Recommender, so a hot reload never closes one that a request is still using.

Serving reads only ``store/versions/$(CURRENT)/`` (Parquet, .npy, .faiss files that are complete
before CURRENT is switched); it never opens a DuckDB file that Dagster writes.
"""

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import msgspec
from litestar import Litestar, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.params import Parameter

from pipelines.rank import recommender as ranking

from pipelines import store
from pipelines.index.bundle import Bundle
from pipelines.embed.sentence import BatchingEncoder
from serving import schemas, web
from serving.cache import ResponseCache, cache_key
from serving.errors import EXCEPTION_HANDLERS, TrackNotFound, field_error
from serving.reload import RecommenderHolder, build_generation, interval_from_env, read_pointer

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_BATCH_BODY_BYTES = 512 * 1024

RecommenderFactory = Callable[[Bundle], ranking.Recommender]


def resolve_bundle_dir(*, store_root: Path | None = None, bundle_dir: Path | None = None) -> Path:
    """The version folder to serve: ``bundle_dir``, else ``<store_root>/versions/<CURRENT>``."""
    if bundle_dir is not None:
        return Path(bundle_dir)
    root = Path(store_root) if store_root is not None else store.store_root()
    version = read_pointer(root)
    folder = root / "versions" / version if version else None
    if folder is None or not folder.exists():
        raise RuntimeError("no published store version (store/CURRENT is missing); materialise the assets first")
    return folder


# ---------------------------------------------------------------------- request → ranking
def _to_request(body: schemas.RecommendRequest) -> ranking.RecommendRequest:
    f = body.filters
    filters = None if f is None else ranking.Filters(
        min_year=f.min_year, max_year=f.max_year, genres=tuple(f.genres), exclude_genres=tuple(f.exclude_genres),
        exclude_artists=tuple(f.exclude_artists), exclude_track_ids=tuple(f.exclude_track_ids),
    )
    return ranking.RecommendRequest(
        query=body.query, top_k=body.top_k, filters=filters, mode=body.mode,
        seed_track_ids=tuple(body.seed_track_ids),
        target=None if body.target is None else (body.target.valence, body.target.arousal),
        diversity=body.diversity, explain=body.explain, include_unavailable=body.include_unavailable,
    )


def _check(body: schemas.RecommendRequest, *, prefix: str = "") -> None:
    """Cross-field rules msgspec cannot express (400 naming the field)."""
    f = body.filters
    if f is not None and f.min_year is not None and f.max_year is not None and f.min_year > f.max_year:
        raise field_error(f"{prefix}filters.min_year", "min_year > max_year")


def _version_key(rec: ranking.Recommender) -> str:
    """Store version + build time: a republished version with the same name gets new keys."""
    return f"{rec.bundle.version}@{rec.bundle.manifest.get('created_at', '')}"


def _recommend_one(
    *, rec: ranking.Recommender, cache: ResponseCache, body: schemas.RecommendRequest, prefix: str = ""
) -> tuple[schemas.RecommendResponse, bool]:
    """One request through the cache: ``(response, cache hit)``."""

    def compute() -> schemas.RecommendResponse:
        try:
            result = rec.recommend(_to_request(body))
        except ranking.UnknownTrackError as exc:
            raise field_error(f"{prefix}{exc.field}", f"unknown track id {exc.track_id!r}") from exc
        return msgspec.convert(result, schemas.RecommendResponse, from_attributes=True)

    key = cache_key(kind="recommend", store_version=_version_key(rec), request=body)
    value, hit = cache.get_or_compute(key=key, type_=schemas.RecommendResponse, compute=compute)
    if value.query != body.query:  # the key ignores case and spacing; echo the caller's text
        value = msgspec.structs.replace(value, query=body.query)
    return value, hit


def _cache_headers(hit: bool) -> dict[str, str]:
    return {"x-cache": "hit" if hit else "miss"}


# ---------------------------------------------------------------------- handlers
@post("/recommend", status_code=200, sync_to_thread=True)
def recommend(data: schemas.RecommendRequest, state: State) -> Response[schemas.RecommendResponse]:
    """Mood-aware recommendations for a free-text query (optionally seeds, a target mood, filters)."""
    _check(data)
    with state.holder.lease() as rec:
        value, hit = _recommend_one(rec=rec, cache=state.cache, body=data)
    return Response(value, headers=_cache_headers(hit))


@post("/recommend/batch", status_code=200, sync_to_thread=True, request_max_body_size=MAX_BATCH_BODY_BYTES)
def recommend_batch(data: schemas.BatchRequest, state: State) -> Response[schemas.BatchResponse]:
    """Up to 32 recommendation requests in one call, answered in order (errors name ``requests[i]``)."""
    for i, body in enumerate(data.requests):
        _check(body, prefix=f"requests[{i}].")
    with state.holder.lease() as rec:  # one version for the whole batch
        answers = [
            _recommend_one(rec=rec, cache=state.cache, body=body, prefix=f"requests[{i}].")
            for i, body in enumerate(data.requests)
        ]
    hits = sum(hit for _, hit in answers)
    return Response(
        schemas.BatchResponse(responses=[value for value, _ in answers]),
        headers={"x-cache-hits": f"{hits}/{len(answers)}"},
    )


@get("/tracks/{track_id:str}", sync_to_thread=False)
def get_track(track_id: str, state: State) -> schemas.Track:
    """One track of the served version (404 when unknown)."""
    with state.holder.lease() as rec:
        track = rec.track_by_id(track_id)
    if track is None:
        raise TrackNotFound(track_id)
    return msgspec.convert(track, schemas.Track, from_attributes=True)


@get("/tracks/{track_id:str}/similar", sync_to_thread=True)
def similar_tracks(
    track_id: str,
    state: State,
    top_k: Annotated[int, Parameter(ge=1, le=100)] = 10,
    include_unavailable: bool = False,
) -> Response[schemas.RecommendResponse]:
    """Tracks like ``track_id`` (the track itself is never returned; 404 when unknown)."""
    with state.holder.lease() as rec:
        key = cache_key(
            kind="similar", store_version=_version_key(rec),
            request={"track_id": track_id, "top_k": top_k, "include_unavailable": include_unavailable},
        )

        def compute() -> schemas.RecommendResponse:
            result = rec.similar(track_id=track_id, top_k=top_k, include_unavailable=include_unavailable)
            return msgspec.convert(result, schemas.RecommendResponse, from_attributes=True)

        value, hit = state.cache.get_or_compute(key=key, type_=schemas.RecommendResponse, compute=compute)
    return Response(value, headers=_cache_headers(hit))


@get("/health", sync_to_thread=True)
def health(state: State) -> schemas.Health:
    """Liveness, the served store version, its manifest counts, load time and cache state."""
    holder: RecommenderHolder = state.holder
    gen = holder.current
    bundle = gen.recommender.bundle
    counts = bundle.manifest.get("counts") or {}
    stats = state.cache.stats()
    return schemas.Health(
        status="ok",
        store_version=bundle.version,
        tracks=len(bundle),
        counts=schemas.Counts(
            tracks=int(counts.get("tracks", len(bundle))),
            with_audio=int(counts.get("with_audio", int(bundle.has_audio.sum()))),
            with_mood=int(counts.get("with_mood", int(bundle.has_mood.sum()))),
            dead_links=int(counts.get("dead_links", 0)),
        ),
        loaded_at=gen.loaded_at.isoformat(),
        reload="store" if holder.reloadable else "fixed",
        reload_error=holder.last_error,
        cache=schemas.CacheInfo(
            size=stats.size, capacity=stats.capacity, hits=stats.hits, misses=stats.misses,
            redis_hits=stats.redis_hits, redis=stats.redis,
        ),
    )


@post("/admin/reload", status_code=200, sync_to_thread=True)
def admin_reload(state: State, force: bool = False) -> schemas.ReloadResult:
    """Load the version CURRENT points at now (``force``: even if it is the one being served).

    409 when serving a fixed bundle folder; 503 (old version keeps serving) when loading fails.
    """
    holder: RecommenderHolder = state.holder
    if not holder.reloadable:
        raise HTTPException(status_code=409, detail="serving a fixed bundle_dir: nothing to reload")
    try:
        gen, swapped = holder.reload(force=force)
    except Exception as exc:
        log.exception("admin reload failed")
        raise HTTPException(status_code=503, detail=f"reload failed, still serving the old version: {exc}") from exc
    return schemas.ReloadResult(store_version=gen.version, reloaded=swapped)


def create_app(
    *,
    store_root: Path | None = None,
    bundle_dir: Path | None = None,
    recommender_factory: RecommenderFactory | None = None,
    cache: ResponseCache | None = None,
    reload_interval_s: float | None = None,
) -> Litestar:
    """The app.

    ``bundle_dir``: serve that folder, fixed. Otherwise serve ``<store_root>/versions/<CURRENT>``
    (default root: ``pipelines.store.store_root()``) and hot-reload when CURRENT changes, polling
    every ``reload_interval_s`` (default ``MOODSCAPE_RELOAD_INTERVAL_S``, 2 s; <= 0 disables).
    ``recommender_factory`` (default ``Recommender(bundle)``) builds the ranking state;
    ``cache`` defaults to :meth:`ResponseCache.from_env`.
    """
    # The query encoder runs as MOODSCAPE_QUERY_ENCODER says (pipelines.embed.query: ONNX Runtime
    # by default, torch bf16/fp32 otherwise); a bad value fails here, at startup. Torch encoders
    # batch concurrent requests into one forward pass (BatchingEncoder: 8 queries cost ~3× one);
    # ONNX Runtime gains nothing from batching, so each request thread calls it directly and two
    # requests encode in parallel on two cores instead of queueing for one encoder thread.
    encoder = None
    if recommender_factory is None:
        from pipelines.embed.query import query_encoder_from_env

        raw = query_encoder_from_env()
        batching = os.environ.get("MOODSCAPE_ENCODER_BATCHING", "auto").strip().lower() or "auto"
        if batching not in ("auto", "on", "off"):
            raise ValueError(f"MOODSCAPE_ENCODER_BATCHING={batching!r} is not valid; expected auto, on or off")
        if batching == "on" or (batching == "auto" and getattr(raw, "precision", "") != "onnx"):
            encoder = BatchingEncoder(encode=raw)
        else:
            encoder = raw
    # MOODSCAPE_RETRIEVAL_THREADS: threads running one request's three index searches (0: inline).
    retrieval_threads = max(0, int(os.environ.get("MOODSCAPE_RETRIEVAL_THREADS", "3")))
    factory = recommender_factory or (
        lambda bundle: ranking.Recommender(bundle, encoder=encoder, max_workers=retrieval_threads)
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        import anyio.to_thread

        root = None if bundle_dir is not None else (Path(store_root) if store_root is not None else store.store_root())
        folder = resolve_bundle_dir(store_root=root, bundle_dir=bundle_dir)
        pointer = None if root is None else folder.name
        gen = await anyio.to_thread.run_sync(
            lambda: build_generation(folder=folder, pointer=pointer, factory=factory)
        )

        def mirror(rec: ranking.Recommender) -> None:
            app.state.recommender = rec

        holder = RecommenderHolder(
            initial=gen, factory=factory, store_root=root,
            interval_s=interval_from_env() if reload_interval_s is None else reload_interval_s,
            on_swap=mirror,
        )
        app.state.holder = holder
        app.state.recommender = gen.recommender
        app.state.cache = cache if cache is not None else ResponseCache.from_env()
        holder.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(holder.stop)
            app.state.cache.close()
            if encoder is not None:
                encoder.close()
            del app.state.recommender, app.state.holder, app.state.cache

    return Litestar(
        route_handlers=[recommend, recommend_batch, get_track, similar_tracks, health, admin_reload, web.web_router()],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(
            title="Moodscape", version="0.1.0", path="/schema",
            render_plugins=[SwaggerRenderPlugin(), RedocRenderPlugin()],
        ),
    )
