"""Knowledge in chats: `knowledge_ids` on a chat, files attached to a user message, the
`search_knowledge` tool offered only where there is knowledge, the offline model quoting the best
passage with its page, `source-document` chunks in the stream (read by the AI SDK's own reader
elsewhere) saved as `source` parts, and nobody else's files or bases."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx

from parley.jobs.worker import Worker
from tests.fixtures.accounts import TestUser
from tests.knowledge.conftest import settled, upload
from tests.knowledge.test_extraction import write_pdf

PAGES = [
    "The lighthouse keeper logs the weather every morning.",
    "Replacement lamps are stored in the north cellar behind the oil drums.",
    "Visitors may climb the tower on Sundays between noon and four.",
]


async def ready_pdf(
    client: httpx.AsyncClient, user: TestUser, tmp_path: Path, **form: str
) -> dict[str, Any]:
    pdf = write_pdf(tmp_path / "lighthouse.pdf", PAGES).read_bytes()
    created = await upload(client, user, "lighthouse.pdf", pdf, "application/pdf", **form)
    assert created.status_code == 201, created.text
    ready = await settled(client, user, created.json()["data"]["id"])
    assert ready["status"] == "ready", ready
    return ready


async def new_chat(client: httpx.AsyncClient, user: TestUser, **body: Any) -> str:
    response = await client.post(
        "/api/chats", json={"model_id": "offline:parley", **body}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    chat_id: str = response.json()["data"]["id"]
    return chat_id


async def ask(
    client: httpx.AsyncClient, user: TestUser, chat_id: str, parts: list[dict[str, Any]]
) -> httpx.Response:
    return await client.post(
        f"/api/chats/{chat_id}/messages?stream=false",
        json={"parts": parts},
        headers=user.headers,
    )


def reply_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    reply: dict[str, Any] = response.json()["data"]["assistant_message"]
    return reply


def text_of(message: dict[str, Any]) -> str:
    return "".join(part["text"] for part in message["parts"] if part["type"] == "text")


async def test_an_attached_pdf_is_searched_and_the_reply_cites_its_page(
    client: httpx.AsyncClient, user: TestUser, worker: Worker, tmp_path: Path
) -> None:
    pdf = await ready_pdf(client, user, tmp_path)
    chat_id = await new_chat(client, user)
    response = await ask(
        client,
        user,
        chat_id,
        [
            {"type": "text", "text": "What does my file say about spare lamps?"},
            {"type": "file", "file_id": pdf["id"]},
        ],
    )
    reply = reply_of(response)
    user_message = response.json()["data"]["user_message"]
    assert user_message["parts"][1] == {
        "type": "file",
        "file_id": pdf["id"],
        "media_type": "application/pdf",
        "filename": "lighthouse.pdf",
    }
    calls = [part for part in reply["parts"] if part["type"] == "tool_call"]
    assert [call["tool_name"] for call in calls] == ["search_knowledge"]
    sources = [part for part in reply["parts"] if part["type"] == "source"]
    assert sources
    assert sources[0]["file_id"] == pdf["id"]
    assert sources[0]["page"] == 2
    assert sources[0]["filename"] == "lighthouse.pdf"
    assert sources[0]["media_type"] == "application/pdf"
    text = text_of(reply)
    assert "north cellar" in text
    assert "page 2" in text
    assert "[1]" in text


async def test_the_stream_carries_source_document_chunks(
    client: httpx.AsyncClient, user: TestUser, worker: Worker, tmp_path: Path
) -> None:
    pdf = await ready_pdf(client, user, tmp_path)
    base = await client.post("/api/knowledge", json={"name": "Tower"}, headers=user.headers)
    base_id = base.json()["data"]["id"]
    await client.post(
        f"/api/knowledge/{base_id}/files", json={"file_id": pdf["id"]}, headers=user.headers
    )
    chat_id = await new_chat(client, user, knowledge_ids=[base_id])
    chat = await client.get(f"/api/chats/{chat_id}", headers=user.headers)
    assert chat.json()["data"]["knowledge_ids"] == [base_id]
    async with client.stream(
        "POST",
        f"/api/chats/{chat_id}/messages",
        json={"parts": [{"type": "text", "text": "When can visitors climb the tower?"}]},
        headers=user.headers,
    ) as stream:
        events = [
            json.loads(line.removeprefix("data: "))
            for line in [line async for line in stream.aiter_lines()]
            if line.startswith("data: {")
        ]
    documents = [event for event in events if event["type"] == "source-document"]
    assert documents
    assert documents[0]["sourceId"]
    assert documents[0]["mediaType"] == "application/pdf"
    assert documents[0]["filename"] == "lighthouse.pdf"
    assert "page 3" in documents[0]["title"]
    text = "".join(event["delta"] for event in events if event["type"] == "text-delta")
    assert "Sundays" in text


async def test_search_knowledge_is_offered_only_where_there_is_knowledge(
    client: httpx.AsyncClient, user: TestUser, worker: Worker, tmp_path: Path
) -> None:
    await ready_pdf(client, user, tmp_path)
    chat_id = await new_chat(client, user)
    reply = reply_of(
        await ask(client, user, chat_id, [{"type": "text", "text": "What does my file say?"}])
    )
    assert not [part for part in reply["parts"] if part["type"] == "tool_call"]
    assert "Attach a file" in text_of(reply)
    tasks = reply_of(
        await ask(client, user, chat_id, [{"type": "text", "text": "add a task to buy milk"}])
    )
    assert [p["tool_name"] for p in tasks["parts"] if p["type"] == "tool_call"] == ["add_task"]


async def test_files_and_bases_of_others_cannot_be_attached(
    client: httpx.AsyncClient,
    user: TestUser,
    other_user: TestUser,
    worker: Worker,
    tmp_path: Path,
) -> None:
    pdf = await ready_pdf(client, user, tmp_path)
    base = await client.post("/api/knowledge", json={"name": "Mine"}, headers=user.headers)
    chat_id = await new_chat(client, other_user)
    foreign_file = await ask(
        client,
        other_user,
        chat_id,
        [{"type": "text", "text": "what is in it"}, {"type": "file", "file_id": pdf["id"]}],
    )
    assert foreign_file.status_code == 404
    unknown = await ask(
        client,
        other_user,
        chat_id,
        [{"type": "text", "text": "hi"}, {"type": "file", "file_id": str(uuid.uuid4())}],
    )
    assert unknown.status_code == 404
    foreign_base = await client.post(
        "/api/chats",
        json={"knowledge_ids": [base.json()["data"]["id"]]},
        headers=other_user.headers,
    )
    assert foreign_base.status_code == 404
    patched = await client.patch(
        f"/api/chats/{chat_id}",
        json={"knowledge_ids": [base.json()["data"]["id"]]},
        headers=other_user.headers,
    )
    assert patched.status_code == 404
    # The other user's own question finds nothing of the first user's.
    own = await new_chat(client, other_user)
    mine = (await upload(client, other_user, "m.md", b"# Mine\n\nCats sleep a lot.")).json()
    await settled(client, other_user, mine["data"]["id"])
    reply = reply_of(
        await ask(
            client,
            other_user,
            own,
            [
                {"type": "text", "text": "Where are the replacement lamps stored?"},
                {"type": "file", "file_id": mine["data"]["id"]},
            ],
        )
    )
    assert "north cellar" not in json.dumps(reply)


async def test_a_file_not_ready_yet_cannot_be_attached(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    created = await upload(client, user, "n.md", b"# N\n\nwords", "text/markdown")
    chat_id = await new_chat(client, user)
    response = await ask(
        client,
        user,
        chat_id,
        [{"type": "text", "text": "hi"}, {"type": "file", "file_id": created.json()["data"]["id"]}],
    )
    assert response.status_code == 409
    assert "queued" in response.json()["error"]["message"]
