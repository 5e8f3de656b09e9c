"""`GET/POST /oauth/authorize`: the sign-in and consent page of the authorization-code flow.

The request is checked in the order RFC 6749 section 4.1.2.1 requires. A missing or unknown
`client_id`, or a `redirect_uri` that is not one of the client's (`parley.oauth.redirects`), is
shown on the page and never redirected: redirecting to an unchecked URI would make Parley an open
redirector. Any other fault (`response_type`, PKCE, `resource`, `scope`) is sent back to the
client's redirect URI as `error=...` with its `state`.

The page is server-rendered HTML, every value escaped, with no script and no external asset, and
may not be framed (against clickjacking). Its form carries the request's parameters and a CSRF
token: an HMAC, under the app's key, of those parameters and the time the page was made, so a
posted form is honoured only for the request it was shown for and for `CSRF_TTL_SECONDS`. The user
signs in with email and password (the same check, rate limits and equal-time answer as
`POST /api/auth/login`) and chooses Allow, which redirects with a single-use `code` (and `state`,
and `iss` per RFC 9207), or Deny, which redirects with `error=access_denied`.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from parley.accounts.dependencies import account_service_of
from parley.core.dependencies import database_of, settings_of
from parley.core.errors import Forbidden, InvalidCredentials, RateLimited
from parley.oauth.models import OAuthClient
from parley.oauth.redirects import matches_registered
from parley.oauth.tokens import MAX_SCOPE_CHARS, base_url, resource_url

if TYPE_CHECKING:
    from parley.oauth.provider import ParleyOAuthProvider

CSRF_TTL_SECONDS = 600
MAX_PARAM_CHARS = 2048
MAX_EMAIL_CHARS = 320
MAX_PASSWORD_CHARS = 128
# RFC 7636 section 4.2: an S256 challenge is base64url, 43 characters; allow the full range.
CODE_CHALLENGE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
PARAMS = ("response_type", "client_id", "redirect_uri", "state", "code_challenge",
          "code_challenge_method", "resource", "scope")  # fmt: skip
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
}

consent_router = APIRouter(prefix="/oauth", tags=["oauth"])


def provider_of(request: Request) -> ParleyOAuthProvider:
    """The running app's OAuth provider (made, and the MCP SDK imported, on first use)."""
    provider: ParleyOAuthProvider = request.app.state.oauth.provider
    return provider


