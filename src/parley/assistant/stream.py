"""From agent events to AI SDK UI message stream chunks, and from chunks to stored parts.

`ReplyEventStream` is Pydantic AI's Vercel AI (AI SDK UI message stream protocol v1) transformer
with Parley's additions: the `start` chunk carries the assistant message id and the chat and user
message ids as metadata, a `message-metadata` chunk carries usage and the model, and provider
failures become a clean `error` chunk with a stable code instead of the provider's raw text.

`PartsAccumulator` rebuilds the contract's message parts from the very chunks the clients receive,
so what is saved is exactly what was streamed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelContextWindowExceededError,
    ModelRateLimitError,
    ModelRequestTimeout,
    ModelTimeoutError,
    ModelUnavailableError,
    UsageLimitExceeded,
)
from pydantic_ai.run import AgentRunResultEvent
from pydantic_ai.ui.vercel_ai import VercelAIEventStream
from pydantic_ai.ui.vercel_ai.response_types import (
    BaseChunk,
    ErrorChunk,
    MessageMetadataChunk,
    ReasoningDeltaChunk,
    ReasoningStartChunk,
    StartChunk,
    TextDeltaChunk,
    TextStartChunk,
    ToolInputAvailableChunk,
    ToolOutputAvailableChunk,
    ToolOutputErrorChunk,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplyFailure:
    """Why a reply failed, as stored on the message and sent in the `error` chunk."""

    code: str
    message: str


def classify_failure(error: BaseException) -> ReplyFailure:
    """A stable code and a sentence for a person, never the provider's raw response."""
    if isinstance(error, ModelContextWindowExceededError):
        return ReplyFailure(
            "context_too_long", "The conversation is too long for this model's context window."
        )
    if isinstance(error, ModelTimeoutError | ModelRequestTimeout | TimeoutError):
        return ReplyFailure("provider_timeout", "The model provider did not answer in time.")
    if isinstance(error, ModelRateLimitError | ModelUnavailableError | ModelConnectionError):
        return ReplyFailure(
            "provider_unavailable", "The model provider is unavailable; try again shortly."
        )
    if isinstance(error, UsageLimitExceeded):
        return ReplyFailure("step_limit", "The assistant reached its limit of steps for one reply.")
    if isinstance(error, ModelAPIError):
        return ReplyFailure("provider_error", "The model provider returned an error.")
    return ReplyFailure("provider_error", "The reply failed.")


@dataclass
class ReplyEventStream(VercelAIEventStream[Any, Any]):
    """The Vercel AI transformer with Parley's start metadata, usage metadata and error codes."""

    start_metadata: dict[str, Any] = field(default_factory=dict)
    failure: ReplyFailure | None = None
    result_usage: Any = None
    answered_by: str | None = None

    async def before_stream(self) -> AsyncIterator[BaseChunk]:
        yield StartChunk(message_id=self.server_message_id, message_metadata=self.start_metadata)

    async def handle_run_result(self, event: AgentRunResultEvent[Any]) -> AsyncIterator[BaseChunk]:
        self.result_usage = event.result.usage
        self.answered_by = event.result.response.model_name
        async for chunk in super().handle_run_result(event):
            # Usage and the model go in one metadata chunk of Parley's own, sent by the generation.
            if not isinstance(chunk, MessageMetadataChunk):
                yield chunk

    async def on_error(self, error: Exception) -> AsyncIterator[BaseChunk]:
        self.failure = classify_failure(error)
        if not isinstance(error, ModelAPIError | UsageLimitExceeded | TimeoutError):
            logger.error("a reply failed", exc_info=error)
        async for chunk in super().on_error(error):
            if isinstance(chunk, ErrorChunk):
                yield ErrorChunk(error_text=self.failure.message)
            else:
                yield chunk


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass
class PartsAccumulator:
    """Builds the stored parts of a reply from its stream chunks.

    Attributes:
        parts: text, reasoning, tool call and tool result parts, in stream order.
        first_token: whether any text, reasoning or tool call has arrived yet.
    """

    parts: list[dict[str, Any]] = field(default_factory=list)
    first_token: bool = False
    _open: dict[str, dict[str, Any]] = field(default_factory=dict)
    _tool_names: dict[str, str] = field(default_factory=dict)

    def add(self, chunk: BaseChunk) -> None:
        """Fold one chunk into the parts."""
        if isinstance(chunk, TextStartChunk | ReasoningStartChunk):
            kind = "text" if isinstance(chunk, TextStartChunk) else "reasoning"
            part = {"type": kind, "text": ""}
            self.parts.append(part)
            self._open[f"{kind}:{chunk.id}"] = part
        elif isinstance(chunk, TextDeltaChunk | ReasoningDeltaChunk):
            kind = "text" if isinstance(chunk, TextDeltaChunk) else "reasoning"
            key = f"{kind}:{chunk.id}"
            if key not in self._open:
                self._open[key] = {"type": kind, "text": ""}
                self.parts.append(self._open[key])
            self._open[key]["text"] += chunk.delta
            self.first_token = True
        elif isinstance(chunk, ToolInputAvailableChunk):
            self._tool_names[chunk.tool_call_id] = chunk.tool_name
            self.parts.append(
                {
                    "type": "tool_call",
                    "tool_call_id": chunk.tool_call_id,
                    "tool_name": chunk.tool_name,
                    "input": chunk.input,
                }
            )
            self.first_token = True
        elif isinstance(chunk, ToolOutputAvailableChunk | ToolOutputErrorChunk):
            is_error = isinstance(chunk, ToolOutputErrorChunk)
            output: Any = (
                chunk.error_text if isinstance(chunk, ToolOutputErrorChunk) else chunk.output
            )
            if isinstance(output, str) and not is_error:
                output = _parse_json(output)
            self.parts.append(
                {
                    "type": "tool_result",
                    "tool_call_id": chunk.tool_call_id,
                    "tool_name": self._tool_names.get(chunk.tool_call_id, ""),
                    "output": output,
                    "is_error": is_error,
                }
            )

    def snapshot(self) -> list[dict[str, Any]]:
        """A copy of the parts so far, without empty text (safe to store while more arrive)."""
        return [
            dict(part)
            for part in self.parts
            if part["type"] not in ("text", "reasoning") or part["text"]
        ]

    def text(self) -> str:
        """All text parts joined (for search and for the context of later turns)."""
        return "\n".join(part["text"] for part in self.parts if part["type"] == "text")
