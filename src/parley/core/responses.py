"""The REST envelope: `{"trace_id", "data"}` on success, `{"trace_id", "error"}` on failure.

`ok(...)` wraps a payload; `install_error_handlers(app)` renders every error — Parley's own, the
framework's 404/405/422 and anything unexpected — in the envelope, in this one place.
`error_responses(...)` documents a route's errors in OpenAPI.

A surface with an error format of its own (the OpenAI-compatible `/v1`) registers a renderer for its
path prefix: `install_error_handlers(app, renderers={"/v1": render_openai_error})`. Every error
under that prefix, the middleware's 413 and last-resort 500 included, is then rendered by it from an
`ErrorReport`; core still knows no domain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from parley.core.errors import (
    BadRequest,
    Forbidden,
    InternalError,
    MethodNotAllowed,
    NotAuthenticated,
    NotFound,
    ParleyError,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    ValidationFailed,
)
from parley.core.telemetry import current_trace_id

T = TypeVar("T")
logger = logging.getLogger(__name__)


class Envelope(BaseModel, Generic[T]):
    """A successful response."""

    trace_id: str = Field(description="The OpenTelemetry trace id, 32 lowercase hex digits.")
    data: T


class Page(BaseModel, Generic[T]):
    """One page of a list; pass `next_cursor` back as `cursor` for the next."""

    items: list[T]
    next_cursor: str | None = Field(description="Opaque; null on the last page.")


class ErrorDetail(BaseModel):
    """Where a request was invalid."""

    field: str = Field(examples=["body.title"])
    message: str


class ErrorInfo(BaseModel):
    """What went wrong."""

    code: str = Field(examples=["not_found"])
    message: str
    details: list[ErrorDetail] | None = None


class ErrorEnvelope(BaseModel):
    """A failed response."""

    trace_id: str
    error: ErrorInfo


def ok(data: T) -> Envelope[T]:
    """Wrap `data` in the success envelope with the current trace id."""
    return Envelope[T](trace_id=current_trace_id(), data=data)


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    """The JSON bytes of an error envelope (used where no exception handler can run)."""
    info = ErrorInfo(
        code=code,
        message=message,
        details=[ErrorDetail(**item) for item in details] if details else None,
    )
    return (
        ErrorEnvelope(trace_id=current_trace_id(), error=info)
        .model_dump_json(exclude_none=True)
        .encode()
    )


def error_response(exc: ParleyError) -> Response:
    """Render a Parley error in the envelope, with its status and headers."""
    return Response(
        content=error_body(exc.code, exc.message, exc.details),
        status_code=exc.status_code,
        headers=exc.headers,
        media_type="application/json",
    )


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """An error about to be rendered, whatever raised it: what any renderer needs.

    Attributes:
        status_code: the HTTP status Parley gives it.
        code: the stable snake_case code.
        message: a sentence for a person.
        details: validation details (`{"field", "message"}` items), if any.
        headers: response headers it must carry (`WWW-Authenticate`, `Retry-After`, `Allow`).
        cause: the exception it came from (a `ParleyError`, the framework's validation error or
            HTTP exception), for renderers that say more than the envelope does.
    """

    status_code: int
    code: str
    message: str
    details: list[dict[str, Any]] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    cause: BaseException | None = None

    @classmethod
    def of(cls, error: ParleyError, *, cause: BaseException | None = None) -> ErrorReport:
        """The report of a Parley error (`cause`: what it was made from, if not itself)."""
        return cls(
            status_code=error.status_code,
            code=error.code,
            message=error.message,
            details=error.details,
            headers=dict(error.headers),
            cause=cause if cause is not None else error,
        )


ErrorRenderer = Callable[[Request, ErrorReport], Response]
"""Turns an error report into the response of one surface (see `install_error_handlers`)."""


def render_envelope(_request: Request, report: ErrorReport) -> Response:
    """The REST surface's renderer: the error envelope."""
    return Response(
        content=error_body(report.code, report.message, report.details),
        status_code=report.status_code,
        headers=dict(report.headers),
        media_type="application/json",
    )


