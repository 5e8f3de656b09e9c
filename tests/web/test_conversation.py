"""A conversation in the page: replies stream in and are rendered as Markdown, tool calls show as
cards, the tasks panel follows the assistant, the model picker and each reply's tokens and cost,
stop, regenerate, edits into branches and switching between them (kept across reloads), and a
reply interrupted by a reload that resumes."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from tests.fakes import Reply
from tests.fixtures.pages import (
    INTRO_END,
    INTRO_START,
    assistant_messages,
    composer,
    install_text_recorder,
    messages,
    recorded_lengths,
    reply_texts,
    send,
    send_and_wait,
    task_titles,
    tasks,
    user_texts,
    wait_idle,
)
from tests.fixtures.web import (
    FAKE_MODEL,
    FAKE_MODEL_NAME,
    RELOAD_PACE_MS,
    SLOW_PACE_MS,
    OpenPage,
    Shoot,
    WebServer,
)

pytestmark = pytest.mark.browser


async def test_a_reply_streams_in_as_markdown_with_its_tokens_and_cost(
    open_page: OpenPage, server: WebServer, shoot: Shoot
) -> None:
    server.pace(15)
    page = await open_page()
    await install_text_recorder(page)
    reply = await send(page, "hello")
    await expect(page.get_by_role("button", name="Stop")).to_be_visible()
    await expect(reply).to_have_attribute("data-status", "complete")
    await wait_idle(page)
    await expect(page.get_by_role("button", name="Send")).to_be_visible()
    # It grew word by word in front of the user, not all at once.
    lengths = await recorded_lengths(page)
    assert len(lengths) >= 5, lengths
    assert lengths == sorted(lengths), lengths

    body = reply_texts(page).first
    await expect(body).to_contain_text(INTRO_START)
    await expect(body).to_contain_text(INTRO_END)
    # Markdown: a list of four items, inline code.
    await expect(body.locator("ul > li")).to_have_count(4)
    await expect(body.locator("code", has_text="OPENAI_API_KEY")).to_be_visible()
    meta = assistant_messages(page).first.locator(".message-meta")
    await expect(meta).to_contain_text("Parley offline")
    await expect(meta.locator(".meta-usage")).to_have_text(
        re.compile(r"^\d+ in · \d+ out tokens · \$0\.00$")
    )
    # The chat was created, titled by the server, and listed.
    await expect(page.locator("#chat-title")).to_have_text("hello")
    await expect(page.locator("#chat-list a.chat-link")).to_have_text(["hello"])
    await expect(page).to_have_title("hello · Parley")
    await shoot(page, "conversation")


async def test_the_assistant_manages_tasks_shown_in_cards_and_in_the_panel(
    open_page: OpenPage, server: WebServer, shoot: Shoot
) -> None:
    page = await open_page()
    await expect(page.locator("#task-empty")).to_be_visible()
    await send_and_wait(page, "add a task to buy milk tomorrow")
    await expect(task_titles(page)).to_have_text(["Buy milk"])
    await expect(tasks(page).first).to_contain_text("Due ")
    await expect(page.locator("#task-count")).to_have_text("1")

    card = page.locator("details.tool-card").first
    await expect(card.locator("summary")).to_contain_text("Add task")
    await expect(card.locator("summary")).to_contain_text("done")
    await expect(card.locator(".tool-input")).to_be_hidden()  # collapsed
    await card.locator("summary").click()
    await expect(card.locator(".tool-input")).to_contain_text('"title": "Buy milk"')
    await expect(card.locator(".tool-output")).to_contain_text('"completed": false')
    await expect(reply_texts(page).last).to_contain_text('Added "Buy milk"')
    await shoot(page, "tool-card-and-tasks")

    await send_and_wait(page, "complete buy milk")
    checkbox = page.get_by_role("checkbox", name="Buy milk")
    await expect(checkbox).to_be_checked()
    # The opened card stays open across the re-render.
    await expect(card.locator(".tool-input")).to_be_visible()
    await expect(page.locator("#task-count")).to_be_hidden()

    # The user ticks tasks too, and adds them from the panel.
    await page.get_by_label("New task").fill("Walk the dog")
    await page.get_by_label("New task").press("Enter")
    await expect(task_titles(page)).to_have_text(["Walk the dog", "Buy milk"])
    await page.get_by_role("checkbox", name="Walk the dog").check()
    await expect(page.get_by_role("checkbox", name="Walk the dog")).to_be_checked()
    await page.get_by_role("checkbox", name="Buy milk").uncheck()
    await expect(task_titles(page)).to_have_text(["Buy milk", "Walk the dog"])
    await send_and_wait(page, "what's on my list?")
    await expect(reply_texts(page).last).to_contain_text("You have 1 open task:")
    await expect(reply_texts(page).last.locator("li")).to_have_text([re.compile(r'^"Buy milk"')])

    await page.get_by_role("button", name="Delete task Walk the dog").click()
    await expect(task_titles(page)).to_have_text(["Buy milk"])


async def test_the_model_picker_and_a_priced_reply(open_page: OpenPage, server: WebServer) -> None:
    page = await open_page()
    picker = page.get_by_label("Model")
    await expect(picker).to_have_value("offline:parley")
    await expect(picker.locator("option")).to_have_text(
        [FAKE_MODEL_NAME, "Parley offline (default)"]
    )
    await picker.select_option(label=FAKE_MODEL_NAME)
    server.fake.script.push(
        Reply(text="Hi **there**! Here is `code`.", input_tokens=1200, output_tokens=300)
    )
    await send_and_wait(page, "hi")
    body = reply_texts(page).last
    await expect(body.locator("strong")).to_have_text("there")
    meta = assistant_messages(page).last.locator(".message-meta")
    await expect(meta.locator(".meta-model")).to_have_text(FAKE_MODEL_NAME)
    # 1200 * $2 / 1M + 300 * $8 / 1M = $0.0048
    await expect(meta.locator(".meta-usage")).to_have_text("1,200 in · 300 out tokens · $0.0048")

    # The choice is the chat's: it is still there after a reload.
    await page.reload()
    await expect(page.get_by_label("Model")).to_have_value(FAKE_MODEL)
    await expect(assistant_messages(page).last.locator(".meta-usage")).to_have_text(
        "1,200 in · 300 out tokens · $0.0048"
    )
    # Back to the offline model for the next reply.
    await page.get_by_label("Model").select_option("offline:parley")
    await send_and_wait(page, "list my tasks")
    await expect(assistant_messages(page).last.locator(".meta-model")).to_have_text(
        "Parley offline"
    )


async def test_markdown_code_blocks_and_links(open_page: OpenPage, server: WebServer) -> None:
    markdown = "\n".join(
        [
            "## Plan",
            "",
            "1. first *step*",
            "2. second ~~step~~",
            "",
            "```python",
            "def greet(name):",
            "    return f'<b>{name}</b>'",
            "```",
            "",
            "> quoted",
            "",
            "| a | b |",
            "|---|--:|",
            "| 1 | 2 |",
            "",
            "See [the docs](https://example.com/docs) or https://example.org/x.",
        ]
    )
    page = await open_page()
    await page.get_by_label("Model").select_option(FAKE_MODEL)
    server.fake.script.push(Reply(text=markdown))
    await send_and_wait(page, "show me")
    body = reply_texts(page).last
    await expect(body.locator("h4")).to_have_text("Plan")
    await expect(body.locator("ol > li")).to_have_text(["first step", "second step"])
    await expect(body.locator("ol em")).to_have_text("step")
    await expect(body.locator("ol del")).to_have_text("step")
    code = body.locator(".code-block")
    await expect(code.locator(".code-header")).to_contain_text("python")
    await expect(code.locator("pre code")).to_have_text(
        "def greet(name):\n    return f'<b>{name}</b>'"
    )
    await expect(code.locator("code.language-python")).to_have_count(1)
    await expect(body.locator("blockquote")).to_have_text("quoted")
    await expect(body.locator("table td")).to_have_text(["1", "2"])
    links = body.locator("a")
    await expect(links).to_have_count(2)
    await expect(links.first).to_have_attribute("href", "https://example.com/docs")
    await expect(links.first).to_have_attribute("rel", "noopener noreferrer nofollow")
    await expect(links.first).to_have_attribute("target", "_blank")
    await expect(links.last).to_have_attribute("href", "https://example.org/x")
    await expect(body.locator("b")).to_have_count(0)


async def test_stop_regenerate_and_switch_between_replies(
    open_page: OpenPage, server: WebServer, shoot: Shoot
) -> None:
    server.pace(SLOW_PACE_MS)
    page = await open_page()
    reply = await send(page, "hello")
    await expect(reply.locator(".markdown")).to_contain_text("offline model")
    await page.get_by_role("button", name="Stop").click()
    await expect(reply).to_have_attribute("data-status", "cancelled")
    await wait_idle(page)
    stopped = assistant_messages(page).last
    await expect(stopped.locator(".badge")).to_have_text("Stopped")
    await expect(stopped.locator(".markdown")).not_to_contain_text(INTRO_END)
    await expect(composer(page)).to_be_enabled()

    server.pace(0)
    await stopped.get_by_role("button", name="Regenerate this reply").click()
    await expect(assistant_messages(page).last).to_have_attribute("data-status", "complete")
    await wait_idle(page)
    current = assistant_messages(page).last
    await expect(messages(page)).to_have_count(2)
    await expect(current.locator(".branch-position")).to_have_text("2/2")
    await expect(current.locator(".markdown")).to_contain_text(INTRO_END)

    await current.get_by_role("button", name="Previous version of this reply").click()
    await wait_idle(page)
    current = assistant_messages(page).last
    await expect(current.locator(".branch-position")).to_have_text("1/2")
    await expect(current.locator(".badge")).to_have_text("Stopped")
    await expect(current.get_by_role("button", name="Next version of this reply")).to_be_focused()
    await shoot(page, "branches")

    # The choice is kept by the server: a reload shows the same version.
    await page.reload()
    current = assistant_messages(page).last
    await expect(current.locator(".branch-position")).to_have_text("1/2")
    await expect(current.locator(".badge")).to_have_text("Stopped")
    await current.get_by_role("button", name="Next version of this reply").click()
    await wait_idle(page)
    await expect(assistant_messages(page).last.locator(".branch-position")).to_have_text("2/2")
    await expect(assistant_messages(page).last.locator(".badge")).to_have_count(0)


async def test_an_edit_starts_a_branch_and_both_stay_reachable(
    open_page: OpenPage, server: WebServer
) -> None:
    page = await open_page()
    await send_and_wait(page, "add a task to call mom")
    await send_and_wait(page, "what's on my list?")
    await expect(user_texts(page)).to_have_text(["add a task to call mom", "what's on my list?"])

    # Edit the second message: a new branch from the first reply.
    second = page.locator("#messages > li.message-user").nth(1)
    await second.get_by_role("button", name="Edit this message").click()
    editor = page.get_by_role("textbox", name="Edit your message")
    await expect(editor).to_be_focused()
    await expect(editor).to_have_value("what's on my list?")
    await editor.fill("show my completed tasks")
    await editor.press("Enter")
    await expect(assistant_messages(page)).to_have_count(2)
    await expect(assistant_messages(page).last).to_have_attribute("data-status", "complete")
    await wait_idle(page)
    await expect(user_texts(page)).to_have_text(
        ["add a task to call mom", "show my completed tasks"]
    )
    await expect(reply_texts(page).last).to_contain_text("You have no completed tasks.")
    edited = page.locator("#messages > li.message-user").nth(1)
    await expect(edited.locator(".branch-position")).to_have_text("2/2")

    await edited.get_by_role("button", name="Previous version of this message").click()
    await wait_idle(page)
    await expect(user_texts(page)).to_have_text(["add a task to call mom", "what's on my list?"])
    await expect(reply_texts(page).last).to_contain_text('"Call mom"')

    # Editing the first message makes a new first message; Escape cancels an edit.
    first = page.locator("#messages > li.message-user").first
    await first.get_by_role("button", name="Edit this message").click()
    await page.get_by_role("textbox", name="Edit your message").press("Escape")
    await expect(page.get_by_role("textbox", name="Edit your message")).to_have_count(0)
    await first.get_by_role("button", name="Edit this message").click()
    await page.get_by_role("textbox", name="Edit your message").fill("hello")
    await page.get_by_role("button", name="Send as new version").click()
    await expect(assistant_messages(page)).to_have_count(1)
    await expect(assistant_messages(page).last).to_have_attribute("data-status", "complete")
    await wait_idle(page)
    await expect(user_texts(page)).to_have_text(["hello"])
    await expect(page.locator("#messages > li.message-user .branch-position")).to_have_text("2/2")

    # After a reload: the same branch; and the first one is still there, with its own branches
    # (switching to it shows its newest branch).
    await page.reload()
    await expect(user_texts(page)).to_have_text(["hello"])
    await page.get_by_role("button", name="Previous version of this message").click()
    await wait_idle(page)
    await expect(user_texts(page)).to_have_text(
        ["add a task to call mom", "show my completed tasks"]
    )
    second = page.locator("#messages > li.message-user").nth(1)
    await expect(second.locator(".branch-position")).to_have_text("2/2")


async def test_a_reply_interrupted_by_a_reload_resumes(
    open_page: OpenPage, server: WebServer, shoot: Shoot
) -> None:
    server.pace(RELOAD_PACE_MS)
    page = await open_page()
    reply = await send(page, "hello")
    await expect(reply.locator(".markdown")).to_contain_text("offline model")
    await expect(reply).to_have_attribute("data-status", "streaming")
    await page.reload()

    resumed = assistant_messages(page).last
    await expect(resumed).to_have_attribute("data-status", "streaming")
    await expect(resumed.locator(".badge")).to_have_text("Replying…")
    await expect(page.get_by_role("button", name="Stop")).to_be_visible()
    await shoot(page, "resumed-after-reload")
    await expect(resumed).to_have_attribute("data-status", "complete")
    await wait_idle(page)
    await expect(messages(page)).to_have_count(2)
    body = reply_texts(page).last
    await expect(body).to_contain_text(INTRO_START)
    await expect(body).to_contain_text(INTRO_END)
    assert (await body.inner_text()).count("I'm Parley's offline model") == 1
    await expect(user_texts(page)).to_have_text(["hello"])

    # Nothing is left running: a reload now shows the finished reply, without a stream.
    await page.reload()
    await expect(assistant_messages(page).last).to_have_attribute("data-status", "complete")
    await expect(page.get_by_role("button", name="Send")).to_be_visible()


async def test_switching_chats_during_a_reply_and_coming_back(
    open_page: OpenPage, server: WebServer
) -> None:
    page = await open_page()
    await send_and_wait(page, "list my tasks")
    server.pace(SLOW_PACE_MS)
    await page.get_by_role("button", name="New chat").click()
    reply = await send(page, "hello")
    await expect(reply.locator(".markdown")).to_contain_text("offline model")
    # Away to the other chat while the reply goes on, and back.
    await page.locator("#chat-list a.chat-link", has_text="list my tasks").click()
    await expect(user_texts(page)).to_have_text(["list my tasks"])
    await expect(page.get_by_role("button", name="Send")).to_be_visible()
    await page.locator("#chat-list a.chat-link", has_text="hello").click()
    await expect(assistant_messages(page).last).to_have_attribute("data-status", "complete")
    await wait_idle(page)
    await expect(reply_texts(page).last).to_contain_text(INTRO_END)


async def test_a_long_conversation_loads_its_earlier_messages(
    open_page: OpenPage, server: WebServer
) -> None:
    server.pace(0)
    account = await server.register()
    chat = await server.call(account, "POST", "/api/chats", {"title": "Long"}, 201)
    for number in range(1, 27):  # 52 messages: one page of 50, and 2 before it
        response = await server.http.post(
            f"/api/chats/{chat['id']}/messages?stream=false",
            json={"content": f"what's on my list? ({number})"},
            headers=account.headers,
        )
        assert response.status_code == 201, response.text
    page = await open_page(account, path=f"/#/chat/{chat['id']}")
    await expect(messages(page)).to_have_count(50)
    await expect(user_texts(page).first).to_have_text("what's on my list? (2)")
    await expect(user_texts(page).last).to_have_text("what's on my list? (26)")
    await page.get_by_role("button", name="Load earlier messages").click()
    await expect(messages(page)).to_have_count(52)
    await expect(user_texts(page).first).to_have_text("what's on my list? (1)")
    await expect(page.get_by_role("button", name="Load earlier messages")).to_be_hidden()
    # A reply goes under the newest message; what was loaded stays.
    await send_and_wait(page, "list my tasks")
    await expect(messages(page)).to_have_count(54)
    await expect(user_texts(page).first).to_have_text("what's on my list? (1)")
    await expect(user_texts(page).last).to_have_text("list my tasks")


async def test_a_failed_reply_says_so(open_page: OpenPage, server: WebServer) -> None:
    page = await open_page()
    await page.get_by_label("Model").select_option(FAKE_MODEL)
    server.fake.script.push(Reply(status=400, error_message="the model refused"))
    reply = await send(page, "hi")
    await expect(reply).to_have_attribute("data-status", "error")
    await wait_idle(page)
    failed = assistant_messages(page).last
    await expect(failed.locator(".badge")).to_have_text("Failed")
    await expect(failed.locator(".message-error")).not_to_be_empty()
    # It can be tried again.
    server.fake.script.push(Reply(text="Better now."))
    await failed.get_by_role("button", name="Regenerate this reply").click()
    await expect(assistant_messages(page).last).to_have_attribute("data-status", "complete")
    await wait_idle(page)
    await expect(reply_texts(page).last).to_have_text("Better now.")
    await expect(assistant_messages(page).last.locator(".branch-position")).to_have_text("2/2")


async def test_the_tasks_panel_refreshes_while_the_reply_streams(
    open_page: OpenPage, server: WebServer
) -> None:
    server.pace(100)
    page = await open_page()
    await expect(page.locator("#task-empty")).to_be_visible()
    # Record the reply's status at the moment the task shows up in the panel.
    await page.evaluate(
        """() => {
          const list = document.getElementById('task-list');
          new MutationObserver((_, observer) => {
            if (!list.querySelector('li.task')) return;
            const reply = document.querySelector('#messages > li:last-child');
            window.__replyWhenTaskShown = reply ? reply.dataset.status : 'none';
            observer.disconnect();
          }).observe(list, {childList: true});
        }"""
    )
    await send_and_wait(page, "add a task to water the ferns and the big palm in the hall")
    await expect(task_titles(page)).to_have_count(1)
    # The tool's result refreshed the panel while the reply was still being written.
    assert await page.evaluate("() => window.__replyWhenTaskShown") == "streaming"
