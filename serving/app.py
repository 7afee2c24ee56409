"""The Litestar application: HTTP glue over ``pipelines.rank.recommender`` (no ranking logic here).

The lifespan loads the published store version into a :class:`serving.reload.RecommenderHolder`
(``app.state.holder``) and a :class:`serving.cache.ResponseCache` (``app.state.cache``). Each
request leases the current Recommender, so a hot reload never closes one that a request is still
using. Settings come from :class:`serving.settings.ServingSettings` (read once at startup).

Serving reads only the published version folder (Parquet, .npy, .faiss files that are complete
before it is published); it never opens a DuckDB file that Dagster writes.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import msgspec
from litestar import Litestar, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.params import Parameter

from pipelines import schema as S
from pipelines import store
from pipelines.embed.sentence import BatchingEncoder
from pipelines.errors import InvalidInputError, UnavailableError, UnknownTrackError
from pipelines.index.bundle import Bundle
from pipelines.index.remote_store import RemoteStore
from pipelines.rank.learned import ranker_for_bundle
from pipelines.rank.recommender import Recommender
from pipelines.rank.types import MAX_TOP_K, RecommendRequest, RecommendResponse, Track
from serving import media, schemas, web
from serving.cache import ResponseCache, cache_key
from serving.display import DisplayTables
from serving.errors import EXCEPTION_HANDLERS
from serving.mirror import VersionMirror
from serving.reload import RecommenderHolder, build_generation
from serving.settings import ServingSettings

MAX_BODY_BYTES = 64 * 1024
MAX_BATCH_BODY_BYTES = 512 * 1024

RecommenderFactory = Callable[[Bundle], Recommender]


def resolve_bundle_dir(*, store_root: Path | None = None, bundle_dir: Path | None = None) -> Path:
    """The version folder to serve: ``bundle_dir``, else the store's published version."""
    if bundle_dir is not None:
        return Path(bundle_dir)
    layout = store.StoreLayout(Path(store_root)) if store_root is not None else store.layout()
    folder = layout.current_version_dir()
    if folder is None or not folder.exists():
        raise UnavailableError(
            f"no published store version ({layout.current_pointer} is missing); materialise the assets first"
        )
    return folder


def _version_key(rec: Recommender) -> str:
    """Store version + build time + availability overlay: a republished version with the same name,
    or a new overlay, gets new keys."""
    return f"{rec.bundle.version}@{rec.bundle.manifest.get('created_at', '')}+{rec.availability_version}"


def _recommend_one(
    *, rec: Recommender, cache: ResponseCache, body: RecommendRequest, prefix: str = ""
) -> tuple[RecommendResponse, bool]:
    """One request through the cache: ``(response, cache hit)``; errors name ``prefix`` + field."""

    def compute() -> RecommendResponse:
        try:
            return rec.recommend(body)
        except (InvalidInputError, UnknownTrackError) as exc:
            exc.field = f"{prefix}{exc.field}"
            raise

    key = cache_key(kind="recommend", store_version=_version_key(rec), request=body)
    value, hit = cache.get_or_compute(key=key, type_=RecommendResponse, compute=compute)
    if value.query != body.query:  # the key ignores case and spacing; echo the caller's text
        value = msgspec.structs.replace(value, query=body.query)
    return value, hit


def audio_roots(*, store_root: Path | None, bundle_dir: Path | None, extra: tuple[Path, ...] = ()) -> list[Path]:
    """Folders whose audio may be served: the store's audio folder (of ``store_root``, or of the store
    that holds ``bundle_dir``), the bundled data's audio and ``extra``."""
    roots: list[Path] = []
    if store_root is None and bundle_dir is not None:
        folder = Path(bundle_dir).resolve()
        candidate = store.StoreLayout(folder.parent.parent)
        store_root = candidate.root if candidate.version_dir(folder.name) == folder else None
    if store_root is not None:
        roots.append(store.StoreLayout(Path(store_root)).audio(""))
    roots.append(store.DATA_DIR / "audio")
    return [*roots, *extra]


def _served_track(track: Track, *, row: int, rec: Recommender, displays: DisplayTables) -> schemas.ServedTrack:
    table = displays.get(rec.bundle)
    fields = {f: getattr(track, f) for f in track.__struct_fields__}
    has_audio = row >= 0 and table.audio_file(row) is not None
    return schemas.ServedTrack(
        **fields, display=table.display(row) if row >= 0 else None,
        audio_url=f"/tracks/{quote(track.track_id, safe='')}/audio" if has_audio else None,
    )


