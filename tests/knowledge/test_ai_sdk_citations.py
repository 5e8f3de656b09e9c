"""A cited reply read by the AI SDK's own reader (`parseJsonEventStream` with
`uiMessageChunkSchema`, then `readUIMessageStream`, as `useChat` does): the `source-document`
chunks validate and become the UI message's `source-document` parts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from parley.jobs.worker import Worker
from tests.fixtures.accounts import TestUser
from tests.fixtures.servers import LiveServer
from tests.knowledge.conftest import settled, upload
from tests.knowledge.test_extraction import write_pdf
from tests.turns.test_ai_sdk_reader import ai_sdk  # noqa: F401 - the fixture

PAGES = [
    "Chapter one introduces the harbour and its ferries.",
    "The night ferry leaves the north pier at 23:40 and reaches the island at dawn.",
]


async def test_the_ai_sdk_reads_a_cited_reply(
    ai_sdk: Path,  # noqa: F811 - the fixture
    client: httpx.AsyncClient,
    user: TestUser,
    worker: Worker,
    live_server: LiveServer,
    tmp_path: Path,
) -> None:
    pdf = write_pdf(tmp_path / "ferries.pdf", PAGES).read_bytes()
    created = await upload(client, user, "ferries.pdf", pdf, "application/pdf")
    ready = await settled(client, user, created.json()["data"]["id"])
    assert ready["status"] == "ready", ready
    file_id = ready["id"]
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        chat = (
            await http.post("/api/chats", json={"model_id": "offline:parley"}, headers=user.headers)
        ).json()["data"]
    body = json.dumps(
        {
            "parts": [
                {"type": "text", "text": "When does the night ferry leave, says my file?"},
                {"type": "file", "file_id": file_id},
            ]
        }
    )
    process = await asyncio.create_subprocess_exec(
        "node",
        str(ai_sdk),
        f"{live_server.url}/api/chats/{chat['id']}/messages",
        "POST",
        user.access_token,
        body,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()
    read = json.loads(stdout)
    sources = [part for part in read["message"]["parts"] if part["type"] == "source-document"]
    assert sources, read["message"]["parts"]
    assert sources[0]["mediaType"] == "application/pdf"
    assert sources[0]["filename"] == "ferries.pdf"
    assert "page 2" in sources[0]["title"]
    assert sources[0]["providerMetadata"]["parley"]["fileId"] == file_id
    text = "".join(part["text"] for part in read["message"]["parts"] if part["type"] == "text")
    assert "23:40" in text
