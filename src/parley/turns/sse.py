"""The wire format of a reply stream: the AI SDK UI message stream (v1) over server-sent events.

Kept apart from the stream's producer so that routes can answer with it without importing the
model library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

# The AI SDK major version whose chunk schema the stream follows (Pydantic AI's encoder option).
SDK_VERSION: Literal[5, 6, 7] = 5
STREAM_HEADERS = {
    "x-vercel-ai-ui-message-stream": "v1",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}


def sse_line(number: int, data: str) -> bytes:
    """One server-sent event."""
    return f"id: {number}\ndata: {data}\n\n".encode()


async def numbered(chunks: list[str]) -> AsyncIterator[list[tuple[int, str]]]:
    """Chunks as one batch of `(id, data)` events, numbered from 1."""
    yield list(enumerate(chunks, start=1))
