"""Knowledge in the page: a file attached in the composer is read (its chip follows the
ingestion), the reply cites it, the citation opens the passage it quotes, and the file downloads;
the knowledge dialog uploads into a knowledge base, lists, deletes, and lets a chat search the
base; a file that cannot be read says why and the message waits for it.

A worker (`web_worker`, as `parley worker` in the test's event loop) reads the files, as in a
deployment where workers run beside the web server."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.fixtures.pages import assistant_messages, composer, send_and_wait, user_messages
from tests.fixtures.web import OpenPage, Shoot, WebServer
from tests.knowledge.test_extraction import write_pdf

pytestmark = pytest.mark.browser

FERRY_PAGES = [
    "Chapter one introduces the harbour and its ferries.",
    "The night ferry leaves the north pier at 23:40 and reaches the island at dawn.",
]
BIKES = b"""# Bicycle care

## Chains

Clean and oil the chain every 300 kilometres, or after a ride in the rain.

## Tyres

Check tyre pressure weekly; road tyres usually want between 80 and 100 psi.
"""


def attachments(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("#attachments li.attachment")


async def test_an_attached_file_is_read_cited_and_its_passage_opens(
    open_page: OpenPage, server: WebServer, web_worker: None, shoot: Shoot, tmp_path: Path
) -> None:
    pdf = write_pdf(tmp_path / "ferries.pdf", FERRY_PAGES)
    page = await open_page()
    await page.locator("#attach-input").set_input_files(str(pdf))
    chip = attachments(page)
    await expect(chip).to_have_count(1)
    await expect(chip).to_contain_text("ferries.pdf")
    await expect(chip).to_have_attribute("data-state", "ready")
    await expect(chip).to_contain_text("Ready · 2 pages")
    await expect(page.get_by_role("button", name="Send")).to_be_enabled()

    reply = await send_and_wait(page, "When does the night ferry leave, says my file?")
    await expect(attachments(page)).to_have_count(0)  # sent with the message
    # The user's message carries the file; the reply quotes page 2 and cites it.
    await expect(user_messages(page).last.locator(".file-chip")).to_have_text("ferries.pdf")
    await expect(reply.locator(".markdown")).to_contain_text("23:40")
    sources = reply.locator(".sources .source-link")
    await expect(sources).to_have_count(2)
    await expect(sources.first).to_contain_text("ferries.pdf, page 2")
    await expect(sources.nth(1)).to_contain_text("ferries.pdf, page 1")
    # Each [n] of the text is a button for source n ("See also [2] ... page 1").
    await expect(reply.locator("button.citation")).to_have_text(["[1]", "[2]"])
    await expect(reply.get_by_role("button", name="Source 2: ferries.pdf, page 1")).to_be_visible()
    await shoot(page, "knowledge-cited-reply")

    # The [1] in the text opens the passage it cites.
    await reply.locator("button.citation", has_text="[1]").click()
    dialog = page.get_by_role("dialog", name="Source 1: ferries.pdf")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#source-where")).to_have_text("Page 2")
    await expect(dialog.locator("#source-text")).to_contain_text(
        "The night ferry leaves the north pier at 23:40"
    )
    await shoot(page, "knowledge-source")
    async with page.expect_download() as caught:
        await dialog.get_by_role("button", name="Download the file").click()
    download = await caught.value
    assert download.suggested_filename == "ferries.pdf"
    saved = tmp_path / "saved.pdf"
    await download.save_as(str(saved))
    assert saved.read_bytes() == pdf.read_bytes()
    await dialog.locator("button.dialog-cancel").click()
    await expect(dialog).to_be_hidden()

    # The sources were saved with the reply: they are there after a reload.
    await page.reload()
    reloaded = assistant_messages(page).last
    await expect(reloaded.locator(".sources .source-link").first).to_contain_text(
        "ferries.pdf, page 2"
    )
    await expect(reloaded.locator("button.citation").first).to_be_visible()


async def test_the_knowledge_dialog_fills_a_base_that_a_chat_searches(
    open_page: OpenPage, server: WebServer, web_worker: None, shoot: Shoot, tmp_path: Path
) -> None:
    account = await server.register()
    page = await open_page(account)
    await page.get_by_role("button", name="Knowledge", exact=True).click()
    dialog = page.get_by_role("dialog", name="Knowledge")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#file-empty")).to_be_visible()

    await dialog.get_by_label("New knowledge base").fill("Workshop")
    await dialog.get_by_role("button", name="Create").click()
    base = dialog.locator("#base-list li.base", has_text="Workshop")
    await expect(base).to_be_visible()

    notes = tmp_path / "bikes.md"
    notes.write_bytes(BIKES)
    await dialog.get_by_label("into").select_option(label="Workshop")
    await dialog.locator("#file-input").set_input_files(str(notes))
    row = dialog.locator("#file-list li.file", has_text="bikes.md")
    await expect(row).to_have_attribute("data-status", "ready")
    await expect(row).to_contain_text("Ready · 2 passages")
    await expect(base.locator("summary")).to_have_text("1 file")
    await base.locator("summary").click()
    await expect(base.locator(".base-file-list li")).to_have_count(1)
    await expect(base.locator(".base-file-list li")).to_contain_text("bikes.md")

    # Ticked for the new chat: the chat is created searching the base.
    await dialog.get_by_label("Workshop (use in this chat)").check()
    base_id = await base.get_attribute("data-knowledge-id")
    await shoot(page, "knowledge-dialog")
    await dialog.get_by_role("button", name="Close").first.click()
    chip = page.locator("#chat-knowledge")
    await expect(chip).to_have_text("Searching Workshop")
    reply = await send_and_wait(page, "What tyre pressure do road tyres want?")
    await expect(reply.locator(".markdown")).to_contain_text("psi")
    await expect(reply.locator(".sources .source-link").first).to_contain_text("bikes.md")
    chats = await server.call(account, "GET", "/api/chats")
    assert chats["items"][0]["knowledge_ids"] == [base_id]
    await expect(chip).to_have_text("Searching Workshop")

    # Deleting the file: its passage is gone, the citation says so.
    await chip.click()
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name="Delete bikes.md").click()
    confirm = page.get_by_role("dialog", name="Delete this file?")
    await confirm.get_by_role("button", name="Delete").click()
    await expect(dialog.locator("#file-list li.file")).to_have_count(0)
    await expect(base.locator("summary")).to_have_text("0 files")
    await dialog.get_by_role("button", name="Close").first.click()
    await reply.locator(".sources .source-link").first.click()
    source = page.get_by_role("dialog", name="Source 1: bikes.md")
    await expect(source.locator("#source-error")).to_have_text(
        "This passage is no longer available: its file was deleted."
    )
    await expect(source.get_by_role("button", name="Download the file")).to_be_hidden()


async def test_a_file_that_cannot_be_read_holds_the_message_until_removed(
    open_page: OpenPage, server: WebServer, web_worker: None, tmp_path: Path
) -> None:
    page = await open_page()
    # A PDF by its first bytes, but nothing after them can be read.
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 100)
    await page.locator("#attach-input").set_input_files(str(broken))
    chip = attachments(page)
    await expect(chip).to_have_attribute("data-state", "failed")
    await expect(chip.locator(".attachment-status")).not_to_be_empty()
    send = page.get_by_role("button", name="Send")
    await expect(send).to_be_disabled()
    await composer(page).fill("what does it say?")
    await composer(page).press("Enter")
    await expect(page.locator("#toast")).to_have_text(
        "Remove the files that could not be read first."
    )
    await expect(assistant_messages(page)).to_have_count(0)
    await page.get_by_role("button", name="Remove broken.pdf").click()
    await expect(chip).to_have_count(0)
    await expect(send).to_be_enabled()

    # A file of a type Parley does not read is refused at once, with the server's reason.
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    await page.locator("#attach-input").set_input_files(str(image))
    await expect(chip).to_have_attribute("data-state", "failed")
    await expect(chip).to_contain_text("photo.png")


async def test_a_hostile_filename_is_shown_as_text(
    open_page: OpenPage, server: WebServer, tmp_path: Path
) -> None:
    account = await server.register()
    name = "<img src=x onerror=alert(1)>].md"
    response = await server.http.post(
        "/api/files",
        files={"file": (name, b"# Notes\n\nplain words", "text/markdown")},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    page = await open_page(account)
    await page.get_by_role("button", name="Knowledge", exact=True).click()
    row = page.locator("#file-list li.file")
    await expect(row.locator(".file-name")).to_have_text(name)
    assert await page.locator("#file-list img").count() == 0
    # (the open_page fixture fails the test if a script ran: an alert is a dialog)
