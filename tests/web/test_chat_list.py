"""The chat list in the page: newest activity first, more pages as it scrolls, search, rename,
archive and unarchive, delete, and a new chat."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.fixtures.pages import chat_links, composer, send_and_wait, user_texts
from tests.fixtures.web import OpenPage, Shoot, WebServer

pytestmark = pytest.mark.browser


async def test_the_list_pages_as_it_scrolls_and_searches(
    open_page: OpenPage, server: WebServer, shoot: Shoot
) -> None:
    account = await server.register()
    for number in range(1, 26):
        await server.call(account, "POST", "/api/chats", {"title": f"Chat {number:02}"}, 201)
    page = await open_page(account, viewport={"width": 1280, "height": 700})
    # Newest first, one page of 20; the rest comes when the end of the list is scrolled to.
    await expect(chat_links(page)).to_have_count(20)
    await expect(chat_links(page).first).to_have_text("Chat 25")
    await expect(chat_links(page).last).to_have_text("Chat 06")
    await shoot(page, "chat-list")
    await page.locator("#chat-list-scroller").hover()
    await page.mouse.wheel(0, 5000)
    await expect(chat_links(page)).to_have_count(25)
    await expect(chat_links(page).last).to_have_text("Chat 01")
    await expect(page.get_by_role("button", name="Load more chats")).to_be_hidden()

    search = page.get_by_label("Search chats")
    await search.fill("chat 07")
    await expect(chat_links(page)).to_have_text(["Chat 07"])
    await search.fill("no such chat")
    await expect(page.locator("#chat-list-empty")).to_have_text("No chats match your search.")
    await expect(chat_links(page)).to_have_count(0)
    await search.fill("")
    await expect(chat_links(page)).to_have_count(20)

    # A reply in an older chat brings it to the top.
    await page.get_by_role("link", name="Chat 07").click()
    await expect(page.locator("#chat-title")).to_have_text("Chat 07")
    await expect(page.get_by_role("link", name="Chat 07")).to_have_attribute("aria-current", "page")
    await send_and_wait(page, "list my tasks")
    await expect(chat_links(page).first).to_have_text("Chat 07")
    await page.reload()
    await expect(chat_links(page).first).to_have_text("Chat 07")
    await expect(page.locator("#chat-title")).to_have_text("Chat 07")


async def test_new_rename_archive_and_delete(
    open_page: OpenPage, server: WebServer, shoot: Shoot
) -> None:
    page = await open_page()
    await expect(page.locator("#chat-list-empty")).to_have_text("No chats yet.")
    await expect(page.locator("#chat-title")).to_have_text("New chat")
    await expect(page.locator("#chat-actions")).to_be_hidden()
    await send_and_wait(page, "hello there")
    await expect(chat_links(page)).to_have_text(["hello there"])

    # Rename (the dialog's Cancel changes nothing).
    await page.get_by_role("button", name="Rename").click()
    dialog = page.get_by_role("dialog", name="Rename chat")
    await expect(dialog.get_by_label("Title")).to_have_value("hello there")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    await page.get_by_role("button", name="Rename").click()
    await dialog.get_by_label("Title").fill("Shopping")
    await dialog.get_by_label("Title").press("Enter")
    await expect(page.locator("#chat-title")).to_have_text("Shopping")
    await expect(chat_links(page)).to_have_text(["Shopping"])

    # A second chat, then archive the first.
    await page.get_by_role("button", name="New chat").click()
    await expect(page.locator("#chat-title")).to_have_text("New chat")
    await expect(composer(page)).to_be_focused()
    await send_and_wait(page, "second chat")
    await expect(chat_links(page)).to_have_text(["second chat", "Shopping"])
    await page.get_by_role("link", name="Shopping").click()
    await expect(user_texts(page)).to_have_text(["hello there"])
    await page.get_by_role("button", name="Archive", exact=True).click()
    await expect(chat_links(page)).to_have_text(["second chat"])
    await expect(page.get_by_role("button", name="Unarchive")).to_be_visible()
    await page.get_by_role("button", name="Archived").click()
    await expect(page.get_by_role("button", name="Archived")).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(chat_links(page)).to_have_text(["Shopping"])
    await shoot(page, "archived-chats")
    await page.get_by_role("button", name="Unarchive").click()
    await expect(chat_links(page)).to_have_count(0)
    await expect(page.locator("#chat-list-empty")).to_have_text("No archived chats.")
    await page.get_by_role("button", name="Chats", exact=True).click()
    await expect(chat_links(page)).to_have_text(["Shopping", "second chat"])

    # Delete, after confirming (cancelling keeps it).
    await page.get_by_role("button", name="Delete", exact=True).click()
    confirm = page.get_by_role("dialog", name="Delete this chat?")
    await expect(confirm).to_contain_text("“Shopping” and all its messages will be gone.")
    await confirm.get_by_role("button", name="Cancel").click()
    await expect(chat_links(page)).to_have_count(2)
    await page.get_by_role("button", name="Delete", exact=True).click()
    await confirm.get_by_role("button", name="Delete").click()
    await expect(chat_links(page)).to_have_text(["second chat"])
    await expect(page.locator("#chat-title")).to_have_text("New chat")
    chats = await server.http.get("/api/chats", headers=await _headers(page))
    assert [chat["title"] for chat in chats.json()["data"]["items"]] == ["second chat"]

    # A link to a chat that is gone opens a new chat instead.
    await page.goto("/#/chat/0190f0f0-0000-7000-8000-000000000000")
    await expect(page.locator("#toast")).to_have_text("That chat does not exist (any more).")
    await expect(page.locator("#chat-title")).to_have_text("New chat")


async def _headers(page: Page) -> dict[str, str]:
    """The page's own access token, for checking what it did through the API."""
    token = await page.evaluate(
        "() => JSON.parse(localStorage.getItem('parley.session')).tokens.access_token"
    )
    return {"Authorization": f"Bearer {token}"}