def _matches_prefix(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def render_error(request: Request, report: ErrorReport) -> Response:
    """Render `report` the way the request's surface expects: by the renderer registered for the
    longest matching path prefix, else in the envelope."""
    app = request.scope.get("app")
    renderers: tuple[tuple[str, ErrorRenderer], ...] = (
        getattr(app.state, "error_renderers", ()) if app is not None else ()
    )
    path: str = request.scope.get("path", "")
    for prefix, renderer in renderers:
        if _matches_prefix(path, prefix):
            return renderer(request, report)
    return render_envelope(request, report)


_STATUS_ERRORS: dict[int, type[ParleyError]] = {
    400: BadRequest,
    401: NotAuthenticated,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    429: RateLimited,
    503: ServiceUnavailable,
}


def _field_name(location: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in location)


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """Pydantic/FastAPI validation errors as `{"field", "message"}` items (never the input)."""
    return [
        {"field": _field_name(error.get("loc", ())), "message": str(error.get("msg", "invalid"))}
        for error in errors
    ]


async def _handle_parley_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ParleyError)  # noqa: S101 - registered for this type only
    if exc.status_code >= 500:
        logger.error("request failed: %s", exc.code, exc_info=exc)
    return render_error(request, ErrorReport.of(exc))


async def _handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    error = ValidationFailed(details=validation_details(exc.errors()))
    return render_error(request, ErrorReport.of(error, cause=exc))


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
        # The framework answers a body it cannot decode (not UTF-8, nested past the parser's
        # depth) with a bare 400, but an undecodable JSON body with a 422: both are invalid JSON.
        invalid = ValidationFailed.for_field("body", "The body is not valid JSON.")
        return render_error(request, ErrorReport.of(invalid, cause=exc))
    error_type = _STATUS_ERRORS.get(
        exc.status_code, InternalError if exc.status_code >= 500 else BadRequest
    )
    report = ErrorReport(
        status_code=exc.status_code,
        code=error_type.code,
        message=error_type.default_message,
        headers=dict(exc.headers or {}),
        cause=exc,
    )
    return render_error(request, report)


async def _handle_redis_down(request: Request, exc: Exception) -> Response:
    # Redis is configured but unreachable: what needs it (shared rate limits, a reply's event
    # log) is unavailable for now, which is a 503 rather than a failure of our own.
    logger.warning("redis is unavailable: %s", type(exc).__name__)
    return render_error(request, ErrorReport.of(ServiceUnavailable(), cause=exc))


async def _handle_database_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DBAPIError)  # noqa: S101 - registered for this type only
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        # SQLite busy past its timeout, a PostgreSQL connection lost or refused: the database is
        # unavailable for the moment, which a client can retry; nothing was half-written (the
        # transaction rolled back).
        logger.warning("database unavailable: %s", type(exc.orig).__name__)
        return render_error(request, ErrorReport.of(_database_unavailable(), cause=exc))
    logger.error("database error", exc_info=exc)
    return render_error(request, ErrorReport.of(InternalError(), cause=exc))


def _database_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The database is busy or unavailable; try again in a moment.",
        headers={"Retry-After": "1"},
    )


async def _handle_pool_timeout(request: Request, exc: Exception) -> Response:
    # Every connection of the pool stayed taken past DB_POOL_TIMEOUT_SECONDS: the worker is
    # overloaded for the moment, and the request had not begun to write.
    logger.warning("database pool exhausted: %s", exc)
    return render_error(request, ErrorReport.of(_database_unavailable(), cause=exc))


def install_error_handlers(
    app: FastAPI,
    renderers: Mapping[str, ErrorRenderer] | None = None,
    *,
    redis_errors: bool = False,
) -> None:
    """Render every error raised inside the app in the envelope, or, under a path prefix given in
    `renderers`, by that prefix's renderer.

    Unhandled exceptions are turned into a 500 `internal_error` by the outermost middleware
    (`parley.core.middleware.RequestContextMiddleware`), so that they carry `X-Trace-Id` too; it
    and the body limit render through `render_error` as well.

    Args:
        app: the app.
        renderers: error renderers by path prefix (`{"/v1": ...}`); the longest prefix wins.
        redis_errors: Redis is configured: its connection errors and timeouts are a 503 (the
            client library is imported only then).
    """
    app.state.error_renderers = tuple(
        sorted((renderers or {}).items(), key=lambda item: len(item[0]), reverse=True)
    )
    app.add_exception_handler(ParleyError, _handle_parley_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(DBAPIError, _handle_database_error)
    app.add_exception_handler(PoolTimeoutError, _handle_pool_timeout)
    if redis_errors:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        app.add_exception_handler(RedisConnectionError, _handle_redis_down)
        app.add_exception_handler(RedisTimeoutError, _handle_redis_down)


def error_responses(*errors: type[ParleyError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the errors a route may raise (422 is always documented)."""
    responses: dict[int | str, dict[str, Any]] = {}
    documented: tuple[type[ParleyError], ...] = (*errors, ValidationFailed)
    for error in documented:
        entry = responses.setdefault(error.status_code, {"model": ErrorEnvelope, "description": ""})
        codes = entry["description"].split(", ") if entry["description"] else []
        if error.code not in codes:
            codes.append(error.code)
        entry["description"] = ", ".join(codes)
    return responses