def redirect_location(redirect_uri: str, **params: str | None) -> str:
    """`redirect_uri` with `params` added to its query (RFC 6749 section 4.1.2: the client's own
    query parameters are kept)."""
    parts = urlsplit(redirect_uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.extend((name, value) for name, value in params.items() if value is not None)
    return parts._replace(query=urlencode(query)).geturl()


@dataclass(frozen=True)
class AuthorizationRequest:
    """The parameters of an authorization request, each bounded (a longer one is dropped)."""

    values: dict[str, str]

    @classmethod
    def from_mapping(cls, source: Any) -> AuthorizationRequest:
        values: dict[str, str] = {}
        for name in PARAMS:
            value = source.get(name)
            if isinstance(value, str) and value and len(value) <= MAX_PARAM_CHARS:
                values[name] = value
        return cls(values)

    def get(self, name: str) -> str | None:
        return self.values.get(name)


def _csrf_token(key: str, params: AuthorizationRequest, issued: int) -> str:
    message = "\x1f".join([str(issued), *(params.get(name) or "" for name in PARAMS)])
    digest = hmac.new(key.encode(), b"oauth-consent\x1f" + message.encode(), hashlib.sha256)
    return f"{issued}.{digest.hexdigest()}"


def _csrf_valid(key: str, params: AuthorizationRequest, token: object) -> bool:
    if not isinstance(token, str) or len(token) > 100 or "." not in token:
        return False
    issued_text = token.split(".", 1)[0]
    if not issued_text.isdigit():
        return False
    issued = int(issued_text)
    if not 0 <= time.time() - issued <= CSRF_TTL_SECONDS:
        return False
    return hmac.compare_digest(token, _csrf_token(key, params, issued))


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · Parley</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 26rem; margin: 3rem auto; padding: 0 1rem;
  color: #1f2328; }}
h1 {{ font-size: 1.3rem; }} label {{ display: block; margin: .8rem 0 .2rem; }}
input[type=email], input[type=password] {{ width: 100%; padding: .5rem; box-sizing: border-box; }}
.actions {{ margin-top: 1.2rem; display: flex; gap: .6rem; }}
button {{ padding: .5rem 1.1rem; }} .error {{ color: #b42318; }} .muted {{ color: #59636e; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{body}
</body></html>"""
    return HTMLResponse(document, status_code=status_code, headers=PAGE_HEADERS)


def _error_page(message: str, status_code: int = 400) -> HTMLResponse:
    return _page(
        "Authorization failed",
        f'<p class="error">{html.escape(message)}</p>'
        '<p class="muted">The application that sent you here is misconfigured; nothing was '
        "shared with it.</p>",
        status_code,
    )


def _consent_page(
    request: Request,
    client: OAuthClient,
    params: AuthorizationRequest,
    *,
    error: str | None = None,
    email: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    key = settings_of(request).jwt_key
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
        for name, value in params.values.items()
    )
    csrf = html.escape(_csrf_token(key, params, int(time.time())))
    name = html.escape(client.client_name or "An MCP application")
    redirect = html.escape(params.get("redirect_uri") or "")
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = f"""<p><strong>{name}</strong> wants to use your Parley account over MCP: read and
change your tasks with your tools, as you.</p>
<p class="muted">It will be sent back to <code>{redirect}</code>.</p>
{message}
<form method="post" action="/oauth/authorize">
{hidden}<input type="hidden" name="csrf_token" value="{csrf}">
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" value="{html.escape(email)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password">
<div class="actions">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</div></form>"""
    return _page("Connect an application to Parley", body, status_code)


def _redirect(redirect_uri: str, **params: str | None) -> Response:
    return RedirectResponse(
        redirect_location(redirect_uri, **params),
        status_code=302,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


async def _checked_client(
    request: Request, params: AuthorizationRequest
) -> tuple[OAuthClient | None, Response | None]:
    """The client and its redirect URI, or the error page that must be shown instead."""
    client_id = params.get("client_id")
    if client_id is None:
        return None, _error_page("The request names no client_id.")
    client = await provider_of(request).get_client_record(client_id)
    if client is None:
        return None, _error_page("No such client is registered.")
    redirect_uri = params.get("redirect_uri")
    if redirect_uri is None:
        return None, _error_page("The request names no redirect_uri.")
    if not matches_registered(redirect_uri, list(client.redirect_uris)):
        return None, _error_page("The redirect_uri is not one this client registered.")
    return client, None


def _request_fault(request: Request, params: AuthorizationRequest) -> tuple[str, str] | None:
    """The RFC 6749 error (and its description) of a request with a good client, or None."""
    if params.get("response_type") != "code":
        return "unsupported_response_type", "response_type must be code."
    challenge = params.get("code_challenge")
    if challenge is None:
        return "invalid_request", "code_challenge is required (PKCE)."
    if params.get("code_challenge_method") != "S256":
        return "invalid_request", "code_challenge_method must be S256."
    if not CODE_CHALLENGE.fullmatch(challenge):
        return "invalid_request", "code_challenge is not a valid S256 challenge."
    resource = params.get("resource")
    if resource is not None and resource != resource_url(request):
        return "invalid_target", f"resource must be {resource_url(request)}."
    scope = params.get("scope")
    if scope is not None and len(scope) > MAX_SCOPE_CHARS:
        return "invalid_scope", "scope is too long."
    return None


def _fault_redirect(
    request: Request, params: AuthorizationRequest, fault: tuple[str, str]
) -> Response:
    return _redirect(
        params.values["redirect_uri"],
        error=fault[0],
        error_description=fault[1],
        state=params.get("state"),
        iss=base_url(request),
    )


@consent_router.get(
    "/authorize",
    response_class=HTMLResponse,
    summary="Sign in and allow an MCP client",
    responses={
        302: {"description": "Back to the client's redirect URI with `error`."},
        400: {
            "description": "An unknown client or redirect URI, shown on the page.",
            "content": {"text/html": {}},
        },
    },
)
async def authorize_page(request: Request) -> Response:
    """The authorization endpoint (RFC 6749 section 4.1.1, PKCE S256 required): a sign-in and
    consent page for the query's `client_id`, `redirect_uri`, `state`, `code_challenge`,
    `code_challenge_method`, `resource` and `scope`."""
    params = AuthorizationRequest.from_mapping(request.query_params)
    client, refusal = await _checked_client(request, params)
    if refusal is not None or client is None:
        return refusal or _error_page("No such client is registered.")
    fault = _request_fault(request, params)
    if fault is not None:
        return _fault_redirect(request, params, fault)
    return _consent_page(request, client, params)


@consent_router.post(
    "/authorize",
    response_class=HTMLResponse,
    summary="Answer the consent page",
    responses={
        302: {"description": "Back to the client's redirect URI with `code` or `error`."},
        400: {
            "description": "An unknown client or redirect URI, or a stale form.",
            "content": {"text/html": {}},
        },
        401: {
            "description": "Wrong email or password: the page again.",
            "content": {"text/html": {}},
        },
        403: {"description": "The account is deactivated.", "content": {"text/html": {}}},
        429: {"description": "Too many sign-in attempts.", "content": {"text/html": {}}},
    },
)
async def authorize_decision(request: Request) -> Response:
    """The consent page's form: `decision` `allow` (with `email` and `password`) or `deny`."""
    form = await request.form()
    params = AuthorizationRequest.from_mapping(form)
    client, refusal = await _checked_client(request, params)
    if refusal is not None or client is None:
        return refusal or _error_page("No such client is registered.")
    fault = _request_fault(request, params)
    if fault is not None:
        return _fault_redirect(request, params, fault)
    settings = settings_of(request)
    if not _csrf_valid(settings.jwt_key, params, form.get("csrf_token")):
        return _error_page("This page has expired or was not made by Parley. Start again.")
    redirect_uri = params.values["redirect_uri"]
    state = params.get("state")
    if form.get("decision") != "allow":
        return _redirect(redirect_uri, error="access_denied", state=state, iss=base_url(request))
    raw_email, password = form.get("email"), form.get("password")
    email = raw_email.strip().lower() if isinstance(raw_email, str) else ""
    if not isinstance(password, str):
        password = ""
    shown_email = email if len(email) <= MAX_EMAIL_CHARS else ""
    client_ip = request.client.host if request.client else "unknown"
    try:
        if not email or "\x00" in email or len(email) > MAX_EMAIL_CHARS:
            raise InvalidCredentials()
        if len(password) > MAX_PASSWORD_CHARS:
            raise InvalidCredentials()
        async with database_of(request).sessionmaker() as session:
            user = await account_service_of(request, session).check_password(
                email=email, password=password, client_ip=client_ip
            )
    except RateLimited as exc:
        return _consent_page(
            request,
            client,
            params,
            error=f"Too many attempts; try again in {exc.retry_after_seconds} seconds.",
            email=shown_email,
            status_code=429,
        )
    except InvalidCredentials:
        return _consent_page(
            request, client, params, error="The email or password is incorrect.",
            email=shown_email, status_code=401,
        )  # fmt: skip
    except Forbidden:
        return _consent_page(
            request, client, params, error="This account is deactivated.", status_code=403
        )
    code = await provider_of(request).issue_code(
        client,
        user_id=user.id,
        redirect_uri=redirect_uri,
        code_challenge=params.values["code_challenge"],
        resource=resource_url(request),
        scope=params.get("scope"),
    )
    return _redirect(redirect_uri, code=code, state=state, iss=base_url(request))
