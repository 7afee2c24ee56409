"""One mapping from errors to JSON HTTP responses: bad input is 4xx with the field named, never 500.

Domain errors (:mod:`pipelines.errors`) map here and nowhere else: InvalidInputError → 400 naming
its field, UnknownTrackError → 400 naming its field (404 for the path's ``track_id``),
ConflictError → 409, UnavailableError → 503. Request bodies that fail the msgspec schema are 400s
naming the field too.
"""

from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from pipelines.errors import ConflictError, InvalidInputError, UnavailableError, UnknownTrackError


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


def _bad_request(items: list[dict[str, str]], fallback: str) -> Response:
    detail = "; ".join(f"{i['field']}: {i['message']}" for i in items) or fallback
    return Response(
        {"status_code": HTTP_400_BAD_REQUEST, "detail": detail, "extra": items},
        status_code=HTTP_400_BAD_REQUEST,
    )


def _status(status: int, detail: str) -> Response:
    return Response({"status_code": status, "detail": detail}, status_code=status)


def validation_handler(_: Request, exc: ValidationException) -> Response:
    return _bad_request(_validation_items(exc.extra), str(exc.detail))


def invalid_input_handler(_: Request, exc: InvalidInputError) -> Response:
    return _bad_request([{"field": exc.field, "message": str(exc)}], str(exc))


def unknown_track_handler(_: Request, exc: UnknownTrackError) -> Response:
    """An unknown seed id is bad input (400 naming the field); an unknown path id is a 404."""
    if exc.field == "track_id":
        return _status(HTTP_404_NOT_FOUND, f"track {exc.track_id!r} not found")
    message = f"unknown track id {exc.track_id!r}"
    return _bad_request([{"field": exc.field, "message": message}], message)


def conflict_handler(_: Request, exc: ConflictError) -> Response:
    return _status(HTTP_409_CONFLICT, str(exc))


def unavailable_handler(_: Request, exc: UnavailableError) -> Response:
    return _status(HTTP_503_SERVICE_UNAVAILABLE, str(exc))


def not_found_handler(_: Request, exc: NotFoundException) -> Response:
    return _status(HTTP_404_NOT_FOUND, str(getattr(exc, "detail", "not found")))


def http_handler(_: Request, exc: HTTPException) -> Response:
    return Response(
        {"status_code": exc.status_code, "detail": str(exc.detail)},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def internal_handler(request: Request, exc: Exception) -> Response:
    request.logger.exception("unhandled error: %s", exc)
    return _status(HTTP_500_INTERNAL_SERVER_ERROR, "internal server error")


EXCEPTION_HANDLERS = {
    ValidationException: validation_handler,
    InvalidInputError: invalid_input_handler,
    UnknownTrackError: unknown_track_handler,
    ConflictError: conflict_handler,
    UnavailableError: unavailable_handler,
    NotFoundException: not_found_handler,
    HTTPException: http_handler,
    Exception: internal_handler,
}