def _served(resp: RecommendResponse, *, rec: Recommender, displays: DisplayTables) -> schemas.ServedResponse:
    """``resp`` with display-only fields on every result (the cached response stays as it was)."""
    rows = rec.rows_of([t.track_id for t in resp.results])
    fields = {f: getattr(resp, f) for f in resp.__struct_fields__ if f != "results"}
    return schemas.ServedResponse(
        **fields,
        results=[_served_track(t, row=int(r), rec=rec, displays=displays) for t, r in zip(resp.results, rows)],
    )


def _cache_headers(hit: bool) -> dict[str, str]:
    return {"x-cache": "hit" if hit else "miss"}


# ---------------------------------------------------------------------- handlers
@post("/recommend", status_code=200, sync_to_thread=True)
def recommend(data: RecommendRequest, state: State) -> Response[schemas.ServedResponse]:
    """Mood-aware recommendations for a free-text query (optionally seeds, a target mood, filters)."""
    with state.holder.lease() as rec:
        value, hit = _recommend_one(rec=rec, cache=state.cache, body=data)
        served = _served(value, rec=rec, displays=state.displays)
    return Response(served, headers=_cache_headers(hit))


@post("/recommend/batch", status_code=200, sync_to_thread=True, request_max_body_size=MAX_BATCH_BODY_BYTES)
def recommend_batch(data: schemas.BatchRequest, state: State) -> Response[schemas.BatchResponse]:
    """Up to 32 recommendation requests in one call, answered in order (errors name ``requests[i]``)."""
    with state.holder.lease() as rec:  # one version for the whole batch
        answers = [
            _recommend_one(rec=rec, cache=state.cache, body=body, prefix=f"requests[{i}].")
            for i, body in enumerate(data.requests)
        ]
        responses = [_served(value, rec=rec, displays=state.displays) for value, _ in answers]
    hits = sum(hit for _, hit in answers)
    return Response(
        schemas.BatchResponse(responses=responses),
        headers={"x-cache-hits": f"{hits}/{len(answers)}"},
    )


@get("/tracks/{track_id:str}", sync_to_thread=False)
def get_track(track_id: str, state: State, include_unavailable: bool = False) -> schemas.ServedTrack:
    """One track of the served version (404 when unknown, or when its link is DEAD unless ``include_unavailable``)."""
    with state.holder.lease() as rec:
        track = rec.track_by_id(track_id)
        if track.url_status == S.DEAD and not include_unavailable:
            raise NotFoundException(detail=f"track {track_id!r} is unavailable: its link is DEAD")
        return _served_track(track, row=int(rec.rows_of([track_id])[0]), rec=rec, displays=state.displays)


@get("/tracks/{track_id:str}/similar", sync_to_thread=True)
def similar_tracks(
    track_id: str,
    state: State,
    top_k: Annotated[int, Parameter(ge=1, le=MAX_TOP_K)] = 10,
    include_unavailable: bool = False,
) -> Response[schemas.ServedResponse]:
    """Tracks like ``track_id`` (the track itself is never returned; 404 when unknown)."""
    with state.holder.lease() as rec:
        key = cache_key(
            kind="similar", store_version=_version_key(rec),
            request={"track_id": track_id, "top_k": top_k, "include_unavailable": include_unavailable},
        )

        def compute() -> RecommendResponse:
            return rec.similar(track_id=track_id, top_k=top_k, include_unavailable=include_unavailable)

        value, hit = state.cache.get_or_compute(key=key, type_=RecommendResponse, compute=compute)
        served = _served(value, rec=rec, displays=state.displays)
    return Response(served, headers=_cache_headers(hit))


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
        availability=_availability(holder),
        reload_error=holder.last_error or (state.mirror.last_error if state.mirror is not None else None),
        cache=schemas.CacheInfo(
            size=stats.size, capacity=stats.capacity, hits=stats.hits, misses=stats.misses,
            redis_hits=stats.redis_hits, redis=stats.redis,
        ),
    )


