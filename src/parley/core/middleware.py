"""Pure-ASGI middleware: request context (trace span, ids, security headers, access log,
last-resort 500), the request body limit, and CORS whose refusals are errors like any other.

Pure ASGI rather than `BaseHTTPMiddleware`, so streaming responses pass through untouched and the
trace context set here is the one the route sees.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.core.errors import (
    CorsHeadersNotAllowed,
    CorsMethodNotAllowed,
    CorsNotAllowed,
    CorsOriginNotAllowed,
    InternalError,
    ParleyError,
    PayloadTooLarge,
)
from parley.core.logging import request_id_var
from parley.core.responses import ErrorReport, render_error
from parley.core.telemetry import format_trace_id, server_span

logger = logging.getLogger("parley.request")
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


async def _send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _rendered_body(scope: Scope, error: ParleyError) -> bytes:
    """The error's body as the request's surface renders it (the envelope, or e.g. OpenAI's)."""
    return bytes(render_error(Request(scope), ErrorReport.of(error)).body)


class RequestContextMiddleware:
    """Outermost middleware: one server span per request, `X-Trace-Id` and `X-Request-Id` and the
    security headers on every response, an access log line, and a 500 for anything unhandled (in
    the envelope, or in the error format registered for the path's surface).

    An incoming W3C `traceparent` is honoured: the span joins that trace.

    The security headers are the standard ones, with a strict CSP on everything but the HTML pages
    (`/`, `/docs`, `/redoc`), which set their own; a header a route set itself is kept. They are
    added here, with the ids, rather than by a middleware of their own: each layer wraps `send`,
    and a streamed reply passes every chunk through every wrapper.

    Args:
        hsts: also send `Strict-Transport-Security` (production, behind TLS).
    """

    _SECURITY_HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    )
    _API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
    _HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
    _STRICT_CSP_PREFIXES = ("/api", "/v1", "/health", "/mcp")

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self._page_headers = self._SECURITY_HEADERS + ((self._HSTS,) if hsts else ())
        self._api_headers = (*self._page_headers, self._API_CSP)

    def _headers_for(self, path: str) -> tuple[tuple[bytes, bytes], ...]:
        return (
            self._api_headers if path.startswith(self._STRICT_CSP_PREFIXES) else self._page_headers
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in scope.get("headers", [])
        }
        incoming_request_id = carrier.get("x-request-id", "")
        request_id = (
            incoming_request_id
            if _REQUEST_ID_PATTERN.match(incoming_request_id)
            else uuid.uuid4().hex
        )
        method = scope.get("method", "GET")
        path = scope.get("path", "")
        started_at = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "started": False}
        security_headers = self._headers_for(path)

        span = server_span(
            f"{method} {path}", carrier, {"http.request.method": method, "url.path": path}
        )
        with trace.use_span(
            span, end_on_exit=True, record_exception=False, set_status_on_exception=False
        ):
            trace_id = format_trace_id(span.get_span_context().trace_id)
            id_headers = [
                (b"x-trace-id", trace_id.encode()),
                (b"x-request-id", request_id.encode()),
            ]
            token = request_id_var.set(request_id)

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    state["started"] = True
                    state["status"] = message["status"]
                    message["headers"] = _with_headers(
                        message.get("headers", ()), id_headers, security_headers
                    )
                await send(message)

            try:
                await self.app(scope, receive, send_with_headers)
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                logger.exception("unhandled error", extra={"path": path, "method": method})
                if not state["started"]:
                    await _send_json(
                        send,
                        500,
                        _rendered_body(scope, InternalError()),
                        [*id_headers, *security_headers],
                    )
                    state["status"] = 500
            finally:
                route = scope.get("route")
                route_path = getattr(route, "path", None)
                if route_path:
                    span.update_name(f"{method} {route_path}")
                    span.set_attribute("http.route", route_path)
                span.set_attribute("http.response.status_code", state["status"])
                if state["status"] >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                logger.info(
                    "%s %s %s",
                    method,
                    path,
                    state["status"],
                    extra={
                        "status": state["status"],
                        "duration_ms": round((time.perf_counter() - started_at) * 1000, 2),
                    },
                )
                request_id_var.reset(token)


