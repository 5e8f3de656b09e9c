"""Errors on `/v1`, in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` and no
envelope.

`render_openai_error` is registered for the `/v1` prefix with `install_error_handlers`, so every
error there — auth, validation, unknown model or route, body limit, rate limit, budget, provider
failures, the last-resort 500 — is rendered here from the same `ErrorReport` the envelope is made
from. `openai_error_responses(...)` documents a route's errors in OpenAPI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from parley.core.errors import InvalidRequest, NotFound, ParleyError, ValidationFailed
from parley.core.responses import ErrorReport
from parley.gateway.schemas import OpenAIErrorBody, OpenAIErrorInfo

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"


class ModelNotFound(NotFound):
    """The requested model is not an enabled catalog entry."""

    code = "model_not_found"
    default_message = "The model does not exist or you do not have access to it."


def openai_param(location: Sequence[Any]) -> str | None:
    """A validation error's location as OpenAI names parameters: `messages[0].content`."""
    parts = list(location)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        elif not _is_union_tag(str(part)):
            name += f".{part}" if name else str(part)
    return name or None


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "list", "dict", "literal"})


def _is_union_tag(part: str) -> bool:
    """Whether a location part names a union member (`str`, `list[ContentPart]`,
    `NamedToolChoice`, `function-after[...]`) rather than a field: OpenAI's fields are
    lower-case identifiers."""
    return part in _TYPE_TAGS or not part.replace("_", "a").isalnum() or part.lower() != part


def _validation_error(report: ErrorReport) -> tuple[str, str | None, str | None]:
    """Message, param and code of a validation error, in OpenAI's words."""
    cause = report.cause
    if isinstance(cause, RequestValidationError):
        errors = list(cause.errors())
        for error in errors:
            location = tuple(error.get("loc", ()))
            kind = error.get("type")
            if kind == "extra_forbidden" and location:
                return f"Unrecognized request argument supplied: {location[-1]}", None, None
            if kind == "json_invalid":
                return (
                    "We could not parse the JSON body of your request. (HINT: This likely means "
                    "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                    "payload.)",
                    None,
                    None,
                )
        if errors:
            first = errors[0]
            param = openai_param(tuple(first.get("loc", ())))
            if first.get("type") == "missing":
                if param is None:
                    return "We could not parse the JSON body of your request.", None, None
                return (
                    f"Missing required parameter: '{param}'.",
                    param,
                    "missing_required_parameter",
                )
            message = str(first.get("msg", "invalid"))
            return f"Invalid value for '{param}': {message}", param, "invalid_value"
    if isinstance(cause, InvalidRequest):
        return cause.message, cause.param, cause.openai_code
    field = report.details[0]["field"] if report.details else ""
    param = openai_param(field.split(".")) if field else None
    return report.message, param, None


def _route_message(request: Request) -> str:
    return f"Invalid URL ({request.method} {request.url.path})"


def openai_error(report: ErrorReport, request: Request) -> tuple[int, OpenAIErrorInfo]:
    """The status and OpenAI error object of an error report."""
    status = report.status_code
    message: str = report.message
    param: str | None = None
    code: str | None = report.code
    kind = INVALID_REQUEST
    cause = report.cause
    if status in (400, 422) and (
        report.code == ValidationFailed.code or isinstance(cause, InvalidRequest)
    ):
        status = 400
        message, param, code = _validation_error(report)
    elif status == 401:
        code = "invalid_api_key"
        message = (
            "Incorrect API key provided. Use a Parley API key (pk_...) or access token as "
            "'Authorization: Bearer <key>'."
            if report.code != "not_authenticated"
            else "You didn't provide an API key. Send a Parley API key (pk_...) or access token "
            "as 'Authorization: Bearer <key>'."
        )
    elif status == 402:
        kind = "insufficient_quota"
    elif status == 404:
        if report.code == ModelNotFound.code:
            param = "model"
        elif not isinstance(cause, ParleyError):  # no route matched
            message, code = _route_message(request), None
    elif status == 405:
        message = _route_message(request)
    elif status == 429:
        kind, code = "requests", "rate_limit_exceeded"
    elif status >= 500:
        kind = SERVER_ERROR
    return status, OpenAIErrorInfo(message=message, type=kind, param=param, code=code)


def render_openai_error(request: Request, report: ErrorReport) -> Response:
    """The `/v1` renderer: OpenAI's error object with the report's status and headers."""
    status, info = openai_error(report, request)
    return Response(
        content=OpenAIErrorBody(error=info).model_dump_json(),
        status_code=status,
        headers=dict(report.headers),
        media_type="application/json",
    )


def openai_error_event(error: ParleyError) -> bytes:
    """A server-sent event carrying an error, for a stream that fails after it started (the
    `openai` SDK raises it as an `APIError`)."""
    info = OpenAIErrorInfo(
        message=error.message,
        type=SERVER_ERROR if error.status_code >= 500 else INVALID_REQUEST,
        code=error.code,
    )
    return b"data: " + OpenAIErrorBody(error=info).model_dump_json().encode() + b"\n\n"


_DESCRIPTIONS = {
    400: "Invalid request (`invalid_request_error`; `param` names the argument).",
    401: "Missing or invalid API key or token (`invalid_api_key`).",
    402: "The monthly budget is spent (`insufficient_quota`, `budget_exceeded`).",
    404: "Unknown model (`model_not_found`).",
    413: "The request body is too large.",
    429: "Rate limited (`requests`, `rate_limit_exceeded`), with `Retry-After`.",
    502: "The model provider failed (`provider_error`).",
    503: "The model provider is unavailable (`provider_unavailable`).",
    504: "The model provider did not answer in time (`provider_timeout`).",
}


def openai_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a `/v1` route's errors (400 and 401 always; `4XX` stands for the
    rest, and keeps the framework from documenting a 422 that `/v1` never sends)."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": OpenAIErrorBody, "description": _DESCRIPTIONS[status]}
        for status in sorted({400, 401, *statuses})
    }
    responses["4XX"] = {"model": OpenAIErrorBody, "description": "Any other client error."}
    return responses
