"""The API docs (`/docs`, `/docs/oauth2-redirect`, `/redoc`) are served whole by Parley: pages that
name only this origin's files, under a strict Content-Security-Policy, and work in a browser that
can reach nothing else."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Request, Route, expect

from tests.fixtures.accounts import PASSWORD
from tests.fixtures.servers import LiveServer

PAGES = ("/docs", "/docs/oauth2-redirect", "/redoc")
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}
CSP_VIOLATION = re.compile(r"Content Security Policy|Refused to|violates", re.IGNORECASE)


class References(HTMLParser):
    """Every URL a page loads or links to (`src`, `href`), and its script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        if tag == "script":
            self.scripts.append(values)


def references(html: str) -> References:
    parser = References()
    parser.feed(html)
    return parser


def csp_directives(response: httpx.Response) -> dict[str, list[str]]:
    [policy] = response.headers.get_list("content-security-policy")
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


@pytest.mark.parametrize("path", PAGES)
async def test_docs_pages_name_only_their_own_files(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "cdn." not in response.text
    assert "http://" not in response.text
    assert "https://" not in response.text
    found = references(response.text)
    assert found.urls
    assert all(url.startswith("/docs/assets/") for url in found.urls), found.urls
    # No inline script: each script is a file, or a JSON data block (never run).
    for script in found.scripts:
        assert script.get("src") or script.get("type") == "application/json", script


@pytest.mark.parametrize("path", PAGES)
async def test_docs_pages_have_a_strict_csp(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    directives = csp_directives(response)
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["connect-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    for sources in directives.values():
        assert "'unsafe-eval'" not in sources
        assert "'unsafe-inline'" not in sources
        assert not [source for source in sources if source.startswith(("http", "*"))], sources
    assert response.headers["x-frame-options"] == "DENY"
    if path != "/redoc":
        assert directives["style-src"] == ["'self'"]
        assert "worker-src" not in directives


async def test_redoc_styles_by_a_fresh_nonce(client: httpx.AsyncClient) -> None:
    nonces = []
    for _ in range(2):
        response = await client.get("/redoc")
        directives = csp_directives(response)
        [nonce_source] = [s for s in directives["style-src"] if s.startswith("'nonce-")]
        nonce = nonce_source.removeprefix("'nonce-").removesuffix("'")
        assert len(nonce) >= 22
        scripts = references(response.text).scripts
        [bundle] = [s for s in scripts if str(s.get("src")).endswith("/redoc.standalone.js")]
        assert bundle["nonce"] == nonce  # ReDoc's style elements take the script's nonce
        assert directives["worker-src"] == ["blob:"]  # its search worker
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


@pytest.mark.parametrize("path", PAGES)
async def test_docs_assets_are_served_with_their_types(
    client: httpx.AsyncClient, path: str
) -> None:
    page = await client.get(path)
    for url in references(page.text).urls:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        suffix = url[url.rindex(".") :]
        assert asset.headers["content-type"] == CONTENT_TYPES[suffix], url
        assert asset.headers["x-content-type-options"] == "nosniff"
        assert asset.content
        if suffix == ".js":
            # Nothing they load comes from elsewhere (ReDoc's logo was Redocly's CDN's).
            assert b"cdn.redoc.ly" not in asset.content, url
            assert b"cdn.jsdelivr.net" not in asset.content, url
        cached = await client.get(url, headers={"If-None-Match": asset.headers["etag"]})
        assert cached.status_code == 304


@pytest.mark.parametrize(
    "name", ["nope.js", "..%2F..%2Fsettings.py", "api_docs.py", "swagger-ui-bundle.js.map"]
)
async def test_unknown_docs_assets_are_not_found(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get(f"/docs/assets/{name}")
    assert response.status_code == 404


# -- in a browser that reaches nothing but Parley --------------------------------------------


class Watch:
    """What a page did that it must not: ask another origin for anything, break a CSP rule,
    throw."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.elsewhere: list[str] = []
        self.violations: list[str] = []
        self.errors: list[str] = []

    async def route(self, route: Route, request: Request) -> None:
        if request.url.startswith(self.origin) or request.url.startswith(("data:", "blob:")):
            await route.continue_()
        else:
            self.elsewhere.append(request.url)
            await route.abort("internetdisconnected")

    def console(self, message: ConsoleMessage) -> None:
        if CSP_VIOLATION.search(message.text):
            self.violations.append(message.text)

    def check(self) -> None:
        assert not self.elsewhere, f"requests to other origins: {self.elsewhere}"
        assert not self.violations, f"CSP violations: {self.violations}"
        assert not self.errors, f"page errors: {self.errors}"


@pytest.fixture
async def offline_page(browser: Browser, live_server: LiveServer) -> AsyncIterator[Page]:
    """A page whose every request to another origin fails; checked for the watch at the end."""
    context = await browser.new_context(base_url=live_server.url)
    watch = Watch(live_server.url)
    await context.route("**/*", watch.route)
    # Also the violations the browser reports as events rather than console lines.
    await context.add_init_script(
        "document.addEventListener('securitypolicyviolation', (e) => console.error("
        "'CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )
    page = await context.new_page()
    page.on("console", watch.console)
    page.on("pageerror", lambda error: watch.errors.append(str(error)))
    try:
        yield page
    finally:
        await context.close()
    watch.check()


def _register(live_server: LiveServer, email: str) -> dict[str, Any]:
    response = httpx.post(
        f"{live_server.url}/api/auth/register",
        json={"email": email, "password": PASSWORD},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


@pytest.mark.browser
async def test_swagger_ui_works_offline(offline_page: Page, live_server: LiveServer) -> None:
    """The operations list renders, Authorize signs in with the email as username, and a
    request made from the page is answered: all with nothing but Parley reachable."""
    email = "swagger-offline@example.com"
    _register(live_server, email)
    page = offline_page
    await page.goto("/docs")
    operations = page.locator(".opblock")
    await expect(operations.first).to_be_visible()
    assert await operations.count() > 20
    await expect(page.locator("#operations-auth-auth-token")).to_be_visible()

    await page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".modal-ux")
    await expect(dialog).to_contain_text("username is your account's email")
    await dialog.locator("#oauth_username").fill(email)
    await dialog.locator("#oauth_password").fill(PASSWORD)
    await dialog.get_by_role("button", name="Apply given OAuth2 credentials").click()
    await expect(dialog.get_by_role("button", name="Remove authorization")).to_be_visible()
    await dialog.get_by_role("button", name="Close").click()

    me = page.locator("#operations-users-users-get-me")
    await me.locator(".opblock-summary").click()
    await me.get_by_role("button", name="Try it out").click()
    await me.get_by_role("button", name="Execute").click()
    status = me.locator(".live-responses-table tbody .response-col_status").first
    await expect(status).to_have_text("200")
    await expect(me.locator(".live-responses-table")).to_contain_text(email)


@pytest.mark.browser
async def test_redoc_works_offline(offline_page: Page) -> None:
    page = offline_page
    await page.goto("/redoc")
    operations = page.locator("[data-section-id^='operation/']")
    await expect(operations.first).to_be_attached()
    assert await operations.count() > 20
    # Search runs in ReDoc's worker.
    await page.get_by_placeholder("Search...").fill("password grant")
    result = page.get_by_role("search").get_by_role("menuitem", name="OAuth 2.0 password grant")
    await expect(result).to_be_visible()


@pytest.mark.browser
async def test_oauth2_redirect_page_runs_offline(offline_page: Page) -> None:
    page = offline_page
    await page.goto("/docs/oauth2-redirect")
    await expect(page.locator("#status")).to_contain_text("started from the API docs")
