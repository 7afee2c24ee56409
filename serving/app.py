"""The Litestar application: lifespan loads the published store version into ``app.state``.

Serving reads only ``store/versions/$(CURRENT)/`` (Parquet, .npy, .faiss files that are complete
before CURRENT is switched); it never opens a DuckDB file that Dagster writes.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
from litestar import Litestar, get, post
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin

from pipelines import ranking, store
from pipelines.bundle import Bundle, load_bundle
from serving import schemas
from serving.errors import EXCEPTION_HANDLERS, TrackNotFound

MAX_BODY_BYTES = 64 * 1024

RecommenderFactory = Callable[[Bundle], ranking.Recommender]


def resolve_bundle_dir(*, store_root: Path | None = None, bundle_dir: Path | None = None) -> Path:
    """The version folder to serve: ``bundle_dir``, else ``<store_root>/versions/<CURRENT>``."""
    if bundle_dir is not None:
        return Path(bundle_dir)
    if store_root is None:
        folder = store.current_version_dir()
    else:
        pointer = Path(store_root) / "CURRENT"
        version = pointer.read_text().strip() if pointer.exists() else ""
        folder = Path(store_root) / "versions" / version if version else None
    if folder is None or not folder.exists():
        raise RuntimeError("no published store version (store/CURRENT is missing); materialise the assets first")
    return folder


def _to_request(body: schemas.RecommendRequest) -> ranking.RecommendRequest:
    f = body.filters
    filters = None if f is None else ranking.Filters(
        min_year=f.min_year, max_year=f.max_year, genres=tuple(f.genres), exclude_artists=tuple(f.exclude_artists)
    )
    return ranking.RecommendRequest(query=body.query, top_k=body.top_k, filters=filters, mode=body.mode)


@post("/recommend", status_code=200, sync_to_thread=True)
def recommend(data: schemas.RecommendRequest, state: State) -> schemas.RecommendResponse:
    """Mood-aware recommendations for a free-text query."""
    if data.filters and data.filters.min_year is not None and data.filters.max_year is not None:
        if data.filters.min_year > data.filters.max_year:
            from litestar.exceptions import ValidationException

            raise ValidationException(
                "invalid filters", extra=[{"key": "filters.min_year", "message": "min_year > max_year"}]
            )
    rec: ranking.Recommender = state.recommender
    result = rec.recommend(_to_request(data))
    return msgspec.convert(result, schemas.RecommendResponse, from_attributes=True)


@get("/tracks/{track_id:str}", sync_to_thread=False)
def get_track(track_id: str, state: State) -> schemas.Track:
    """One track of the served version (404 when unknown)."""
    track = state.recommender.track_by_id(track_id)
    if track is None:
        raise TrackNotFound(track_id)
    return msgspec.convert(track, schemas.Track, from_attributes=True)


@get("/health", sync_to_thread=False)
def health(state: State) -> schemas.Health:
    """Liveness plus the served store version and its track count."""
    rec: ranking.Recommender = state.recommender
    return schemas.Health(status="ok", store_version=rec.bundle.version, tracks=len(rec.bundle))


def create_app(
    *,
    store_root: Path | None = None,
    bundle_dir: Path | None = None,
    recommender_factory: RecommenderFactory | None = None,
) -> Litestar:
    """The app. ``recommender_factory`` (default ``Recommender(bundle)``) builds the ranking state."""
    factory = recommender_factory or (lambda bundle: ranking.Recommender(bundle))

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        folder = resolve_bundle_dir(store_root=store_root, bundle_dir=bundle_dir)
        rec = factory(load_bundle(folder))
        rec.encoder(["warm-up"])  # load the sentence model now, not on the first request
        app.state.recommender = rec
        try:
            yield
        finally:
            rec.close()
            del app.state.recommender

    return Litestar(
        route_handlers=[recommend, get_track, health],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(
            title="Moodscape", version="0.1.0", path="/schema",
            render_plugins=[SwaggerRenderPlugin(), RedocRenderPlugin()],
        ),
    )
