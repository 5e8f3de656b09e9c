"""The web chat page (docs/web.md): plain HTML, CSS and JavaScript modules shipped in the package
and served as they are, no build step.

- `GET /` — the page, with a strict Content-Security-Policy (scripts and styles from this origin
  only, no inline script, Trusted Types required) and `Cache-Control: no-cache`
- `GET /static/{version}/{path}` — its scripts, styles and icon. `version` is a hash of all the
  files, so the page always names the current one and these are cached for a year as immutable;
  an older version is still answered (a tab opened before an upgrade), but not cached.

The files are read once, on the first request.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response, status
from fastapi import Path as PathParam

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static"
STATIC_PATH = f"{STATIC_PREFIX}/{{version}}/{{path:path}}"
VERSION_PLACEHOLDER = "__STATIC__"

PAGE_CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        # No string ever becomes HTML or script: `innerHTML = "..."` and the like throw.
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
ASSET_CSP = "default-src 'none'; frame-ancestors 'none'"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
}


@dataclass(frozen=True)
class Asset:
    """One file, ready to send."""

    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True)
class WebAssets:
    """The page and its static files, with the version that names them."""

    version: str
    page: Asset
    files: dict[str, Asset]


def _asset(body: bytes, suffix: str) -> Asset:
    content_type = _CONTENT_TYPES.get(suffix) or (
        mimetypes.guess_type(f"x{suffix}")[0] or "application/octet-stream"
    )
    return Asset(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def load_assets(directory: Path = STATIC_DIR) -> WebAssets:
    """Read every file under `directory`; `index.html` becomes the page, with its asset links
    pointing at the current version."""
    raw: dict[str, bytes] = {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }
    digest = hashlib.sha256()
    for name, body in raw.items():
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(body).digest())
    version = digest.hexdigest()[:16]
    index = raw.pop("index.html")
    page_body = index.replace(VERSION_PLACEHOLDER.encode(), f"{STATIC_PREFIX}/{version}".encode())
    files = {name: _asset(body, Path(name).suffix) for name, body in raw.items()}
    return WebAssets(version, _asset(page_body, ".html"), files)


@cache
def assets() -> WebAssets:
    """The package's web files (read once)."""
    return load_assets()


def _send(asset: Asset, if_none_match: str | None, *, cache_control: str, csp: str) -> Response:
    headers = {
        "etag": asset.etag,
        "cache-control": cache_control,
        "content-security-policy": csp,
    }
    wanted = {tag.strip() for tag in (if_none_match or "").split(",")}
    if asset.etag in wanted or "*" in wanted:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(content=asset.body, media_type=asset.content_type, headers=headers)


IfNoneMatch = Annotated[str | None, Header(alias="If-None-Match")]

web_router = APIRouter(tags=["web"])

HTML_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "The chat page."}
}


@web_router.get(
    "/",
    summary="The web chat page",
    response_class=Response,
    responses={**HTML_RESPONSE, 304: {"description": "Not modified."}},
)
async def page(if_none_match: IfNoneMatch = None) -> Response:
    """Parley's chat page (HTML): sign in, chat, tasks and API keys, in the browser."""
    return _send(assets().page, if_none_match, cache_control=REVALIDATE, csp=PAGE_CSP)


@web_router.get(
    STATIC_PATH,
    summary="A file of the web page",
    response_class=Response,
    responses={
        200: {"description": "A script, style sheet or icon of the page."},
        304: {"description": "Not modified."},
        404: {"description": "No such file.", "content": {"text/plain": {}}},
    },
)
async def static_file(
    version: Annotated[str, PathParam(max_length=64)],
    path: Annotated[str, PathParam(max_length=200)],
    if_none_match: IfNoneMatch = None,
) -> Response:
    """A static file of the page; immutable for a year under the current version."""
    current = assets()
    asset = current.files.get(path)  # only the package's own files: no path ever reaches disk
    if asset is None:
        return Response(
            "Not found.\n",
            status_code=status.HTTP_404_NOT_FOUND,
            media_type="text/plain",
            headers={"cache-control": REVALIDATE},
        )
    cache_control = IMMUTABLE if version == current.version else REVALIDATE
    return _send(asset, if_none_match, cache_control=cache_control, csp=ASSET_CSP)


# HEAD answers like GET (headers only), without a second entry in the OpenAPI schema.
web_router.add_api_route("/", page, methods=["HEAD"], include_in_schema=False)
web_router.add_api_route(STATIC_PATH, static_file, methods=["HEAD"], include_in_schema=False)
