"""The page follows the live feed (`GET /api/events`): a change made in another tab, through the
API (standing in for MCP or the assistant) or by the server's own jobs shows at once in every open
tab of the user, and in no one else's; the feed resumes after a dropped connection without losing
or repeating an event; reminders show as notifications; the task form sets a reminder and a
recurrence.

The events are numbered and delivered by the relay that runs beside a worker (`web_worker`), as
`parley worker` runs beside the web server in a deployment; the reminders and the next occurrences
of recurring tasks are that worker's jobs and consumers too."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.async_api import Dialog, Locator, Page, Request, Route, expect

from tests.fixtures.pages import (
    chat_links,
    open_account,
    send_and_wait,
    task_titles,
    tasks,
    user_texts,
)
from tests.fixtures.web import OpenPage, PageWatch, Shoot, WebServer

pytestmark = pytest.mark.browser

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# A stand-in for the browser's Notification API (headless Chromium shows none): it records what
# the page shows and whether, and how often, it asked for permission.
FAKE_NOTIFICATION = """
window.__notifications = [];
window.__permissionAsked = 0;
class FakeNotification {
  constructor(title, options = {}) { window.__notifications.push({ title, ...options }); }
  close() {}
  addEventListener() {}
}
FakeNotification.permission = "default";
FakeNotification.requestPermission = async () => {
  window.__permissionAsked += 1;
  FakeNotification.permission = "granted";
  return "granted";
};
Object.defineProperty(window, "Notification", {
  value: FakeNotification, configurable: true, writable: true,
});
"""


class Connections:
    """The `Last-Event-ID` of each connection a route served, as they come."""

    def __init__(self) -> None:
        self.last_event_ids: list[str | None] = []
        self.changed = asyncio.Event()

    def add(self, last_event_id: str | None) -> None:
        self.last_event_ids.append(last_event_id)
        self.changed.set()

    def __len__(self) -> int:
        return len(self.last_event_ids)

    async def wait_for(self, count: int) -> None:
        """Until `count` connections were served (a TimeoutError after 15 s)."""
        async with asyncio.timeout(15):
            while len(self) < count:
                self.changed.clear()
                await self.changed.wait()


async def feed_open(page: Page) -> None:
    """Wait until the page follows the feed (its stream is open)."""
    await expect(page.locator("body")).to_have_attribute("data-feed", "open")


async def new_tab(open_page: OpenPage, page: Page) -> Page:
    """Another tab of the same browser (same session), watched like the fixture's pages."""
    tab = await page.context.new_page()
    watch = PageWatch()
    open_page.watches[tab] = watch

    async def on_dialog(dialog: Dialog) -> None:
        watch.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    tab.on("pageerror", lambda error: watch.errors.append(f"uncaught: {error}"))
    tab.on("dialog", on_dialog)
    await tab.goto("/")
    await expect(tab.locator("#app-view")).to_be_visible()
    await feed_open(tab)
    return tab


async def no_horizontal_scroll(page: Page) -> None:
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"


def task_item(page: Page, title: str) -> Locator:
    return tasks(page).filter(has=page.get_by_text(title, exact=True))


def reminder_cards(page: Page) -> Locator:
    return page.locator("#reminder-list li.reminder")


async def mark(page: Page, title: str) -> None:
    """Tag the task's list item (a property of the element itself): it survives only if the
    item is updated in place rather than drawn again."""
    await task_item(page, title).evaluate("(item) => { item.__kept = true; }")


async def still_marked(page: Page, title: str) -> bool:
    return bool(await task_item(page, title).evaluate("(item) => item.__kept === true"))


