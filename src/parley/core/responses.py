"""The REST envelope: `{"trace_id", "data"}` on success, `{"trace_id", "error"}` on failure.

`ok(...)` wraps a payload; `install_error_handlers(app)` renders every error — Parley's own, the
framework's 404/405/422 and anything unexpected — in the envelope, in this one place.
`error_responses(...)` documents a route's errors in OpenAPI.
"""

from __future__ import annotations

import logging
from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field
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


async def _handle_parley_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ParleyError)  # noqa: S101 - registered for this type only
    if exc.status_code >= 500:
        logger.error("request failed: %s", exc.code, exc_info=exc)
    return error_response(exc)


async def _handle_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    return error_response(ValidationFailed(details=validation_details(exc.errors())))


async def _handle_http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    error_type = _STATUS_ERRORS.get(
        exc.status_code, InternalError if exc.status_code >= 500 else BadRequest
    )
    return Response(
        content=error_body(error_type.code, error_type.default_message),
        status_code=exc.status_code,
        headers=dict(exc.headers or {}),
        media_type="application/json",
    )


def install_error_handlers(app: FastAPI) -> None:
    """Render every error raised inside the app in the envelope.

    Unhandled exceptions are turned into a 500 `internal_error` by the outermost middleware
    (`parley.core.middleware.RequestContextMiddleware`), so that they carry `X-Trace-Id` too.
    """
    app.add_exception_handler(ParleyError, _handle_parley_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)


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