def _availability(holder: RecommenderHolder) -> schemas.AvailabilityInfo | None:
    overlay = holder.overlay
    if overlay is None and holder.overlay_error is None:
        return None
    return schemas.AvailabilityInfo(
        version=None if overlay is None else overlay.written_at,
        age_s=None if overlay is None else round(overlay.age_s(), 3),
        base_version=None if overlay is None else overlay.base_version,
        tracks=0 if overlay is None else overlay.table.height,
        dead=0 if overlay is None else overlay.dead,
        error=holder.overlay_error,
    )


@post("/admin/reload", status_code=200, sync_to_thread=True)
def admin_reload(state: State, force: bool = False) -> schemas.ReloadResult:
    """Load the store's published version now (``force``: even if it is the one being served).

    409 when serving a fixed bundle folder; 503 (old version keeps serving) when loading fails.
    """
    gen, swapped = state.holder.reload(force=force)
    return schemas.ReloadResult(store_version=gen.version, reloaded=swapped)


def create_app(
    *,
    store_root: Path | None = None,
    bundle_dir: Path | None = None,
    recommender_factory: RecommenderFactory | None = None,
    cache: ResponseCache | None = None,
    settings: ServingSettings | None = None,
) -> Litestar:
    """The app.

    ``bundle_dir``: serve that folder, fixed. Otherwise serve the store's published version
    (default root: ``pipelines.store.store_root()``) and hot-reload when it changes, polling every
    ``settings.reload_interval_s``. ``settings`` default to :meth:`ServingSettings.from_env` (a bad
    value fails here, at startup). ``recommender_factory`` (default ``Recommender(bundle)``) builds
    the ranking state; ``cache`` defaults to the settings' :class:`ResponseCache`.
    """
    settings = ServingSettings.from_env() if settings is None else settings
    # The query encoder runs as MOODSCAPE_QUERY_ENCODER says (pipelines.embed.query: ONNX Runtime
    # by default, torch bf16/fp32 otherwise). Torch encoders batch concurrent requests into one
    # forward pass (BatchingEncoder: 8 queries cost ~3× one); ONNX Runtime gains nothing from
    # batching, so each request thread calls it directly and two requests encode in parallel on
    # two cores instead of queueing for one encoder thread.
    encoder = None
    if recommender_factory is None:
        from pipelines.embed.query import query_encoder_from_env

        raw = query_encoder_from_env(environ=settings.encoder_environ)
        batching = settings.encoder_batching
        if batching == "on" or (batching == "auto" and getattr(raw, "precision", "") != "onnx"):
            encoder = BatchingEncoder(encode=raw)
        else:
            encoder = raw
    factory = recommender_factory or (
        lambda bundle: Recommender(
            bundle, encoder=encoder, max_workers=settings.retrieval_threads, ranker=ranker_for_bundle(bundle)
        )
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        import anyio.to_thread

        root = None if bundle_dir is not None else (Path(store_root) if store_root is not None else store.store_root())
        mirror = None
        if root is not None and settings.store_url:  # serve the object store's version through a local cache
            mirror = VersionMirror(
                remote=RemoteStore.from_url(settings.store_url, endpoint_url=settings.store_endpoint_url),
                local=store.StoreLayout(root),
            )
            await anyio.to_thread.run_sync(mirror.pull)
        app.state.mirror = mirror
        folder = resolve_bundle_dir(store_root=root, bundle_dir=bundle_dir)
        pointer = None if root is None else folder.name
        gen = await anyio.to_thread.run_sync(
            lambda: build_generation(folder=folder, pointer=pointer, factory=factory)
        )
        holder = RecommenderHolder(
            initial=gen, factory=factory, store_root=root, interval_s=settings.reload_interval_s,
            sync=None if mirror is None else mirror.sync,
        )
        app.state.holder = holder
        app.state.cache = cache if cache is not None else ResponseCache.from_settings(settings)
        app.state.displays = DisplayTables(
            audio_roots=audio_roots(store_root=root, bundle_dir=bundle_dir, extra=settings.audio_roots)
        )
        holder.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(holder.stop)
            app.state.cache.close()
            if encoder is not None:
                encoder.close()
            del app.state.holder, app.state.cache, app.state.displays, app.state.mirror

    return Litestar(
        route_handlers=[recommend, recommend_batch, get_track, similar_tracks, media.track_audio, health, admin_reload,
                        web.web_router()],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(
            title="Moodscape", version="0.1.0", path="/schema",
            render_plugins=[SwaggerRenderPlugin(), RedocRenderPlugin()],
        ),
    )