async def test_tasks_follow_every_tab_of_the_user(
    open_page: OpenPage, server: WebServer, web_worker: None
) -> None:
    account = await server.register()
    tab_a = await open_page(account)
    tab_b = await new_tab(open_page, tab_a)
    await feed_open(tab_a)

    # Made in tab A: shown there from the API's answer, in tab B from the feed.
    await tab_a.get_by_label("New task").fill("Water the plants")
    await tab_a.get_by_label("New task").press("Enter")
    await expect(task_titles(tab_a)).to_have_text(["Water the plants"])
    await expect(task_titles(tab_b)).to_have_text(["Water the plants"])
    await mark(tab_a, "Water the plants")
    await mark(tab_b, "Water the plants")

    # Made through the API (as an MCP client or the assistant would): both tabs show it. Tab A
    # receives its events in order, so once this one shows, its own "created" event for the
    # first task has been applied too: still one of it, and its item was not drawn again.
    await server.call(account, "POST", "/api/tasks", {"title": "Call the plumber"}, 201)
    for tab in (tab_a, tab_b):
        await expect(task_titles(tab)).to_have_text(["Call the plumber", "Water the plants"])
        assert await still_marked(tab, "Water the plants")
    await expect(tab_b.locator("#task-count")).to_have_text("2")

    # Completed in tab B: ticked in tab A.
    await tab_b.get_by_role("checkbox", name="Water the plants").check()
    await expect(tab_a.get_by_role("checkbox", name="Water the plants")).to_be_checked()
    await expect(tab_a.locator("#task-count")).to_have_text("1")
    # Reopened in tab A: open again in tab B, first (open tasks first, newest first).
    await tab_a.get_by_role("checkbox", name="Water the plants").uncheck()
    await expect(tab_b.get_by_role("checkbox", name="Water the plants")).not_to_be_checked()
    await expect(task_titles(tab_b)).to_have_text(["Call the plumber", "Water the plants"])

    # Changed and deleted through the API, and deleted in a tab: every tab follows.
    plumber = task_item(tab_a, "Call the plumber")
    plumber_id = await plumber.get_attribute("data-task-id")
    await server.call(
        account,
        "PATCH",
        f"/api/tasks/{plumber_id}",
        {"title": "Call the plumber at 9", "priority": "high"},
    )
    for tab in (tab_a, tab_b):
        await expect(task_titles(tab)).to_have_text(["Call the plumber at 9", "Water the plants"])
        await expect(task_item(tab, "Call the plumber at 9")).to_contain_text("high priority")
    await tab_a.get_by_role("button", name="Delete task Water the plants").click()
    await expect(task_titles(tab_b)).to_have_text(["Call the plumber at 9"])
    await server.call(account, "DELETE", f"/api/tasks/{plumber_id}", status=204)
    for tab in (tab_a, tab_b):
        await expect(tasks(tab)).to_have_count(0)
        await expect(tab.locator("#task-empty")).to_be_visible()


async def test_the_feed_resumes_after_a_dropped_connection(
    open_page: OpenPage, server: WebServer, web_worker: None
) -> None:
    account = await server.register()
    page = await open_page(account)
    feed_requests: list[Request] = []
    page.on(
        "request",
        lambda request: feed_requests.append(request) if "/api/events" in request.url else None,
    )
    await feed_open(page)
    await server.call(account, "POST", "/api/tasks", {"title": "Before the drop"}, 201)
    await expect(task_titles(page)).to_have_text(["Before the drop"])

    # The connection drops; meanwhile a task is made elsewhere.
    await page.context.set_offline(True)
    await expect(page.locator("body")).not_to_have_attribute("data-feed", "open")
    await server.call(account, "POST", "/api/tasks", {"title": "While offline"}, 201)
    await page.context.set_offline(False)

    # Back online: the feed goes on after the last event it had, and the task arrives, once.
    await expect(task_titles(page)).to_have_text(["While offline", "Before the drop"])
    await feed_open(page)
    resumed = [await request.header_value("last-event-id") for request in feed_requests]
    assert [value for value in resumed if value], resumed
    assert all(UUID.match(value) for value in resumed if value)
    # The next event still comes (the resumed stream is followed on), once.
    await server.call(account, "POST", "/api/tasks", {"title": "After the drop"}, 201)
    await expect(task_titles(page)).to_have_text(
        ["After the drop", "While offline", "Before the drop"]
    )


