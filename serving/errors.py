"""One mapping from errors to JSON HTTP responses: bad input is 4xx with the field named, never 500."""

from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_404_NOT_FOUND, HTTP_500_INTERNAL_SERVER_ERROR

from pipelines.rank.recommender import UnknownTrackError


class TrackNotFound(Exception):
    """No track with this id in the served version."""

    def __init__(self, track_id: str) -> None:
        super().__init__(track_id)
        self.track_id = track_id


def _field_name(key: Any) -> str:
    # msgspec reports "Object missing required field `query`" / "Expected `int` >= 1 - at `$.top_k`"
    return str(key or "").removeprefix("$.").removeprefix("$") or "body"


def _validation_items(extra: Any) -> list[dict[str, str]]:
    items: list[dict[str, str]] = []
    for e in extra if isinstance(extra, list) else ([extra] if extra else []):
        if isinstance(e, dict):
            message = str(e.get("message", ""))
            key = e.get("key")
            if key in (None, "", "data") and "field `" in message:
                # Litestar reports whole-body errors under "data"; msgspec names the field:
                # "Object missing required field `query`", "Object contains unknown field `colour`".
                key = message.split("field `", 1)[1].split("`", 1)[0]
            items.append({"field": _field_name(key), "message": message})
    return items


def validation_handler(_: Request, exc: ValidationException) -> Response:
    items = _validation_items(exc.extra)
    detail = "; ".join(f"{i['field']}: {i['message']}" for i in items) or str(exc.detail)
    return Response(
        {"status_code": HTTP_400_BAD_REQUEST, "detail": detail, "extra": items},
        status_code=HTTP_400_BAD_REQUEST,
    )


def not_found_handler(_: Request, exc: Exception) -> Response:
    detail = f"track {exc.track_id!r} not found" if isinstance(exc, TrackNotFound) else str(
        getattr(exc, "detail", "not found")
    )
    return Response({"status_code": HTTP_404_NOT_FOUND, "detail": detail}, status_code=HTTP_404_NOT_FOUND)


def field_error(field: str, message: str) -> ValidationException:
    """A 400 naming ``field`` (e.g. ``requests[3].seed_track_ids``)."""
    return ValidationException(message, extra=[{"key": field, "message": message}])


def unknown_track_handler(request: Request, exc: UnknownTrackError) -> Response:
    """An unknown seed id is bad input (400 naming the field); an unknown path id is a 404."""
    if exc.field == "track_id":
        return not_found_handler(request, TrackNotFound(exc.track_id))
    return validation_handler(request, field_error(exc.field, f"unknown track id {exc.track_id!r}"))


def http_handler(_: Request, exc: HTTPException) -> Response:
    return Response(
        {"status_code": exc.status_code, "detail": str(exc.detail)},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def internal_handler(request: Request, exc: Exception) -> Response:
    request.logger.exception("unhandled error: %s", exc)
    return Response(
        {"status_code": HTTP_500_INTERNAL_SERVER_ERROR, "detail": "internal server error"},
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


EXCEPTION_HANDLERS = {
    ValidationException: validation_handler,
    TrackNotFound: not_found_handler,
    UnknownTrackError: unknown_track_handler,
    NotFoundException: not_found_handler,
    HTTPException: http_handler,
    Exception: internal_handler,
}
