"""The page on a phone's width, with the keyboard alone, and in light and dark."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.fixtures.pages import (
    INTRO_END,
    assistant_messages,
    chat_links,
    composer,
    send,
    send_and_wait,
    task_titles,
    user_texts,
    wait_idle,
)
from tests.fixtures.web import PHONE, SLOW_PACE_MS, OpenPage, Shoot, WebServer

pytestmark = pytest.mark.browser


async def no_horizontal_scroll(page: Page) -> None:
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"


async def test_a_phone_sized_screen(open_page: OpenPage, server: WebServer, shoot: Shoot) -> None:
    page = await open_page(signed_in=False, viewport=PHONE, is_mobile=True, has_touch=True)
    await no_horizontal_scroll(page)
    await shoot(page, "phone-sign-in")
    await page.get_by_role("button", name="Continue as a guest").click()
    await expect(page.locator("#app-view")).to_be_visible()

    # Only the conversation shows; the chat list and tasks are drawers behind buttons.
    sidebar = page.get_by_role("navigation", name="Chats")
    tasks_panel = page.get_by_role("complementary", name="Tasks")
    await expect(sidebar).to_be_hidden()
    await expect(tasks_panel).to_be_hidden()
    await expect(composer(page)).to_be_visible()
    await send_and_wait(page, "add a task to book the dentist on friday")
    await expect(assistant_messages(page).last.locator(".markdown")).to_contain_text("Added")
    await no_horizontal_scroll(page)
    await shoot(page, "phone-conversation")

    chats_button = page.get_by_role("button", name="Chats", exact=True).first
    await expect(chats_button).to_have_attribute("aria-expanded", "false")
    await chats_button.click()
    await expect(sidebar).to_be_visible()
    await expect(chats_button).to_have_attribute("aria-expanded", "true")
    await expect(chat_links(page)).to_have_count(1)
    await shoot(page, "phone-chat-list")
    await sidebar.get_by_role("button", name="New chat").click()
    await expect(sidebar).to_be_hidden()
    await expect(page.locator("#chat-title")).to_have_text("New chat")
    await chats_button.click()
    await chat_links(page).first.click()
    await expect(sidebar).to_be_hidden()
    await expect(user_texts(page)).to_have_count(1)

    tasks_button = page.get_by_role("button", name="Tasks")
    await tasks_button.click()
    await expect(tasks_panel).to_be_visible()
    await expect(task_titles(page)).to_have_text(["Book the dentist"])
    await shoot(page, "phone-tasks")
    await page.keyboard.press("Escape")
    await expect(tasks_panel).to_be_hidden()
    await expect(tasks_button).to_be_focused()
    await tasks_button.click()
    await page.locator("#backdrop").click(position={"x": 10, "y": 300})
    await expect(tasks_panel).to_be_hidden()
    await no_horizontal_scroll(page)


# Every control in the page's headers (the top bar and the open chat's header) that shows.
HEADER_CONTROLS = """() => [...document.querySelectorAll('header button, header select')]
  .filter((element) => element.getClientRects().length > 0)
  .map((element) => {
    const box = element.getBoundingClientRect();
    // What a tap 3px inside each corner reaches: the control itself, not a neighbour over it
    // and not nothing (the control cut off by the window or by an ancestor's overflow).
    const inset = 3;
    const corners = [
      [box.left + inset, box.top + inset], [box.right - inset, box.top + inset],
      [box.left + inset, box.bottom - inset], [box.right - inset, box.bottom - inset],
    ];
    return {
      name: element.id || element.textContent.trim(),
      left: box.left, right: box.right, top: box.top, bottom: box.bottom,
      reached: corners.every(([x, y]) => element.contains(document.elementFromPoint(x, y))),
    };
  })"""


@pytest.mark.parametrize(
    "viewport", [{"width": 390, "height": 844}, {"width": 320, "height": 640}], ids=["390", "320"]
)
async def test_every_header_control_fits_a_phone(
    open_page: OpenPage, server: WebServer, shoot: Shoot, viewport: dict[str, int]
) -> None:
    """A long name, a task count and an open chat: the widest the headers get."""
    account = await server.register(
        f"alexandra.konstantinopoulou.{uuid.uuid4().hex[:6]}@example.com",
        display_name="Alexandra Konstantinopoulou",
    )
    page = await open_page(account, viewport=viewport, is_mobile=True, has_touch=True)
    await send_and_wait(page, "add a task to renew the passport")
    await expect(page.locator("#task-count")).to_be_visible()
    await expect(page.locator("#chat-actions")).to_be_visible()
    await shoot(page, f"phone-header-{viewport['width']}")

    controls: list[dict[str, Any]] = await page.evaluate(HEADER_CONTROLS)
    names = {control["name"] for control in controls}
    assert {
        "toggle-sidebar",
        "knowledge-button",
        "toggle-tasks",
        "account-button",
        "model-picker",
    } <= names, names
    assert {"rename-chat", "archive-chat", "delete-chat"} <= names, names
    for control in controls:
        assert control["left"] >= 0, control
        assert control["right"] <= viewport["width"], control
        assert control["top"] >= 0, control
        assert control["bottom"] <= viewport["height"], control
        assert control["reached"], control
    await no_horizontal_scroll(page)
    account_name = page.locator("#account-name")
    assert (await account_name.bounding_box() or {"width": 0})["width"] >= 40

    # Each top-bar control works where it is.
    for button, opened in [
        ("#account-button", page.get_by_role("dialog", name="Account")),
        ("#knowledge-button", page.get_by_role("dialog", name="Knowledge")),
        ("#toggle-tasks", page.get_by_role("complementary", name="Tasks")),
        ("#toggle-sidebar", page.get_by_role("navigation", name="Chats")),
    ]:
        await page.locator(button).click()
        await expect(opened).to_be_visible()
        await expect(opened).to_be_in_viewport(ratio=1)
        await page.keyboard.press("Escape")
        await expect(opened).to_be_hidden()
    for button in ("#rename-chat", "#archive-chat", "#delete-chat", "#model-picker"):
        await page.locator(button).click(trial=True)


async def test_keyboard_alone(open_page: OpenPage, server: WebServer) -> None:
    account = await server.register()
    page = await open_page(signed_in=False)
    keyboard = page.keyboard
    # Sign in: the email field has the focus; Tab, type, Enter.
    await expect(page.locator("#auth-email")).to_be_focused()
    await keyboard.type(account.email)
    await keyboard.press("Tab")
    await keyboard.type(account.password)
    await keyboard.press("Enter")
    await expect(page.locator("#app-view")).to_be_visible()

    # The message box has the focus; Shift+Enter is a new line, Enter sends.
    await expect(composer(page)).to_be_focused()
    await keyboard.type("add a task to stretch")
    await keyboard.press("Shift+Enter")
    await keyboard.type("please")
    await expect(composer(page)).to_have_value("add a task to stretch\nplease")
    for _ in "\nplease":
        await keyboard.press("Backspace")
    await keyboard.press("Enter")
    await expect(user_texts(page)).to_have_text(["add a task to stretch"])
    await expect(assistant_messages(page).last).to_have_attribute("data-status", "complete")
    await wait_idle(page)
    await expect(task_titles(page)).to_have_text(["Stretch"])

    # Escape stops a reply.
    server.pace(SLOW_PACE_MS)
    await expect(composer(page)).to_be_focused()
    await keyboard.type("hello")
    await keyboard.press("Enter")
    reply = assistant_messages(page).nth(1)
    await expect(reply.locator(".markdown")).to_contain_text("offline model")
    await keyboard.press("Escape")
    await expect(reply).to_have_attribute("data-status", "cancelled")
    await wait_idle(page)
    await expect(assistant_messages(page).last).not_to_contain_text(INTRO_END)

    # Tab reaches the controls (back from the message box: the stopped reply's Regenerate), and
    # the focused one is outlined.
    await expect(composer(page)).to_be_focused()
    focused_outline = await tab_to(page, "button.regenerate", backwards=True)
    assert focused_outline not in ("none", ""), focused_outline
    server.pace(0)
    await keyboard.press("Enter")
    await expect(assistant_messages(page).last.locator(".branch-position")).to_have_text("2/2")
    await wait_idle(page)

    # Tasks tick with the space bar; the account dialog opens with Enter, closes with Escape.
    await page.get_by_role("checkbox", name="Stretch").focus()
    await keyboard.press("Space")
    await expect(page.get_by_role("checkbox", name="Stretch")).to_be_checked()
    await tab_to(page, "#account-button", backwards=True)
    await keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Account")
    await expect(dialog).to_be_visible()
    await keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#account-button")).to_be_focused()


async def tab_to(page: Page, selector: str, *, backwards: bool = False, limit: int = 80) -> str:
    """Press Tab (or Shift+Tab) until the focused element matches `selector`; answers the
    focused element's outline style."""
    for _ in range(limit):
        await page.keyboard.press("Shift+Tab" if backwards else "Tab")
        outline = await page.evaluate(
            """(selector) => {
              const element = document.activeElement;
              if (!element || !element.matches(selector)) return null;
              return getComputedStyle(element).outlineStyle;
            }""",
            selector,
        )
        if outline is not None:
            return str(outline)
    raise AssertionError(f"the keyboard never reached {selector}")


