"""The stream read by the AI SDK's own reader: a small Node script using the `ai` package
(`parseJsonEventStream` with `uiMessageChunkSchema`, then `readUIMessageStream`, as `useChat`
does) consumes a real reply with a tool call from a running server, unmodified."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.fixtures.accounts import PASSWORD
from tests.fixtures.servers import LiveServer

SCRIPT_DIR = Path(__file__).resolve().parent.parent / "ai_sdk"


@pytest.fixture(scope="session")
def ai_sdk() -> Path:
    """The `ai` package, installed from the lock file on first use (once, across xdist workers)."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    assert node, "Node.js is needed to check the stream with the AI SDK"
    assert npm, "npm is needed to install the AI SDK"
    with (SCRIPT_DIR / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (SCRIPT_DIR / "node_modules" / "ai" / "package.json").exists():
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"], cwd=SCRIPT_DIR, check=True, timeout=300
            )
    return SCRIPT_DIR / "read_stream.mjs"


def test_the_ai_sdk_reads_a_reply_with_a_tool_call(ai_sdk: Path, live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        email = "ai-sdk-reader@example.com"
        registered = http.post("/api/auth/register", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        token = registered.json()["data"]["tokens"]["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        chat = http.post("/api/chats", json={}, headers=headers).json()["data"]
        url = f"{live_server.url}/api/chats/{chat['id']}/messages"
        body = json.dumps({"content": "add a task to buy milk tomorrow"})
        result = subprocess.run(
            ["node", str(ai_sdk), url, "POST", token, body],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        read = json.loads(result.stdout)
        message = read["message"]
        stored = http.get(f"/api/chats/{chat['id']}/messages", headers=headers).json()["data"]
    assert message["role"] == "assistant"
    assert message["id"] == stored["items"][-1]["id"]
    assert message["metadata"]["chat_id"] == chat["id"]
    assert message["metadata"]["usage"]["output_tokens"] > 0
    tool = next(part for part in message["parts"] if part["type"] == "tool-add_task")
    assert tool["state"] == "output-available"
    assert tool["input"]["title"] == "Buy milk"
    assert tool["output"]["title"] == "Buy milk"
    text = "".join(part["text"] for part in message["parts"] if part["type"] == "text")
    assert "Buy milk" in text
    types = [chunk["type"] for chunk in read["chunks"]]
    assert types[0] == "start"
    assert types[-1] == "finish"
