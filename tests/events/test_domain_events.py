"""The chats', replies' and files' events, written with their changes: a chat created, renamed
and deleted; a reply that finished (with the offline model); a file ready and a file that could
not be read. Each event is valid against its published JSON Schema and is the owner's."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
from fastapi import FastAPI
from sqlalchemy import select

from parley.events.models import OutboxEvent
from parley.events.schemas import cloud_event
from parley.jobs.worker import Worker
from tests.fixtures.accounts import TestUser
from tests.fixtures.chats import new_chat
from tests.knowledge.conftest import settled, upload


async def events_of(app: FastAPI, prefix: str) -> list[dict[str, Any]]:
    async with app.state.database.sessionmaker() as session:
        rows = await session.scalars(
            select(OutboxEvent).where(OutboxEvent.type.startswith(prefix)).order_by(OutboxEvent.id)
        )
        return [cloud_event(row) for row in rows.all()]


async def check_schemas(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    response = await client.get("/api/events/schemas")
    schemas = {item["type"]: item["schema"] for item in response.json()["data"]["items"]}
    for event in events:
        jsonschema.validate(event, schemas[event["type"]])


async def test_a_chats_life_and_its_reply_are_told(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    chat_id = await new_chat(client, user, model_id="offline:parley")
    await client.patch(f"/api/chats/{chat_id}", json={"title": "Plans"}, headers=user.headers)
    reply = await client.post(
        f"/api/chats/{chat_id}/messages", json={"content": "hello"}, headers=user.headers
    )
    assert reply.status_code == 200, reply.text
    await client.delete(f"/api/chats/{chat_id}", headers=user.headers)

    chats = await events_of(app, "parley.chat.")
    assert [event["type"] for event in chats] == [
        "parley.chat.created.v1",
        "parley.chat.updated.v1",
        "parley.chat.deleted.v1",
    ]
    assert {event["subject"] for event in chats} == {f"chats/{chat_id}"}
    assert chats[1]["data"]["title"] == "Plans"
    assert {event["parleyuser"] for event in chats} == {user.id}

    replies = await events_of(app, "parley.message.")
    assert len(replies) == 1
    data = replies[0]["data"]
    assert data["chat_id"] == chat_id
    assert data["status"] == "complete"
    assert data["model_id"] == "offline:parley"
    await check_schemas(client, chats + replies)


async def test_a_file_ready_and_a_file_failed_are_told(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser, worker: Worker
) -> None:
    good = await upload(client, user, "notes.md", b"# Notes\n\nThe boat leaves at noon.\n")
    bad = await upload(client, user, "broken.pdf", b"%PDF-1.4 not really a pdf", "application/pdf")
    good_id, bad_id = good.json()["data"]["id"], bad.json()["data"]["id"]
    assert (await settled(client, user, good_id))["status"] == "ready"
    assert (await settled(client, user, bad_id))["status"] == "failed"
    files = await events_of(app, "parley.file.")
    by_subject = {event["subject"]: event for event in files}
    assert by_subject[f"files/{good_id}"]["type"] == "parley.file.ready.v1"
    assert by_subject[f"files/{good_id}"]["data"]["chunks"] >= 1
    failed = by_subject[f"files/{bad_id}"]
    assert failed["type"] == "parley.file.failed.v1"
    assert failed["data"]["status"] == "failed"
    assert failed["data"]["error"]["code"]
    await check_schemas(client, files)