def _with_headers(
    headers: Iterable[tuple[bytes, bytes]],
    replacing: list[tuple[bytes, bytes]],
    defaults: tuple[tuple[bytes, bytes], ...],
) -> list[tuple[bytes, bytes]]:
    """A response's headers with `replacing` set (any of the same name dropped) and `defaults`
    added where the response has no header of that name (ASGI header names are lower-case)."""
    replaced = {name for name, _ in replacing}
    kept = [(name, value) for name, value in headers if name not in replaced]
    present = {name for name, _ in kept}
    return kept + replacing + [header for header in defaults if header[0] not in present]


class _BodyTooLargeError(StarletteHTTPException):
    """Raised from `receive` once a body passes the limit.

    An HTTP exception, so that the framework's body parsing passes it on as a 413 rather than
    turning it into a 400 "error parsing the body".
    """

    def __init__(self) -> None:
        super().__init__(status_code=413)


class BodyLimitMiddleware:
    """Refuses a body over `max_bytes` with 413, without reading it whole.

    A `Content-Length` over the limit is refused before any byte is read; a chunked body is
    counted as it arrives and refused as soon as it passes the limit.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, uploads: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Paths that take uploads, with their own (larger) limit for a POST.
        self.uploads = uploads or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        if scope.get("method") == "POST":
            limit = self.uploads.get(scope.get("path", ""), limit)
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await self._refuse(scope, send)
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLargeError:
            if started:
                raise
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        await _send_json(
            send, 413, _rendered_body(scope, PayloadTooLarge()), [(b"connection", b"close")]
        )


# What Starlette's CORS middleware names in its refusal ("Disallowed CORS origin, method"): the
# error each one is, and the request header it is about.
_CORS_REFUSALS: dict[str, tuple[type[CorsNotAllowed], str, str]] = {
    "origin": (
        CorsOriginNotAllowed,
        "header.origin",
        "This origin is not allowed to call the API.",
    ),
    "method": (
        CorsMethodNotAllowed,
        "header.access-control-request-method",
        "This method is not allowed in cross-origin requests.",
    ),
    "headers": (
        CorsHeadersNotAllowed,
        "header.access-control-request-headers",
        "One of these headers is not allowed in cross-origin requests.",
    ),
    "private-network": (
        CorsNotAllowed,
        "header.access-control-request-private-network",
        "Requests from a public site to this private network are not allowed.",
    ),
}
_CORS_REFUSAL_PREFIX = "Disallowed CORS "


def _cors_refusal(text: str) -> CorsNotAllowed:
    """The error for Starlette's refusal text: the first refused part's, with every refused part
    in `details` (a text Starlette words otherwise is the general `cors_not_allowed`)."""
    names = text.removeprefix(_CORS_REFUSAL_PREFIX).split(", ")
    known = [_CORS_REFUSALS[name] for name in names if name in _CORS_REFUSALS]
    if not text.startswith(_CORS_REFUSAL_PREFIX) or len(known) != len(names):
        return CorsNotAllowed()
    details = [{"field": field, "message": message} for _, field, message in known]
    error_type = known[0][0]
    return error_type(details=details)


class EnvelopedCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware (allowlisted origins only, unchanged), whose refusal of a
    preflight is a 400 in the request's surface's error format (the envelope under `/api`,
    OpenAI's under `/v1`) instead of its plain-text "Disallowed CORS origin".

    The refusal keeps Starlette's CORS headers: no `Access-Control-Allow-Origin` for an origin
    that is not allowed (a browser then shows the page nothing), the allowed origin when only the
    method or a header was refused.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await super().__call__(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if "origin" not in headers or "access-control-request-method" not in headers:
            await super().__call__(scope, receive, send)  # not a preflight
            return
        response = self.preflight_response(request_headers=headers)
        if response.status_code == 400:
            response = self._refusal(scope, response)
        await response(scope, receive, send)

    @staticmethod
    def _refusal(scope: Scope, refused: Response) -> Response:
        error = _cors_refusal(bytes(refused.body).decode("utf-8", "replace"))
        rendered = render_error(Request(scope), ErrorReport.of(error))
        for name, value in refused.headers.items():
            if name not in ("content-type", "content-length"):
                rendered.headers[name] = value
        return rendered