async def test_another_users_tab_never_shows_their_tasks(
    open_page: OpenPage, server: WebServer, web_worker: None
) -> None:
    ada = await server.register()
    bob = await server.register()
    ada_tab = await open_page(ada)
    bob_tab = await open_page(bob)
    await feed_open(bob_tab)
    await server.call(ada, "POST", "/api/tasks", {"title": "Ada's secret"}, 201)
    await expect(task_titles(ada_tab)).to_have_text(["Ada's secret"])
    # Bob's own task comes after Ada's: by then Ada's would have come too, were it sent.
    await server.call(bob, "POST", "/api/tasks", {"title": "Bob's errand"}, 201)
    await expect(task_titles(bob_tab)).to_have_text(["Bob's errand"])

    # In the same tab, Ada signs out and Bob signs in: the feed is Bob's from then on.
    dialog = await open_account(ada_tab)
    await dialog.get_by_role("button", name="Log out").click()
    await expect(ada_tab.locator("body")).to_have_attribute("data-feed", "closed")
    auth = ada_tab.locator("#auth-view")
    await auth.get_by_label("Email").fill(bob.email)
    await auth.get_by_label("Password").fill(bob.password)
    await auth.get_by_role("button", name="Sign in").click()
    await expect(task_titles(ada_tab)).to_have_text(["Bob's errand"])
    await feed_open(ada_tab)
    await server.call(ada, "POST", "/api/tasks", {"title": "Ada's second secret"}, 201)
    await server.call(bob, "POST", "/api/tasks", {"title": "Bob's second errand"}, 201)
    for tab in (ada_tab, bob_tab):
        await expect(task_titles(tab)).to_have_text(["Bob's second errand", "Bob's errand"])
    await expect(ada_tab.get_by_text("Ada's", exact=False)).to_have_count(0)


def _sse(event: dict[str, Any], line_end: str) -> str:
    """One event as SSE, its JSON spread over several `data:` lines."""
    lines = [f"id: {event['id']}"] + [
        f"data: {line}" for line in json.dumps(event, indent=1).split("\n")
    ]
    return line_end.join(lines) + line_end + line_end


def _cloud_event(
    user_id: str, event_type: str, subject: str, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "parley",
        "type": event_type,
        "subject": subject,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "parleyuser": user_id,
        "data": data,
    }


async def test_events_are_read_in_every_sse_form_and_a_repeat_shows_once(
    open_page: OpenPage, server: WebServer
) -> None:
    """The feed as the page reads it, served by a route: CRLF, CR and LF line ends, comments,
    `retry:`, data over several lines; the same events delivered again on every reconnect (as
    after a redelivery) show once; an event of another user is never shown."""
    account = await server.register()
    user_id = account.user["id"]
    task = await server.call(account, "POST", "/api/tasks", {"title": "Buy flour"}, 201)
    page = await open_page(account)
    await expect(task_titles(page)).to_have_text(["Buy flour"])
    await feed_open(page)

    later = (datetime.fromisoformat(task["updated_at"]) + timedelta(seconds=1)).isoformat()
    renamed = {**task, "title": "Buy rye flour", "updated_at": later}
    updated = _cloud_event(user_id, "parley.task.updated.v1", f"tasks/{task['id']}", renamed)
    reminder = _cloud_event(
        user_id,
        "parley.reminder.due.v1",
        f"tasks/{task['id']}",
        {"task": renamed, "remind_at": datetime.now(UTC).isoformat()},
    )
    stranger = {**task, "id": str(uuid.uuid4()), "title": "Not yours", "updated_at": later}
    foreign = _cloud_event(str(uuid.uuid4()), "parley.task.created.v1", "tasks/x", stranger)
    body = (
        ": connected\r\n\r\n"
        + "retry: 200\r\n\r\n"
        + _sse(updated, "\r\n")
        + ": keep-alive\n\n"
        + _sse(reminder, "\r")
        + _sse(foreign, "\n")
    )
    served = Connections()

    async def serve(route: Route) -> None:
        served.add(await route.request.header_value("last-event-id"))
        await route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=body)

    # From the next connection on, the feed is the route's: drop the real one.
    await page.route("**/api/events", serve)
    await page.context.set_offline(True)
    await expect(page.locator("body")).not_to_have_attribute("data-feed", "open")
    await page.context.set_offline(False)

    await expect(task_titles(page)).to_have_text(["Buy rye flour"])
    await expect(reminder_cards(page)).to_have_count(1)
    await expect(reminder_cards(page)).to_contain_text("Buy rye flour")
    # The same events again, and again (each stream ends; the page reconnects after `retry`).
    await served.wait_for(4)
    await expect(reminder_cards(page)).to_have_count(1)
    await expect(task_titles(page)).to_have_text(["Buy rye flour"])
    await expect(page.get_by_text("Not yours")).to_have_count(0)
    # Each reconnection named the last event it had read (the last one, spread over lines).
    first, *then = served.last_event_ids
    assert first is None or UUID.match(first)
    assert set(then) == {foreign["id"]}, served.last_event_ids

    # Dismissed, it stays dismissed when the same reminder comes again.
    await reminder_cards(page).get_by_role("button", name="Dismiss").click()
    await expect(reminder_cards(page)).to_have_count(0)
    await expect(page.locator("#reminders")).to_be_hidden()
    seen = len(served)
    await served.wait_for(seen + 2)
    await expect(reminder_cards(page)).to_have_count(0)


