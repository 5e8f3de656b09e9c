"""The machine-facing endpoints of Parley's authorization server, for MCP clients:

- `GET /.well-known/oauth-protected-resource` and `.../oauth-protected-resource/mcp`: RFC 9728
  protected-resource metadata of `/mcp`.
- `GET /.well-known/oauth-authorization-server`: RFC 8414 authorization-server metadata.
- `POST /oauth/register`: RFC 7591 dynamic client registration (the SDK's `RegistrationHandler`).
- `POST /oauth/token`: the `authorization_code` and `refresh_token` grants (the SDK's
  `TokenHandler`), with RFC 6749 section 5.2 errors and `Cache-Control: no-store`.

`parley.oauth.server` routes requests here (this module is imported with the first of them, as
it imports the MCP SDK). The handlers are wrapped as the SDK wraps them (CORS open to any
origin, so that a browser-based client such as the MCP Inspector can call them; none of them
reads a cookie). The documents name `<base>`, the origin each request reached
(`parley.oauth.tokens.base_url`), so the same server answers correctly on loopback, on a LAN
name or behind a trusted proxy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mcp.server.auth.handlers.register import RegistrationHandler
from mcp.server.auth.handlers.token import TokenHandler
from mcp.server.auth.middleware.client_auth import AuthenticationError, ClientAuthenticator
from mcp.server.auth.routes import cors_middleware
from mcp.server.auth.settings import ClientRegistrationOptions
from mcp.shared.auth import OAuthClientInformationFull, OAuthMetadata, ProtectedResourceMetadata
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from parley.core.errors import ParleyError
from parley.core.ratelimit import RateLimiter
from parley.core.responses import error_response
from parley.oauth.provider import SUPPORTED_AUTH_METHODS, ParleyOAuthProvider
from parley.oauth.tokens import base_url, resource_url
from parley.settings import Settings

MAX_REGISTRATION_BYTES = 16 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
GRANT_TYPES = ("authorization_code", "refresh_token")


def authorization_server_metadata(request: Request) -> OAuthMetadata:
    """RFC 8414 metadata of the authorization server at the request's origin."""
    base = base_url(request)
    # Validated from strings, so that the models keep an empty path empty: RFC 8414 compares
    # the issuer as a string, and `AnyHttpUrl(base)` would add a slash.
    return OAuthMetadata.model_validate(
        {
            "issuer": base,
            "authorization_endpoint": f"{base}/oauth/authorize",
            "token_endpoint": f"{base}/oauth/token",
            "registration_endpoint": f"{base}/oauth/register",
            "response_types_supported": ["code"],
            "grant_types_supported": list(GRANT_TYPES),
            "token_endpoint_auth_methods_supported": list(SUPPORTED_AUTH_METHODS),
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "service_documentation": f"{base}/docs",
        }
    )


def protected_resource_metadata(request: Request) -> ProtectedResourceMetadata:
    """RFC 9728 metadata of `/mcp` at the request's origin."""
    return ProtectedResourceMetadata.model_validate(
        {
            "resource": resource_url(request),
            "authorization_servers": [base_url(request)],
            "bearer_methods_supported": ["header"],
            "resource_name": "Parley",
        }
    )


def _json(model: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        model.model_dump(mode="json", exclude_none=True), status_code=status_code, headers=headers
    )


async def _authorization_server(request: Request) -> Response:
    return _json(authorization_server_metadata(request))


async def _protected_resource(request: Request) -> Response:
    return _json(protected_resource_metadata(request))


class ClientSecretAuthenticator(ClientAuthenticator):
    """The token endpoint's client check, against Parley's stored clients: a public client
    (`none`) sends only its `client_id`; a confidential one (`client_secret_post`) also its
    secret, compared with the stored hash (the SDK's own authenticator compares clear text)."""

    provider: ParleyOAuthProvider

    def __init__(self, provider: ParleyOAuthProvider) -> None:
        super().__init__(provider)
        self.provider = provider

    async def authenticate_request(self, request: Request) -> OAuthClientInformationFull:
        form = await request.form()
        client_id = form.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise AuthenticationError("Missing client_id")
        client = await self.provider.get_client_record(client_id)
        if client is None:
            raise AuthenticationError("Invalid client_id")
        if client.token_endpoint_auth_method != "none":
            secret = form.get("client_secret")
            if not await self.provider.client_secret_matches(
                client, secret if isinstance(secret, str) else None
            ):
                raise AuthenticationError("Invalid client_secret")
        return self.provider.information(client)


def _token_error(error: str, description: str, status_code: int = 400) -> Response:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status_code,
        headers=NO_STORE,
    )


def oauth_handlers(
    provider: ParleyOAuthProvider, settings: Settings, limiter: Callable[[], RateLimiter]
) -> dict[str, ASGIApp]:
    """The endpoints above by name (`parley.oauth.server.ROUTES`), over `provider`; `limiter()`
    is the running app's rate limiter."""
    registration = RegistrationHandler(provider, ClientRegistrationOptions(enabled=True))
    tokens = TokenHandler(provider, ClientSecretAuthenticator(provider))

    async def register(request: Request) -> Response:
        client_ip = request.client.host if request.client else "unknown"
        rate_limiter = limiter()
        try:
            await rate_limiter.hit(
                f"oauth-register:ip:{client_ip}", settings.rate_limit_login_per_minute
            )
        except ParleyError as exc:
            return error_response(exc)
        body = await request.body()  # kept by Starlette: the SDK's handler reads it again
        if len(body) > MAX_REGISTRATION_BYTES:
            return JSONResponse(
                {
                    "error": "invalid_client_metadata",
                    "error_description": f"The metadata is over {MAX_REGISTRATION_BYTES} bytes.",
                },
                status_code=400,
            )
        try:
            json.loads(body)
        except ValueError:
            return JSONResponse(
                {"error": "invalid_client_metadata", "error_description": "The body is not JSON."},
                status_code=400,
            )
        response = await registration.handle(request)
        response.headers.update(NO_STORE)  # it may carry a client secret
        return response

    async def token(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return _token_error("invalid_request", "The body must be form-encoded.")
        form = await request.form()
        grant_type = form.get("grant_type")
        if not grant_type:
            return _token_error("invalid_request", "grant_type is required.")
        if grant_type not in GRANT_TYPES:
            return _token_error(
                "unsupported_grant_type", "Only authorization_code and refresh_token are supported."
            )
        response: Response = await tokens.handle(request)
        return response

    metadata = cors_middleware(_protected_resource, ["GET", "OPTIONS"])
    return {
        "authorization_server": cors_middleware(_authorization_server, ["GET", "OPTIONS"]),
        "protected_resource": metadata,
        "protected_resource_mcp": metadata,
        "register": cors_middleware(register, ["POST", "OPTIONS"]),
        "token": cors_middleware(token, ["POST", "OPTIONS"]),
    }
