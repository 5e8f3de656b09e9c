"""How the tests drive the page: find its parts the way a person would (roles and labels), send
messages and wait for replies to be finished and read back from the server."""

from __future__ import annotations

from playwright.async_api import Locator, Page, expect

INTRO_START = "I'm Parley's offline model"
INTRO_END = "then pick that model for your chat."


def composer(page: Page) -> Locator:
    return page.get_by_role("textbox", name="Message", exact=True)


def messages(page: Page) -> Locator:
    return page.locator("#messages > li")


def assistant_messages(page: Page) -> Locator:
    return page.locator("#messages > li.message-assistant")


def user_messages(page: Page) -> Locator:
    return page.locator("#messages > li.message-user")


def user_texts(page: Page) -> Locator:
    """The text of each of the user's messages on the branch shown."""
    return page.locator("#messages > li.message-user .message-body")


def reply_texts(page: Page) -> Locator:
    """The Markdown of each reply on the branch shown."""
    return page.locator("#messages > li.message-assistant .message-body")


def chat_links(page: Page) -> Locator:
    return page.locator("#chat-list a.chat-link")


def tasks(page: Page) -> Locator:
    return page.locator("#task-list li.task")


def task_titles(page: Page) -> Locator:
    return page.locator("#task-list li.task .task-title")


async def wait_idle(page: Page) -> None:
    """No reply streaming and no branch loading: what is shown is what the server has."""
    await expect(page.locator("#messages")).to_have_attribute("aria-busy", "false")


async def send(page: Page, text: str) -> Locator:
    """Type `text` in the composer and press Enter; returns the reply's list item."""
    count = await assistant_messages(page).count()
    box = composer(page)
    await box.fill(text)
    await box.press("Enter")
    reply = assistant_messages(page).nth(count)
    await expect(reply).to_be_attached()
    return reply


async def send_and_wait(page: Page, text: str, *, status: str = "complete") -> Locator:
    """Send `text` and wait until the reply is finished and read back."""
    reply = await send(page, text)
    await expect(reply).to_have_attribute("data-status", status)
    await wait_idle(page)
    return assistant_messages(page).last


async def open_account(page: Page) -> Locator:
    await page.locator("#account-button").click()
    dialog = page.get_by_role("dialog", name="Account")
    await expect(dialog).to_be_visible()
    return dialog


async def install_text_recorder(page: Page) -> None:
    """Record, in the page, every distinct length the newest reply's text has had (to tell a
    reply that streamed in from one that appeared at once)."""
    await page.evaluate(
        """() => {
          window.__lengths = [];
          const list = document.getElementById('messages');
          new MutationObserver(() => {
            const replies = list.querySelectorAll('li.message-assistant');
            const last = replies[replies.length - 1];
            if (!last || last.dataset.status !== 'streaming') return;
            const text = last.querySelector('.markdown');
            const length = text ? text.textContent.length : 0;
            if (window.__lengths.at(-1) !== length) window.__lengths.push(length);
          }).observe(list, {childList: true, subtree: true, characterData: true});
        }"""
    )


async def recorded_lengths(page: Page) -> list[int]:
    lengths: list[int] = await page.evaluate("() => window.__lengths")
    return lengths