@pytest.mark.parametrize(("scheme", "background"), [("light", (255, 255, 255)), ("dark", None)])
async def test_light_and_dark(
    open_page: OpenPage,
    server: WebServer,
    shoot: Shoot,
    scheme: str,
    background: tuple[int, int, int] | None,
) -> None:
    page = await open_page(color_scheme=scheme)
    await send_and_wait(page, "add a task to read a book #home")
    await send_and_wait(page, "hello")
    await shoot(page, f"theme-{scheme}")
    colours = await page.evaluate(
        """() => {
          const rgb = (value) => value.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number);
          const body = getComputedStyle(document.body);
          const reply = document.querySelector('li.message-assistant .markdown');
          return {
            background: rgb(body.backgroundColor),
            text: rgb(getComputedStyle(reply).color),
          };
        }"""
    )
    luminance = [contrast_luminance(colours["background"]), contrast_luminance(colours["text"])]
    ratio = (max(luminance) + 0.05) / (min(luminance) + 0.05)
    assert ratio >= 7, f"text contrast {ratio:.1f}:1 in {scheme}"
    if background is not None:
        assert tuple(colours["background"]) == background
    else:
        assert max(colours["background"]) < 60, colours  # dark


def contrast_luminance(rgb: list[float]) -> float:
    """WCAG relative luminance."""

    def channel(value: float) -> float:
        value /= 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (channel(value) for value in rgb)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


async def test_streaming_is_announced_to_screen_readers(
    open_page: OpenPage, server: WebServer
) -> None:
    page = await open_page()
    await expect(page.get_by_role("main")).to_have_count(1)
    await expect(page.get_by_role("navigation", name="Chats")).to_have_count(1)
    await expect(page.get_by_role("complementary", name="Tasks")).to_have_count(1)
    await send(page, "list my tasks")
    await expect(page.locator("#live-status")).to_have_text("Reply finished.")
    await expect(page.locator("#messages")).to_have_attribute("aria-busy", "false")
