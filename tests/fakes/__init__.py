"""Fake LLM provider servers for tests: real HTTP servers on loopback speaking the providers' wire
formats (OpenAI chat completions, Anthropic messages), scripted reply by reply.

`Reply` says what the next request gets (text, tool calls, an error status, delays); a fake records
every request it sees. Each fake is served by `tests.fakes.loopback.serve` (uvicorn in a thread on a
free loopback port). The other fakes: `gemini_upstream` (model discovery) and `otlp_collector`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

from starlette.applications import Starlette
from starlette.requests import Request

from tests.fakes.loopback import ServerThread, serve


@dataclass(frozen=True)
class ToolCall:
    """A tool call the fake model makes; `arguments` as a string is sent as it is (the OpenAI
    fake only), such as JSON that does not parse."""

    name: str
    arguments: dict[str, Any] | str
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """What the fake answers to one request.

    Attributes:
        text: the assistant's text (streamed word by word when the request streams).
        tool_calls: tool calls after the text.
        status: an HTTP status; anything but 200 answers `error_message` in the provider's format.
        error_message: the error's message.
        delay: seconds to wait before answering at all.
        chunk_delay: seconds between streamed chunks.
        input_tokens / output_tokens: the usage reported.
        finish_reason: the finish reason sent instead of OpenAI's own (some servers send
            values of their own, such as llama.cpp's `eos`).
        reasoning: thinking streamed before the text, as `reasoning_content` (the OpenAI fake
            only, when streaming).
    """

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    status: int = 200
    error_message: str = "scripted failure"
    delay: float = 0.0
    chunk_delay: float = 0.0
    input_tokens: int = 11
    output_tokens: int = 7
    finish_reason: str | None = None
    reasoning: str | None = None


@dataclass
class RecordedRequest:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class Script:
    """Replies waiting to be sent, and the requests seen; a request with no reply scripted gets
    `default`."""

    default: Reply = field(default_factory=lambda: Reply(text="Hello from the fake upstream."))
    replies: deque[Reply] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)

    def push(self, *replies: Reply) -> None:
        """Queue replies, answered in order."""
        self.replies.extend(replies)

    def next_reply(self) -> Reply:
        """The reply for the request being answered."""
        return self.replies.popleft() if self.replies else self.default

    def reset(self) -> None:
        """Forget queued replies and recorded requests."""
        self.replies.clear()
        self.requests.clear()

    def completions(self, path_suffix: str) -> list[RecordedRequest]:
        """The recorded requests whose path ends with `path_suffix`."""
        return [request for request in self.requests if request.path.endswith(path_suffix)]


def words(text: str) -> list[str]:
    """`text` in streamable pieces: each word with the space before it."""
    pieces = text.split(" ")
    return [pieces[0]] + [" " + piece for piece in pieces[1:]]


@dataclass
class FakeUpstream(ABC):
    """What every fake provider server shares: its script, its server, starting and stopping,
    and recording each request it receives."""

    script: Script = field(default_factory=Script)
    server: ServerThread | None = None

    @classmethod
    def start(cls) -> Self:
        """Start a fake on a free loopback port."""
        fake = cls()
        fake.server = serve(fake.app())
        return fake

    def stop(self) -> None:
        """Stop the server."""
        if self.server is not None:
            self.server.stop()

    @property
    def origin(self) -> str:
        """The server's `http://127.0.0.1:<port>`."""
        assert self.server is not None
        return self.server.url

    async def _record(self, request: Request) -> dict[str, Any] | None:
        raw = await request.body()
        body = json.loads(raw) if raw else None
        self.script.requests.append(
            RecordedRequest(request.method, request.url.path, dict(request.headers), body)
        )
        return body

    @abstractmethod
    def app(self) -> Starlette:
        """The fake's ASGI app."""
