"""Signing up, logging out and in, guests and their upgrade, the token refresh, and API keys,
through the page in a real browser."""

from __future__ import annotations

import json
import re

import pytest
from playwright.async_api import Page, expect

from tests.fixtures.pages import composer, open_account, send_and_wait, task_titles, user_texts
from tests.fixtures.web import SESSION_KEY, Account, OpenPage, Shoot, WebServer

pytestmark = pytest.mark.browser


async def stored_session(page: Page) -> dict[str, dict[str, str]]:
    raw = await page.evaluate(f"() => localStorage.getItem('{SESSION_KEY}')")
    assert raw, "no session in localStorage"
    value: dict[str, dict[str, str]] = json.loads(raw)
    return value


async def test_sign_up_log_out_and_log_in_again(
    open_page: OpenPage, server: WebServer, shoot: Shoot
) -> None:
    page = await open_page(signed_in=False)
    auth = page.locator("#auth-view")
    await expect(auth.get_by_role("heading", name="Parley")).to_be_visible()
    await expect(auth.get_by_label("Email")).to_be_focused()
    await shoot(page, "sign-in")

    await auth.get_by_role("button", name="Create an account").click()
    await expect(auth.get_by_role("button", name="Create account")).to_be_visible()
    await auth.get_by_label("Name").fill("Ada")
    await auth.get_by_label("Email").fill("ada@example.com")
    await auth.get_by_label("Password").fill("short")
    await auth.get_by_role("button", name="Create account").click()
    await expect(auth.get_by_role("alert")).to_have_text(
        "The password needs at least 8 characters."
    )
    await auth.get_by_label("Password").fill("a long enough password")
    await shoot(page, "sign-up")
    await auth.get_by_role("button", name="Create account").click()

    await expect(page.locator("#app-view")).to_be_visible()
    await expect(page.locator("#account-name")).to_have_text("Ada")
    await expect(composer(page)).to_be_focused()
    await expect(page).to_have_title("New chat · Parley")
    refresh_token = (await stored_session(page))["tokens"]["refresh_token"]

    dialog = await open_account(page)
    await expect(dialog).to_contain_text("Signed in as Ada (ada@example.com).")
    await expect(dialog.locator("#upgrade-section")).to_be_hidden()
    await dialog.get_by_role("button", name="Log out").click()
    await expect(page.locator("#auth-view")).to_be_visible()
    await expect(page.locator("#app-view")).to_be_hidden()
    assert await page.evaluate(f"() => localStorage.getItem('{SESSION_KEY}')") is None
    # Logging out revoked the refresh token on the server too.
    spent = await server.http.post("/api/auth/refresh", json={"refresh_token": refresh_token})
    assert spent.status_code == 401

    # A wrong password is refused; the right one works.
    await auth.get_by_label("Email").fill("ada@example.com")
    await auth.get_by_label("Password").fill("not the password")
    await expect(auth.get_by_role("alert")).to_have_text("You are signed out.")
    await auth.get_by_role("button", name="Sign in").click()
    await expect(auth.get_by_role("alert")).to_have_text("The email or password is incorrect.")
    await expect(page.locator("#app-view")).to_be_hidden()
    await auth.get_by_label("Password").fill("a long enough password")
    await auth.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#app-view")).to_be_visible()
    await expect(page.locator("#account-name")).to_have_text("Ada")

    # The session survives a reload.
    await page.reload()
    await expect(page.locator("#app-view")).to_be_visible()
    await expect(page.locator("#account-name")).to_have_text("Ada")


async def test_a_guest_chats_then_keeps_the_account(
    open_page: OpenPage, server: WebServer, shoot: Shoot
) -> None:
    page = await open_page(signed_in=False)
    await page.get_by_role("button", name="Continue as a guest").click()
    await expect(page.locator("#account-name")).to_have_text("Guest")
    await send_and_wait(page, "add a task to water the plants")
    await expect(task_titles(page)).to_have_text(["Water the plants"])

    dialog = await open_account(page)
    await expect(dialog).to_contain_text("Signed in as a guest.")
    upgrade = dialog.locator("#upgrade-section")
    await expect(upgrade).to_be_visible()
    await upgrade.get_by_label("Email").fill("grace@example.com")
    await upgrade.get_by_label("Password").fill("a long enough password")
    await shoot(page, "guest-upgrade")
    await upgrade.get_by_role("button", name="Create my account").click()
    await expect(dialog).to_contain_text("Signed in as grace (grace@example.com).")
    await expect(upgrade).to_be_hidden()
    await expect(page.locator("#account-name")).to_have_text("grace")

    await dialog.get_by_role("button", name="Log out").click()
    auth = page.locator("#auth-view")
    await auth.get_by_label("Email").fill("grace@example.com")
    await auth.get_by_label("Password").fill("a long enough password")
    await auth.get_by_role("button", name="Sign in").click()
    # Same user, everything kept: the chat and the task.
    await expect(page.locator("#chat-list a.chat-link")).to_have_text(
        ["add a task to water the plants"]
    )
    await expect(task_titles(page)).to_have_text(["Water the plants"])
    await page.locator("#chat-list a.chat-link").first.click()
    await expect(user_texts(page)).to_have_text(["add a task to water the plants"])


