"""Redirect URI rules without a server: what may be registered, and RFC 8252's loopback port
exception to exact matching."""

from __future__ import annotations

import pytest

from parley.oauth.redirects import RedirectUriRefused, check_redirect_uri, matches_registered


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/cb",
        "http://127.0.0.1/cb",
        "http://localhost:3000/cb",
        "http://[::1]:9/cb",
        "com.example.app:/cb",
        "cursor://anysphere.cursor-mcp/oauth/callback",
    ],
)
def test_registrable(uri: str) -> None:
    check_redirect_uri(uri)


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "/relative/cb",
        "http://app.example/cb",
        "http://127.0.0.1.evil.example/cb",
        "http://localhost.evil.example/cb",
        "https://app.example/cb#x",
        "javascript:alert(1)",
        "data:text/html,hi",
        "file:///etc/passwd",
        "https://app.example/\x00",
        "https://app.example/a b",
        "http://127.0.0.1:99999/cb",
    ],
)
def test_refused(uri: str) -> None:
    with pytest.raises(RedirectUriRefused):
        check_redirect_uri(uri)


@pytest.mark.parametrize(
    ("requested", "registered", "matches"),
    [
        ("https://app.example/cb", ["https://app.example/cb"], True),
        ("https://app.example/cb/", ["https://app.example/cb"], False),
        ("https://app.example:444/cb", ["https://app.example/cb"], False),
        ("http://127.0.0.1:5000/cb", ["http://127.0.0.1/cb"], True),
        ("http://127.0.0.1:5000/cb", ["http://127.0.0.1:4000/cb"], True),
        ("http://localhost:5000/cb", ["http://127.0.0.1:4000/cb"], False),
        ("http://127.0.0.1:5000/cb?x=1", ["http://127.0.0.1:4000/cb"], False),
        ("http://evil@127.0.0.1:5000/cb", ["http://127.0.0.1:4000/cb"], False),
        ("com.example.app:/cb", ["com.example.app:/cb"], True),
        ("com.example.app:/cb2", ["com.example.app:/cb"], False),
    ],
)
def test_matching(requested: str, registered: list[str], matches: bool) -> None:
    assert matches_registered(requested, registered) is matches
