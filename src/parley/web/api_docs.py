"""The API's documentation pages, served whole by Parley: nothing comes from a CDN, so they work
with no network, and their Content-Security-Policy allows this origin's scripts only.

- `GET /docs` — Swagger UI (its Authorize button signs in with the password grant)
- `GET /docs/oauth2-redirect` — Swagger UI's OAuth 2 redirect page
- `GET /redoc` — ReDoc
- `GET /docs/assets/{name}` — their scripts, styles and icon

Swagger UI's and ReDoc's files are those the `fastapi-offline` package ships (Swagger UI 5,
ReDoc 2); the pages and the scripts that start them are Parley's (`api_docs_static/`). FastAPI's
own pages load the files from a CDN and start Swagger UI with an inline script; here the page
hands its settings to a script file in a JSON block, so no inline script and no `eval` is
allowed.

ReDoc needs two things more, each for `/redoc` only and as narrow as it goes: it writes `<style>`
elements (allowed by a nonce made for each answer, not `'unsafe-inline'`), and runs its search in
a worker made from a `blob:` URL (`worker-src blob:`). Its bundle is served with two edits, each
checked to apply exactly once: its style elements take the nonce of the `<script>` that loads it
(it sets its webpack nonce to none as it starts, before its first style element), and its
sidebar's Redocly logo, the one thing it loads from a CDN, is an empty image.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from functools import cache
from html import escape
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Request, Response, status
from fastapi import Path as PathParam
from fastapi.openapi.docs import swagger_ui_default_parameters

DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
ASSETS_PATH = "/docs/assets"
OWN_FILES = Path(__file__).parent / "api_docs_static"
# The files of the `fastapi-offline` package that Parley serves (it ships nothing else of use).
PACKAGED_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")

_COMMON_CSP = (
    "default-src 'none'",
    "script-src 'self'",
    # Swagger UI and ReDoc show icons as `data:` images from their style sheets.
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)
ASSET_CSP = "default-src 'none'; frame-ancestors 'none'"
NO_CACHE = "no-cache"
_CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}


def page_csp(style_nonce: str | None = None) -> str:
    """The docs pages' Content-Security-Policy: this origin only, no inline script, no eval.
    With `style_nonce` (ReDoc's page): `<style>` elements with that nonce, and `blob:` workers."""
    if style_nonce is None:
        return "; ".join((*_COMMON_CSP, "style-src 'self'"))
    return "; ".join((*_COMMON_CSP, f"style-src 'self' 'nonce-{style_nonce}'", "worker-src blob:"))


# ReDoc's bundle sets its webpack nonce (what its style elements carry) to none as it starts;
# it takes the loading <script>'s nonce instead. Its sidebar's logo comes from Redocly's CDN.
_REDOC_EDITS = (
    (b"n.nc=void 0;", b"n.nc=(document.currentScript||{}).nonce||void 0;"),
    (
        b'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"',
        b"src:\"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='0' "
        b"height='0'/%3E\"",
    ),
)


class DocsAssetError(RuntimeError):
    """A packaged file is not what Parley expects (a new version of `fastapi-offline`)."""


def _edited_redoc(bundle: bytes) -> bytes:
    for old, new in _REDOC_EDITS:
        if bundle.count(old) != 1:
            raise DocsAssetError(f"redoc.standalone.js: expected {old!r} once; review _REDOC_EDITS")
        bundle = bundle.replace(old, new)
    return bundle


@dataclass(frozen=True)
class DocsAsset:
    """One file, ready to send."""

    body: bytes
    content_type: str
    etag: str


@cache
def docs_assets() -> dict[str, DocsAsset]:
    """Every file the pages load, by name (read once)."""
    packaged = resources.files("fastapi_offline") / "static"
    raw = {name: (packaged / name).read_bytes() for name in PACKAGED_FILES}
    raw["redoc.standalone.js"] = _edited_redoc(raw["redoc.standalone.js"])
    raw.update(
        (path.name, path.read_bytes()) for path in sorted(OWN_FILES.iterdir()) if path.is_file()
    )
    return {
        name: DocsAsset(
            body,
            _CONTENT_TYPES[Path(name).suffix],
            f'"{hashlib.sha256(body).hexdigest()[:32]}"',
        )
        for name, body in raw.items()
    }


def _json_block(element_id: str, value: Any) -> str:
    """A `<script type="application/json">` data block (never run; `<` escaped, so no text in
    it can close the element)."""
    text = json.dumps(value).replace("<", "\\u003c")
    return f'<script id="{element_id}" type="application/json">{text}</script>'


def _page(title: str, head: str, body: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n{head}\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _html(content: str, csp: str) -> Response:
    return Response(
        content,
        media_type="text/html",
        headers={"cache-control": NO_CACHE, "content-security-policy": csp},
    )


def _root(request: Request) -> str:
    root_path: str = request.scope.get("root_path", "")
    return root_path.rstrip("/")


def swagger_ui_page(app: FastAPI, root: str) -> str:
    """The `/docs` page: Swagger UI on the app's schema, started by `swagger-init.js`."""
    assets = f"{root}{ASSETS_PATH}"
    config = {
        **swagger_ui_default_parameters,
        **(app.swagger_ui_parameters or {}),
        "url": f"{root}{app.openapi_url}",
        "oauth2RedirectUrl": f"{root}{OAUTH2_REDIRECT_PATH}",
        # Swagger UI would otherwise show a badge from validator.swagger.io.
        "validatorUrl": None,
    }
    head = "\n".join(
        (
            f'<link rel="icon" type="image/png" href="{assets}/favicon.png">',
            f'<link rel="stylesheet" href="{assets}/swagger-ui.css">',
            _json_block("swagger-ui-config", config),
        )
    )
    body = "\n".join(
        (
            '<div id="swagger-ui"></div>',
            f'<script src="{assets}/swagger-ui-bundle.js"></script>',
            f'<script src="{assets}/swagger-init.js"></script>',
        )
    )
    return _page(f"{app.title} - Swagger UI", head, body)


def redoc_page(app: FastAPI, root: str, nonce: str) -> str:
    """The `/redoc` page: ReDoc on the app's schema, started by `redoc-init.js`."""
    assets = f"{root}{ASSETS_PATH}"
    # No Google Fonts (FastAPI's default): ReDoc falls back to the system's fonts.
    config = {"specUrl": f"{root}{app.openapi_url}", "options": {}}
    head = "\n".join(
        (
            f'<link rel="icon" type="image/png" href="{assets}/favicon.png">',
            f'<link rel="stylesheet" href="{assets}/redoc.css">',
            _json_block("redoc-config", config),
        )
    )
    body = "\n".join(
        (
            '<div id="redoc"></div>',
            # The nonce is for the style elements it writes (see _REDOC_EDITS).
            f'<script nonce="{nonce}" src="{assets}/redoc.standalone.js"></script>',
            f'<script src="{assets}/redoc-init.js"></script>',
        )
    )
    return _page(f"{app.title} - ReDoc", head, body)


def oauth2_redirect_page(root: str) -> str:
    """Swagger UI's OAuth 2 redirect page, its script a file."""
    body = "\n".join(
        (
            '<p id="status">Completing the sign-in…</p>',
            f'<script src="{root}{ASSETS_PATH}/oauth2-redirect.js"></script>',
        )
    )
    return _page("Swagger UI: OAuth2 Redirect", "", body)


api_docs_router = APIRouter(include_in_schema=False)


@api_docs_router.get(DOCS_PATH)
async def swagger_ui(request: Request) -> Response:
    """Swagger UI."""
    return _html(swagger_ui_page(request.app, _root(request)), page_csp())


@api_docs_router.get(OAUTH2_REDIRECT_PATH)
async def swagger_ui_oauth2_redirect(request: Request) -> Response:
    """Swagger UI's OAuth 2 redirect page."""
    return _html(oauth2_redirect_page(_root(request)), page_csp())


@api_docs_router.get(REDOC_PATH)
async def redoc(request: Request) -> Response:
    """ReDoc."""
    nonce = secrets.token_urlsafe(18)
    return _html(redoc_page(request.app, _root(request), nonce), page_csp(style_nonce=nonce))


@api_docs_router.get(f"{ASSETS_PATH}/{{name}}")
async def docs_asset(
    name: Annotated[str, PathParam(max_length=64)],
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    """A script, style sheet or icon of the docs pages (revalidated by its ETag)."""
    asset = docs_assets().get(name)  # the named files only: no path ever reaches the disk
    if asset is None:
        return Response(
            "Not found.\n",
            status_code=status.HTTP_404_NOT_FOUND,
            media_type="text/plain",
            headers={"cache-control": NO_CACHE},
        )
    headers = {"etag": asset.etag, "cache-control": NO_CACHE, "content-security-policy": ASSET_CSP}
    wanted = {tag.strip() for tag in (if_none_match or "").split(",")}
    if asset.etag in wanted or "*" in wanted:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)
