"""The page and its files as HTTP resources (no browser): served from the package, a strict
Content-Security-Policy on the page, long caching of versioned files, revalidation, and nothing
outside the package's own files."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from parley.web.router import PAGE_CSP, STATIC_DIR, assets, load_assets

ASSET_LINK = re.compile(r'(?:src|href)="(/static/[0-9a-f]{16}/[^"]+)"')


async def test_the_page_is_html_with_a_strict_content_security_policy(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    csp = response.headers["content-security-policy"]
    assert csp == PAGE_CSP
    directives = dict(item.strip().split(" ", 1) for item in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["require-trusted-types-for"] == "'script'"
    assert "unsafe" not in csp  # no inline script or style, no eval
    # The security headers every response has.
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-trace-id"])
    body = response.text
    # Nothing inline that the policy would block: scripts, event handlers, styles.
    assert not re.search(r"<script(?![^>]*\bsrc=)", body)
    assert not re.search(r"\son[a-z]+\s*=", body)
    assert not re.search(r"<style|\sstyle\s*=", body)
    assert 'type="module"' in body


async def test_the_page_revalidates_with_its_etag(client: httpx.AsyncClient) -> None:
    first = await client.get("/")
    etag = first.headers["etag"]
    again = await client.get("/", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert (await client.get("/", headers={"If-None-Match": '"other"'})).status_code == 200
    head = await client.head("/")
    assert head.status_code == 200
    assert head.headers["etag"] == etag


async def test_every_file_the_page_names_is_served_and_cached_for_good(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/")).text
    links = ASSET_LINK.findall(page)
    assert {link.rsplit("/", 1)[-1] for link in links} >= {"app.css", "main.js", "icon.svg"}
    for link in links:
        response = await client.get(link)
        assert response.status_code == 200, link
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
    main = next(link for link in links if link.endswith("main.js"))
    script = await client.get(main)
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    # Modules import each other by relative paths under the same version.
    imported = re.findall(r'from "\./([\w-]+\.js)"', script.text)
    assert len(imported) >= 5
    for name in imported:
        module = await client.get(f"{main.rsplit('/', 1)[0]}/{name}")
        assert module.status_code == 200, name
        assert module.headers["content-type"] == "text/javascript; charset=utf-8"


async def test_an_old_version_is_served_but_not_cached(client: httpx.AsyncClient) -> None:
    response = await client.get("/static/0000000000000000/app.css")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    [
        "/static/v/nope.js",
        "/static/v/%2e%2e/router.py",
        "/static/v/index.html",  # the page is only at /
        "/static/v//etc/passwd",
        "/static/v/js/../../../../pyproject.toml",
    ],
)
async def test_nothing_but_the_package_files_is_served(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert "parley" not in response.text.lower()


def test_the_version_changes_with_the_files(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text('<script src="__STATIC__/a.js"></script>')
    (tmp_path / "a.js").write_text("1")
    first = load_assets(tmp_path)
    assert first.page.body == f'<script src="/static/{first.version}/a.js"></script>'.encode()
    (tmp_path / "a.js").write_text("2")
    second = load_assets(tmp_path)
    assert second.version != first.version
    assert second.files["a.js"].etag != first.files["a.js"].etag


def test_the_package_ships_the_files_and_no_inline_html_sinks() -> None:
    files = assets().files
    for name in ("app.css", "icon.svg", "js/main.js", "js/markdown.js", "js/api.js"):
        assert name in files
    # Untrusted text only ever goes in as text: no HTML-parsing sinks in the page's code.
    for path in (STATIC_DIR / "js").glob("*.js"):
        code = path.read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in code, f"{path.name} uses {sink}"


async def test_the_page_is_in_the_openapi_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert paths["/"]["get"]["summary"] == "The web chat page"
    assert "text/html" in paths["/"]["get"]["responses"]["200"]["content"]