async def test_an_expired_access_token_is_refreshed(open_page: OpenPage, server: WebServer) -> None:
    account = await server.register()
    stale = Account(
        account.email,
        account.password,
        account.user,
        {**account.tokens, "access_token": "not-a-valid-token"},
    )
    page = await open_page(stale)
    await expect(page.locator("#account-name")).to_have_text(account.user["display_name"])
    tokens = (await stored_session(page))["tokens"]
    assert tokens["access_token"] != "not-a-valid-token"
    assert tokens["refresh_token"] != account.tokens["refresh_token"]  # rotated
    # The new tokens work; the page goes on working with them.
    me = await server.http.get(
        "/api/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200
    await send_and_wait(page, "what's on my list?")


async def test_a_session_that_cannot_be_refreshed_goes_back_to_sign_in(
    open_page: OpenPage, server: WebServer
) -> None:
    account = await server.register()
    revoked = await server.http.post(
        "/api/auth/logout", json={"refresh_token": account.tokens["refresh_token"]}
    )
    assert revoked.status_code == 204
    broken = Account(
        account.email, account.password, account.user, {**account.tokens, "access_token": "x"}
    )
    page = await open_page(broken, expect_signed_in=False)
    await expect(page.locator("#auth-error")).to_be_empty()
    assert await page.evaluate(f"() => localStorage.getItem('{SESSION_KEY}')") is None


async def test_api_keys_are_shown_once_copied_listed_and_revoked(
    open_page: OpenPage, server: WebServer, shoot: Shoot
) -> None:
    account = await server.register()
    page = await open_page(account, permissions=["clipboard-read", "clipboard-write"])
    await send_and_wait(page, "list my tasks")  # some usage to report
    dialog = await open_account(page)
    keys = dialog.locator("#keys-section")
    await expect(keys.get_by_text("No API keys.")).to_be_visible()

    await keys.get_by_label("Key name").fill("laptop")
    await keys.get_by_role("button", name="Create key").click()
    secret_box = keys.get_by_label("New API key")
    await expect(secret_box).to_have_value(re.compile(r"^pk_\S{20,}$"))
    await expect(keys.get_by_text("It is shown only once.")).to_be_visible()
    secret = await secret_box.input_value()
    assert secret.startswith("pk_")
    await expect(keys.get_by_role("button", name="Copy")).to_be_focused()
    await keys.get_by_role("button", name="Copy").click()
    await expect(keys.get_by_role("button", name="Copied")).to_be_visible()
    assert await page.evaluate("() => navigator.clipboard.readText()") == secret
    item = keys.locator("li.key")
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text("laptop")
    await expect(item).to_contain_text("never used")

    usage = await server.http.get("/api/usage", headers=account.headers)
    if usage.status_code == 200:  # the usage report (another part of Parley) when it is there
        await expect(dialog.locator("#usage-section")).to_be_visible()
        await expect(dialog.locator("#usage-requests")).not_to_be_empty()
    else:
        await expect(dialog.locator("#usage-section")).to_be_hidden()
    await shoot(page, "account-and-api-keys")

    # The key works, and its secret is not shown again.
    me = await server.http.get("/api/users/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#account-button")).to_be_focused()
    dialog = await open_account(page)
    await expect(keys.get_by_label("New API key")).to_be_hidden()
    await expect(item).to_contain_text(secret[:8])
    assert secret not in await dialog.inner_text()

    await item.get_by_role("button", name="Revoke key laptop").click()
    confirm = page.get_by_role("dialog", name="Revoke this key?")
    await expect(confirm).to_be_visible()
    await confirm.get_by_role("button", name="Revoke").click()
    await expect(item).to_have_count(0)
    await expect(keys.get_by_text("No API keys.")).to_be_visible()
    refused = await server.http.get("/api/users/me", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401