async def test_a_reminder_shows_as_a_notification_and_marks_the_task_done(
    open_page: OpenPage, server: WebServer, web_worker: None, shoot: Shoot
) -> None:
    account = await server.register()
    page = await open_page(account)
    await page.add_init_script(FAKE_NOTIFICATION)
    await page.reload()
    await expect(page.locator("#app-view")).to_be_visible()
    await feed_open(page)
    assert await page.evaluate("() => window.__permissionAsked") == 0  # never by itself

    # The user turns notifications on from the task form, where a reminder is being set.
    form = page.locator("#task-form")
    await form.get_by_text("Due date, reminder, repeat").click()
    notify = form.get_by_role("button", name="Turn on notifications")
    await expect(notify).to_be_hidden()
    await form.get_by_label("Remind me at").fill("2030-01-07T09:30")
    await expect(notify).to_be_visible()
    await notify.click()
    await expect(notify).to_be_hidden()
    assert await page.evaluate("() => window.__permissionAsked") == 1
    await form.get_by_label("Remind me at").fill("")

    # A task whose reminder is two seconds away (made through the API, as the assistant would).
    remind_at = datetime.now(UTC) + timedelta(seconds=2)
    task = await server.call(
        account,
        "POST",
        "/api/tasks",
        {
            "title": "Take the cake out",
            "due_at": "2030-01-08T00:00:00Z",
            "remind_at": remind_at.isoformat(),
        },
        201,
    )
    await expect(task_item(page, "Take the cake out")).to_contain_text("Reminder at ")
    card = reminder_cards(page)
    await expect(card).to_have_count(1, timeout=30_000)
    await expect(card.locator(".reminder-title")).to_have_text("Take the cake out")
    await expect(card.locator(".reminder-due")).to_contain_text("2030")
    # In a live region, so that it is announced.
    await expect(page.locator("#reminders [role=status]")).to_contain_text("Take the cake out")
    await page.wait_for_function("() => window.__notifications.length === 1")
    shown = await page.evaluate("() => window.__notifications[0]")
    assert shown["title"] == "Reminder: Take the cake out"
    assert "2030" in shown["body"]
    await shoot(page, "reminder")

    await card.get_by_role("button", name="Mark done").click()
    await expect(card).to_have_count(0)
    await expect(page.get_by_role("checkbox", name="Take the cake out")).to_be_checked()
    stored = await server.call(account, "GET", f"/api/tasks/{task['id']}")
    assert stored["completed"] is True


