"""`/oauth/authorize`: the consent page, the faults it shows rather than redirects (client and
redirect URI), those it redirects (RFC 6749 section 4.1.2.1), sign-in failures and Deny."""

from __future__ import annotations

import httpx

from tests.fixtures.accounts import TestUser
from tests.oauth.conftest import (
    REDIRECT_URI,
    consent,
    form_fields,
    new_authorization,
    redirect_params,
    register,
)


async def test_the_page_escapes_the_client_name(http: httpx.AsyncClient, base: str) -> None:
    registered = await register(http, base, client_name="<script>alert(1)</script>")
    authorization = new_authorization(registered.json()["client_id"])
    page = await http.get(f"{base}/oauth/authorize", params=authorization.query())
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<script>" not in page.text
    assert "&lt;script&gt;" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert form_fields(page.text)["csrf_token"]


async def test_allow_redirects_with_code_and_state(
    http: httpx.AsyncClient, base: str, client_id: str, user: TestUser
) -> None:
    authorization = new_authorization(client_id)
    params = redirect_params(await consent(http, base, authorization, user))
    assert params["code"].startswith("pac_")
    assert params["state"] == authorization.state
    assert params["iss"] == base


async def test_a_loopback_redirect_may_change_its_port(
    http: httpx.AsyncClient, base: str, client_id: str, user: TestUser
) -> None:
    authorization = new_authorization(client_id, "http://127.0.0.1:50123/callback")
    response = await consent(http, base, authorization, user)
    assert response.headers["location"].startswith("http://127.0.0.1:50123/callback?")


async def test_a_redirect_uri_off_by_one_character_is_shown_not_followed(
    http: httpx.AsyncClient, base: str, client_id: str
) -> None:
    for uri in (REDIRECT_URI + "x", REDIRECT_URI[:-1], "http://127.0.0.2:8765/callback"):
        authorization = new_authorization(client_id, uri)
        page = await http.get(f"{base}/oauth/authorize", params=authorization.query())
        assert page.status_code == 400
        assert "location" not in page.headers
        assert "redirect_uri" in page.text


async def test_an_unknown_client_is_shown_not_redirected(
    http: httpx.AsyncClient, base: str
) -> None:
    authorization = new_authorization("no-such-client")
    page = await http.get(f"{base}/oauth/authorize", params=authorization.query())
    assert page.status_code == 400
    assert "location" not in page.headers


async def test_other_faults_are_redirected_with_state(
    http: httpx.AsyncClient, base: str, client_id: str
) -> None:
    authorization = new_authorization(client_id)
    cases = [
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"resource": "https://elsewhere.example/mcp"}, "invalid_target"),
    ]
    for overrides, error in cases:
        response = await http.get(
            f"{base}/oauth/authorize", params=authorization.query(**overrides)
        )
        params = redirect_params(response)
        assert params["error"] == error, overrides
        assert params["state"] == authorization.state
        assert "code" not in params


async def test_the_resource_may_be_named(
    http: httpx.AsyncClient, base: str, client_id: str, user: TestUser
) -> None:
    authorization = new_authorization(client_id)
    response = await consent(http, base, authorization, user, resource=f"{base}/mcp")
    assert "code" in redirect_params(response)


async def test_deny_redirects_with_access_denied(
    http: httpx.AsyncClient, base: str, client_id: str, user: TestUser
) -> None:
    authorization = new_authorization(client_id)
    params = redirect_params(await consent(http, base, authorization, user, decision="deny"))
    assert params["error"] == "access_denied"
    assert params["state"] == authorization.state
    assert "code" not in params


async def test_a_wrong_password_shows_the_page_again(
    http: httpx.AsyncClient, base: str, client_id: str, user: TestUser
) -> None:
    authorization = new_authorization(client_id)
    response = await consent(http, base, authorization, user, password="wrong password")
    assert response.status_code == 401
    assert "location" not in response.headers
    assert "incorrect" in response.text
    assert form_fields(response.text)["csrf_token"]


async def test_a_form_without_a_good_csrf_token_is_refused(
    http: httpx.AsyncClient, base: str, client_id: str, user: TestUser
) -> None:
    authorization = new_authorization(client_id)
    page = await http.get(f"{base}/oauth/authorize", params=authorization.query())
    fields = form_fields(page.text)
    fields.update(email=user.email or "", password=user.password or "", decision="allow")
    good = fields["csrf_token"]
    altered = good[:-1] + ("1" if good.endswith("0") else "0")  # one character changed
    for token in ("", "1.abc", altered):
        response = await http.post(f"{base}/oauth/authorize", data={**fields, "csrf_token": token})
        assert response.status_code == 400
        assert "location" not in response.headers
    # Nor for another request's parameters.
    forged = {**fields, "state": "another state"}
    response = await http.post(f"{base}/oauth/authorize", data=forged)
    assert response.status_code == 400


async def test_the_redirect_keeps_the_clients_own_query(
    http: httpx.AsyncClient, base: str, user: TestUser
) -> None:
    uri = "https://app.example/cb?tenant=a%20b"
    registered = await register(http, base, redirect_uris=[uri])
    authorization = new_authorization(registered.json()["client_id"], uri)
    response = await consent(http, base, authorization, user)
    params = redirect_params(response)
    assert params["tenant"] == "a b"
    assert params["code"]
    assert response.headers["location"].startswith("https://app.example/cb?")
