"""Nothing a user, a model or a tool writes ever runs as HTML or script in the page: hostile text in
a message, a chat title, a task, a tool result and a model's reply is shown as text, no element is
made from it, no `javascript:` link is made, and no script runs (a flag it would set stays unset, no
dialog opens: the `open_page` fixture fails the test on any dialog or CSP violation)."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.fakes import Reply
from tests.fixtures.pages import reply_texts, send_and_wait, task_titles, user_texts
from tests.fixtures.web import FAKE_MODEL, OpenPage, Shoot, WebServer

pytestmark = pytest.mark.browser

IMG = "<img src=x onerror=\"window.__xss='img';alert(1)\">"
SCRIPT = "<script>window.__xss='script';alert(2)</script>"
SVG = "<svg onload=\"window.__xss='svg'\"></svg>"
JS_LINK = "[click me](javascript:window.__xss='link')"
PAYLOAD = f"{IMG} {SCRIPT} {SVG} {JS_LINK}"
# Elements that only an injection could have made (the page's own icons are not among them).
INJECTED = ", ".join(
    [
        "#app-view img:not([src$='icon.svg'])",
        "#app-view script",
        "#app-view svg:not([aria-hidden])",
        "#app-view iframe",
        "#app-view b",
    ]
)


async def assert_nothing_ran(page: Page) -> None:
    assert await page.evaluate("() => window.__xss") is None
    await expect(page.locator(INJECTED)).to_have_count(0)
    await expect(page.locator("a[href^='javascript:' i]")).to_have_count(0)


async def test_hostile_text_everywhere_is_only_text(
    open_page: OpenPage, server: WebServer, shoot: Shoot
) -> None:
    account = await server.register()
    # A task and a chat whose titles are markup, made through the API.
    await server.call(account, "POST", "/api/tasks", {"title": IMG}, 201)
    chat = await server.call(account, "POST", "/api/chats", {"title": f"{SCRIPT}{IMG}"}, 201)
    page = await open_page(account, path=f"/#/chat/{chat['id']}")

    # The chat title, in the list, the header and the window title.
    await expect(page.locator("#chat-title")).to_have_text(f"{SCRIPT}{IMG}")
    await expect(page.locator("#chat-list a.chat-link")).to_have_text([f"{SCRIPT}{IMG}"])
    assert (await page.title()).startswith("<script>")
    # The task, in the panel.
    await expect(task_titles(page)).to_have_text([IMG])

    # A message: shown as typed.
    await send_and_wait(page, PAYLOAD)
    await expect(user_texts(page)).to_have_text([PAYLOAD])

    # A tool result: the assistant lists the task; its card and its reply show the title as text.
    await send_and_wait(page, "list my tasks")
    card = page.locator("details.tool-card").last
    await card.locator("summary").click()
    await expect(card.locator(".tool-output")).to_contain_text('"title": "<img src=x onerror=')
    await expect(reply_texts(page).last.locator("li")).to_have_text([f'"{IMG}"'])

    # A task the assistant adds with markup in its title.
    await send_and_wait(page, "add a task to <b onmouseover=alert(3)>x</b>")
    await expect(page.locator("#task-list b")).to_have_count(0)

    await shoot(page, "xss-attempts")
    await page.reload()
    await expect(user_texts(page).first).to_have_text(PAYLOAD)
    await assert_nothing_ran(page)
    # And the policy itself: the page cannot even assign HTML from a string.
    refused = await page.evaluate(
        """() => { try { document.body.innerHTML = '<b>x</b>'; return 'assigned'; }
                   catch (error) { return error.name; } }"""
    )
    assert refused == "TypeError"
    errors = open_page.watches[page].errors
    assert errors == [
        "This document requires 'TrustedHTML' assignment. The action has been blocked."
    ]
    errors.clear()  # that one was this test's own


async def test_hostile_markdown_from_a_model_is_only_text(
    open_page: OpenPage, server: WebServer
) -> None:
    reply = "\n".join(
        [
            f"Look: {IMG}",
            "",
            f"- {SCRIPT}",
            f"- {JS_LINK} and [data](data:text/html,<script>alert(1)</script>)",
            "- [ok](https://example.com/?q=<script>)",
            "",
            "```html",
            SCRIPT,
            "```",
            "",
            f'![img](javascript:alert(1)) <a href="javascript:alert(1)">a</a> {SVG}',
        ]
    )
    page = await open_page()
    await page.get_by_label("Model").select_option(FAKE_MODEL)
    server.fake.script.push(Reply(text=reply))
    await send_and_wait(page, "be evil")
    body = reply_texts(page).last
    await expect(body).to_contain_text(f"Look: {IMG}")
    await expect(body.locator("li").first).to_have_text(SCRIPT)
    await expect(body.locator("pre code")).to_have_text(SCRIPT)
    # Only the https link became a link; the others are their text.
    await expect(body.locator("a")).to_have_count(1)
    await expect(body.locator("a")).to_have_attribute("href", "https://example.com/?q=%3Cscript%3E")
    await expect(body.locator("li").nth(1)).to_have_text("click me and data")
    await assert_nothing_ran(page)