async def test_the_form_sets_a_reminder_and_a_recurrence(
    open_page: OpenPage, server: WebServer, shoot: Shoot
) -> None:
    account = await server.register()
    page = await open_page(account, timezone_id="Europe/Paris")
    form = page.locator("#task-form")
    await form.get_by_text("Due date, reminder, repeat").click()
    await page.get_by_label("New task").fill("Water the ferns")
    await form.get_by_label("Due date").fill("2030-01-07")  # a Monday
    repeat = form.get_by_label("Repeat", exact=True)
    await expect(repeat.locator("option")).to_have_text(
        ["None", "Daily", "Weekdays", "Weekly on Monday", "Monthly", "Custom…"]
    )
    await repeat.select_option(label="Weekly on Monday")
    await form.get_by_label("Remind me at").fill("2030-01-07T09:30")
    await shoot(page, "task-options")

    def posted(request: Request) -> bool:
        return request.method == "POST" and request.url.endswith("/api/tasks")

    async with page.expect_request(posted) as caught:
        await form.get_by_role("button", name="Add", exact=True).click()
    sent = (await caught.value).post_data_json
    # The reminder carries the browser's offset (Paris, in winter: +01:00).
    assert sent == {
        "title": "Water the ferns",
        "due_at": "2030-01-07T00:00:00Z",
        "remind_at": "2030-01-07T09:30:00+01:00",
        "recurrence": "FREQ=WEEKLY;BYDAY=MO",
    }
    item = task_item(page, "Water the ferns")
    await expect(item.locator(".task-repeat")).to_have_text("Repeats weekly on Monday")
    await expect(item.locator(".task-reminder")).to_contain_text("Reminder at ")
    await expect(item.locator(".task-reminder")).to_contain_text("9:30")
    ferns_id = await item.get_attribute("data-task-id")
    stored = await server.call(account, "GET", f"/api/tasks/{ferns_id}")
    assert stored["recurrence"] == "FREQ=WEEKLY;BYDAY=MO"
    assert datetime.fromisoformat(stored["remind_at"]) == datetime(2030, 1, 7, 8, 30, tzinfo=UTC)
    # The form is ready for the next task.
    await expect(page.get_by_label("New task")).to_have_value("")
    await expect(form.get_by_label("Due date")).to_have_value("")
    await expect(repeat).to_have_value("")

    # A rule the server refuses: its message next to the field, and nothing added.
    await page.get_by_label("New task").fill("Never ever")
    await repeat.select_option(label="Custom…")
    rule = form.get_by_label("Rule")
    await expect(rule).to_be_focused()
    await rule.fill("FREQ=NEVER")
    await form.get_by_role("button", name="Add", exact=True).click()
    error = page.locator("#task-repeat-error")
    await expect(error).to_contain_text("FREQ must be one of")
    await expect(rule).to_have_attribute("aria-invalid", "true")
    await expect(rule).to_be_focused()
    await expect(task_titles(page)).to_have_text(["Water the ferns"])
    await expect(page.get_by_label("New task")).to_have_value("Never ever")
    await rule.fill("FREQ=WEEKLY;INTERVAL=2;BYDAY=FR")
    await form.get_by_role("button", name="Add", exact=True).click()
    await expect(task_titles(page)).to_have_text(["Never ever", "Water the ferns"])
    await expect(task_item(page, "Never ever").locator(".task-repeat")).to_have_text(
        "Repeats every 2 weeks on Friday"
    )
    await expect(error).to_be_empty()

    # Edited: it stops repeating and loses its reminder (both sent as null).
    edit = page.get_by_role("button", name="Edit task Water the ferns")
    await edit.click()
    dialog = page.get_by_role("dialog", name="Edit task")
    await expect(dialog.get_by_label("Title")).to_be_focused()
    await expect(dialog.get_by_label("Repeat", exact=True)).to_have_value("FREQ=WEEKLY;BYDAY=MO")
    await expect(dialog.get_by_label("Remind me at")).to_have_value("2030-01-07T09:30")
    await expect(dialog.get_by_label("Due date")).to_have_value("2030-01-07")
    await shoot(page, "task-edit")
    await dialog.get_by_label("Repeat", exact=True).select_option(label="None")
    await dialog.get_by_label("Remind me at").fill("")

    def patched(request: Request) -> bool:
        return request.method == "PATCH" and request.url.endswith(f"/api/tasks/{ferns_id}")

    async with page.expect_request(patched) as caught:
        await dialog.get_by_role("button", name="Save").click()
    assert (await caught.value).post_data_json == {"remind_at": None, "recurrence": None}
    await expect(dialog).to_be_hidden()
    await expect(edit).to_be_focused()
    await expect(item.locator(".task-repeat")).to_have_count(0)
    await expect(item.locator(".task-reminder")).to_have_count(0)
    await expect(item).to_contain_text("Due ")

    # A bad rule in the dialog is shown there, and the dialog stays open.
    await edit.click()
    await dialog.get_by_label("Repeat", exact=True).select_option(label="Custom…")
    await dialog.get_by_label("Rule").fill("FREQ=NEVER")
    await dialog.get_by_role("button", name="Save").click()
    await expect(dialog.locator("#edit-repeat-error")).to_contain_text("FREQ must be one of")
    await expect(dialog).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()


