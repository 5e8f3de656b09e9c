"""The one error tree: every failure a client may see, with its HTTP status and stable code.

Services raise these; `parley.core.responses` renders them in the envelope in one place. Routes list
the errors they may raise in OpenAPI with `error_responses(...)`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ParleyError(Exception):
    """Base of every error a client may see.

    Attributes:
        status_code: the HTTP status.
        code: the stable snake_case code in the error body.
        message: a sentence for a person.
        details: optional structured details (validation errors: `{"field", "message"}` items).
        headers: extra response headers (for example `Retry-After`).
    """

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "Something went wrong on our side."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        self.headers = headers or {}
        super().__init__(self.message)


class BadRequest(ParleyError):
    """The request is well-formed but cannot be acted on."""

    status_code = 400
    code = "bad_request"
    default_message = "The request cannot be processed."


class CorsNotAllowed(BadRequest):
    """A CORS preflight that `CORS_ORIGINS` and the allowed methods and headers refuse; `details`
    names each refused part. The subclasses name the first of them (origin, method, headers)."""

    code = "cors_not_allowed"
    default_message = "This cross-origin request is not allowed."


class CorsOriginNotAllowed(CorsNotAllowed):
    """The preflight's `Origin` is not in `CORS_ORIGINS`."""

    code = "cors_origin_not_allowed"
    default_message = "Cross-origin requests from this origin are not allowed."


class CorsMethodNotAllowed(CorsNotAllowed):
    """The preflight asks for a method cross-origin requests may not use."""

    code = "cors_method_not_allowed"
    default_message = "Cross-origin requests may not use this method."


class CorsHeadersNotAllowed(CorsNotAllowed):
    """The preflight asks for a header cross-origin requests may not send."""

    code = "cors_headers_not_allowed"
    default_message = "Cross-origin requests may not send one of these headers."


class InvalidRequest(BadRequest):
    """A request OpenAI's API would refuse too (a bad combination of arguments, an argument the
    model cannot honour, messages too long for the model); `param` names the argument and
    `openai_code` is OpenAI's code for it, if any (`context_length_exceeded`)."""

    code = "invalid_request"

    def __init__(
        self, message: str, *, param: str | None = None, openai_code: str | None = None
    ) -> None:
        super().__init__(message, details=[{"field": param or "", "message": message}])
        self.param = param
        self.openai_code = openai_code


class NotAuthenticated(ParleyError):
    """No credentials were sent."""

    status_code = 401
    code = "not_authenticated"
    default_message = "Authentication is required."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class InvalidToken(NotAuthenticated):
    """The token or API key is malformed, expired, revoked, or its user may no longer sign in."""

    code = "invalid_token"
    default_message = "The token is invalid or has expired."


class InvalidCredentials(NotAuthenticated):
    """The email and password do not match an account."""

    code = "invalid_credentials"
    default_message = "The email or password is incorrect."


class BudgetExceeded(ParleyError):
    """The user's monthly budget is spent."""

    status_code = 402
    code = "budget_exceeded"
    default_message = "Your monthly budget is spent."


class Forbidden(ParleyError):
    """Authenticated, but not allowed (for example, not an admin)."""

    status_code = 403
    code = "forbidden"
    default_message = "You are not allowed to do this."


class NotFound(ParleyError):
    """No such resource, or not the caller's: the two are indistinguishable on purpose."""

    status_code = 404
    code = "not_found"
    default_message = "Not found."


class MethodNotAllowed(ParleyError):
    """The path exists but not with this method."""

    status_code = 405
    code = "method_not_allowed"
    default_message = "This method is not allowed here."


class Conflict(ParleyError):
    """The request conflicts with the current state (duplicate email, stream in progress, ...)."""

    status_code = 409
    code = "conflict"
    default_message = "The request conflicts with the current state."


class PayloadTooLarge(ParleyError):
    """The request body is over `MAX_BODY_BYTES`."""

    status_code = 413
    code = "payload_too_large"
    default_message = "The request body is too large."


class StorageQuotaExceeded(PayloadTooLarge):
    """The upload would take the user's stored files past `USER_STORAGE_QUOTA_BYTES`."""

    code = "storage_quota_exceeded"
    default_message = "This upload would exceed your storage quota."


class UnsupportedMediaType(ParleyError):
    """The uploaded file is of a type Parley does not accept (or is not what it claims)."""

    status_code = 415
    code = "unsupported_media_type"
    default_message = "This type of file is not supported."


class ValidationFailed(ParleyError):
    """The input is invalid; `details` says where."""

    status_code = 422
    code = "validation_error"
    default_message = "The request is invalid."

    @classmethod
    def for_field(cls, field: str, message: str) -> ValidationFailed:
        """One invalid field, named as in the framework's own validation errors."""
        return cls(message, details=[{"field": field, "message": message}])


class RateLimited(ParleyError):
    """Too many requests; `Retry-After` says when to try again."""

    status_code = 429
    code = "rate_limited"
    default_message = "Too many requests; try again later."

    def __init__(self, retry_after_seconds: int, message: str | None = None) -> None:
        self.retry_after_seconds = max(1, int(retry_after_seconds))
        super().__init__(message, headers={"Retry-After": str(self.retry_after_seconds)})


class InternalError(ParleyError):
    """An unexpected failure; never carries internals."""


class ServiceUnavailable(ParleyError):
    """A dependency Parley needs is down."""

    status_code = 503
    code = "service_unavailable"
    default_message = "The service is temporarily unavailable."


class ProviderError(ParleyError):
    """The model provider failed or answered something unusable (including a key it refused)."""

    status_code = 502
    code = "provider_error"
    default_message = "The model provider returned an error."


class ProviderUnavailable(ParleyError):
    """The model provider cannot be reached, is overloaded, or is rate-limiting Parley."""

    status_code = 503
    code = "provider_unavailable"
    default_message = "The model provider is unavailable; try again shortly."


class ProviderTimeout(ParleyError):
    """The model provider did not answer in time."""

    status_code = 504
    code = "provider_timeout"
    default_message = "The model provider did not answer in time."
