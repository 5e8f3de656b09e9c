"""Redirect URIs: which a client may register, and whether the one an authorization request names
is one of them.

A client may register `https` URIs, `http` URIs only on a loopback host (`127.0.0.1`,
`localhost`, `[::1]`: a native app's local listener, RFC 8252 section 7.3), and private-use
schemes of native apps (RFC 8252 section 7.1, such as `com.example.app:/callback`), but never a
scheme a browser would run or read locally (`javascript:`, `data:`, `file:`, ...). No URI may carry
a fragment (RFC 6749 section 3.1.2).

A request's URI must equal a registered one exactly, character for character, with one exception
RFC 8252 section 7.3 requires: for a loopback `http` URI the port may differ, since a native app
listens on whatever port is free when it runs.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

MAX_REDIRECT_URIS = 10
MAX_REDIRECT_URI_CHARS = 2000
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
# Schemes that are not a native app's own: a browser runs, reads or fetches them itself.
REFUSED_SCHEMES = frozenset(
    {"javascript", "data", "file", "vbscript", "about", "blob", "filesystem", "ftp", "ws", "wss"}
)


class RedirectUriRefused(ValueError):
    """A redirect URI a client may not register; the message says why."""


def _split(uri: str) -> SplitResult:
    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise RedirectUriRefused(f"{uri!r} is not a valid URI.") from exc
    return parts


def _host(netloc: str) -> str:
    """The host of a netloc, without user info or port (an IPv6 host keeps its brackets)."""
    host = netloc.rsplit("@", 1)[-1]
    return host[: host.find("]") + 1] if host.startswith("[") else host.split(":", 1)[0]


def _is_loopback(parts: SplitResult) -> bool:
    return _host(parts.netloc).lower() in LOOPBACK_HOSTS


def check_redirect_uri(uri: str) -> None:
    """Raises RedirectUriRefused unless a client may register `uri` (see the module docstring)."""
    if not uri or len(uri) > MAX_REDIRECT_URI_CHARS:
        raise RedirectUriRefused(
            f"A redirect URI must be 1 to {MAX_REDIRECT_URI_CHARS} characters long."
        )
    if not (uri.isascii() and uri.isprintable()) or " " in uri:
        raise RedirectUriRefused("A redirect URI must be printable ASCII without spaces.")
    parts = _split(uri)
    scheme = parts.scheme.lower()
    if not scheme:
        raise RedirectUriRefused(f"{uri!r} is not an absolute URI.")
    if parts.fragment or "#" in uri:
        raise RedirectUriRefused("A redirect URI must not have a fragment.")
    if scheme == "https":
        if not parts.hostname:
            raise RedirectUriRefused(f"{uri!r} names no host.")
        return
    if scheme == "http":
        if not _is_loopback(parts):
            raise RedirectUriRefused(
                "An http redirect URI is allowed only on a loopback host "
                "(127.0.0.1, localhost, [::1]); use https."
            )
        return
    if scheme in REFUSED_SCHEMES:
        raise RedirectUriRefused(f"The {scheme!r} scheme is not allowed in a redirect URI.")


def check_redirect_uris(uris: list[str]) -> None:
    """Raises RedirectUriRefused unless a client may register all of `uris` (1 to 10 of them)."""
    if not 1 <= len(uris) <= MAX_REDIRECT_URIS:
        raise RedirectUriRefused(f"Register 1 to {MAX_REDIRECT_URIS} redirect URIs.")
    for uri in uris:
        check_redirect_uri(uri)


def _without_port(parts: SplitResult) -> str:
    return parts._replace(netloc=_host(parts.netloc)).geturl()


def matches_registered(requested: str, registered: list[str]) -> bool:
    """Whether an authorization request's `redirect_uri` is one of the client's: exactly, or, for a
    loopback `http` URI, exactly but for the port (RFC 8252 section 7.3)."""
    if requested in registered:
        return True
    if len(requested) > MAX_REDIRECT_URI_CHARS or not requested.startswith("http://"):
        return False
    try:
        asked = _split(requested)
    except RedirectUriRefused:
        return False
    if not _is_loopback(asked) or "@" in asked.netloc:
        return False
    stripped = _without_port(asked)
    for uri in registered:
        if not uri.startswith("http://"):
            continue
        try:
            candidate = _split(uri)
        except RedirectUriRefused:
            continue
        if _is_loopback(candidate) and _without_port(candidate) == stripped:
            return True
    return False