async def test_completing_a_recurring_task_brings_its_next_occurrence(
    open_page: OpenPage, server: WebServer, web_worker: None
) -> None:
    account = await server.register()
    tab_a = await open_page(account)
    tab_b = await new_tab(open_page, tab_a)
    due = datetime.now(UTC).date() + timedelta(days=1)
    form = tab_a.locator("#task-form")
    await form.get_by_text("Due date, reminder, repeat").click()
    await tab_a.get_by_label("New task").fill("Take out the bins")
    await form.get_by_label("Due date").fill(due.isoformat())
    await form.get_by_label("Repeat", exact=True).select_option(label="Daily")
    await form.get_by_role("button", name="Add", exact=True).click()
    await expect(task_item(tab_b, "Take out the bins")).to_contain_text("Repeats daily")

    # Done in tab B: the server makes the next occurrence, which both tabs see arrive.
    await tab_b.get_by_role("checkbox", name="Take out the bins").check()
    for tab in (tab_a, tab_b):
        await expect(task_titles(tab)).to_have_text(["Take out the bins", "Take out the bins"])
        await expect(tasks(tab).first.get_by_role("checkbox")).not_to_be_checked()
        await expect(tasks(tab).last.get_by_role("checkbox")).to_be_checked()
        await expect(tasks(tab).first).to_contain_text("Repeats daily")
    listed = await server.call(account, "GET", "/api/tasks?completed=false")
    assert [task["due_at"][:10] for task in listed["items"]] == [
        (due + timedelta(days=1)).isoformat()
    ]


async def test_the_chat_list_and_the_open_chat_follow_other_tabs(
    open_page: OpenPage, server: WebServer, web_worker: None
) -> None:
    account = await server.register()
    tab_a = await open_page(account)
    tab_b = await new_tab(open_page, tab_a)

    # A chat made in tab A is listed in tab B, with the title the server gives it (its first
    # line, then the title job's).
    await send_and_wait(tab_a, "hello there")
    await expect(chat_links(tab_b)).to_have_text([re.compile("^hello there$", re.IGNORECASE)])

    # Tab B opens it; a reply made in tab A shows there without a reload.
    await chat_links(tab_b).first.click()
    await expect(user_texts(tab_b)).to_have_text(["hello there"])
    await send_and_wait(tab_a, "list my tasks")
    await expect(user_texts(tab_b)).to_have_text(["hello there", "list my tasks"])

    # Renamed in tab B: the list and the header of tab A follow.
    await tab_b.get_by_role("button", name="Rename").click()
    rename = tab_b.get_by_role("dialog", name="Rename chat")
    await rename.get_by_label("Title").fill("Greetings")
    await rename.get_by_label("Title").press("Enter")
    await expect(tab_a.locator("#chat-title")).to_have_text("Greetings")
    await expect(chat_links(tab_a)).to_have_text(["Greetings"])

    # A chat made through the API shows in both lists.
    await server.call(account, "POST", "/api/chats", {"title": "From the API"}, 201)
    for tab in (tab_a, tab_b):
        await expect(chat_links(tab)).to_have_text(["From the API", "Greetings"])

    # Deleted in tab A: gone from tab B too, which was showing it and now shows a new chat.
    await tab_a.get_by_role("button", name="Delete", exact=True).click()
    await (
        tab_a.get_by_role("dialog", name="Delete this chat?")
        .get_by_role("button", name="Delete")
        .click()
    )
    await expect(chat_links(tab_b)).to_have_text(["From the API"])
    await expect(tab_b.locator("#chat-title")).to_have_text("New chat")


async def test_reminders_and_the_task_options_fit_a_phone(
    open_page: OpenPage, server: WebServer, shoot: Shoot
) -> None:
    account = await server.register()
    task = await server.call(
        account,
        "POST",
        "/api/tasks",
        {"title": "Pick up the parcel at the post office before it closes at six"},
        201,
    )
    page = await open_page(account, viewport={"width": 320, "height": 640}, is_mobile=True)
    await feed_open(page)
    reminder = _cloud_event(
        account.user["id"],
        "parley.reminder.due.v1",
        f"tasks/{task['id']}",
        {"task": task, "remind_at": datetime.now(UTC).isoformat()},
    )

    async def serve(route: Route) -> None:
        body = ": connected\n\nretry: 60000\n\n" + _sse(reminder, "\n")
        await route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=body)

    await page.route("**/api/events", serve)
    await page.context.set_offline(True)
    await expect(page.locator("body")).not_to_have_attribute("data-feed", "open")
    await page.context.set_offline(False)
    card = reminder_cards(page)
    await expect(card).to_have_count(1)
    box = await card.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 320
    # The choice of notifications is offered beside the reminder (never asked by itself).
    await expect(page.get_by_role("button", name="Turn on notifications")).to_be_visible()
    await no_horizontal_scroll(page)
    await shoot(page, "phone-reminder")
    await card.get_by_role("button", name="Dismiss").click()
    await expect(card).to_have_count(0)
    await expect(page.locator("#reminders")).to_be_hidden()

    await page.get_by_role("button", name="Tasks").click()
    panel = page.get_by_role("complementary", name="Tasks")
    await expect(panel).to_be_visible()
    await panel.get_by_text("Due date, reminder, repeat").click()
    await panel.get_by_label("Repeat", exact=True).select_option(label="Custom…")
    await expect(panel.get_by_label("Rule")).to_be_visible()
    await no_horizontal_scroll(page)
    for control in ("Due date", "Remind me at", "Rule"):
        box = await panel.get_by_label(control).bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 320, control
    await shoot(page, "phone-task-options")


PARSE_IN_CHUNKS = """async ([text, size]) => {
  const main = document.querySelector("script[type=module]").src;
  const { SseParser } = await import(main.replace(/main\\.js$/, "events.js"));
  const parser = new SseParser();
  const events = [];
  for (let start = 0; start < text.length; start += size) {
    events.push(...parser.push(text.slice(start, start + size)));
  }
  return { events, lastEventId: parser.lastEventId, retry: parser.retry };
}"""


async def test_the_sse_parser_reads_any_split_of_the_stream(open_page: OpenPage) -> None:
    """The page's SSE parser, given the same stream cut into chunks of every size (so that a CR
    LF pair or a field name falls across two chunks): the same events."""
    page = await open_page()
    stream = (
        "\ufeff: connected\r\n\r\n"
        "retry: 1500\r\n"
        "id: 1\r\n"
        "data: first line\r\n"
        "data: second line é\r\n"
        "\r\n"
        ": keep-alive\n\n"
        "id: 2\rdata:no space\r\revent: custom\ndata\n\n"
        "id: 3\n\n"  # an id without data: no event, but the last event id moves on
        "retry: soon\n"  # not a number: ignored
        'data: {"a": 1}\n\n'
        "data: unfinished"  # no blank line at the end: never dispatched
    )
    expected = [
        {"id": "1", "type": "message", "data": "first line\nsecond line é"},
        {"id": "2", "type": "message", "data": "no space"},
        {"id": "2", "type": "custom", "data": ""},
        {"id": "3", "type": "message", "data": '{"a": 1}'},
    ]
    for size in (1, 2, 3, 5, 7, 16, len(stream)):
        parsed = await page.evaluate(PARSE_IN_CHUNKS, [stream, size])
        assert parsed["events"] == expected, size
        assert parsed["lastEventId"] == "3"
        assert parsed["retry"] == 1500
