"""From a Pydantic AI model's response to OpenAI's answers: the `chat.completion` object of a
non-streamed call, and the `chat.completion.chunk` events of a streamed one (`ChunkWriter`, which
turns the growing response into deltas).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart

from parley.gateway.schemas import (
    ChatCompletion,
    CompletionChoice,
    CompletionMessage,
    CompletionUsage,
    FunctionCall,
    ToolCall,
)

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_call": "tool_calls",
}


def new_completion_id() -> str:
    """An id like OpenAI's: `chatcmpl-<32 hex>`."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def now_seconds() -> int:
    """Unix time, as `created` carries it."""
    return int(time.time())


def finish_reason(response: ModelResponse) -> FinishReason:
    """OpenAI's finish reason for a model response."""
    if any(isinstance(part, ToolCallPart) for part in response.parts):
        return "tool_calls"
    return _FINISH_REASONS.get(response.finish_reason or "stop", "stop")


def usage_of(response: ModelResponse) -> CompletionUsage:
    """The response's token usage, as OpenAI reports it."""
    usage = response.usage
    return CompletionUsage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.input_tokens + usage.output_tokens,
    )


def to_completion(response: ModelResponse, *, model_id: str) -> ChatCompletion:
    """A model's response as OpenAI's `chat.completion`."""
    text = "".join(part.content for part in response.parts if isinstance(part, TextPart))
    calls = [
        ToolCall(
            id=part.tool_call_id,
            function=FunctionCall(name=part.tool_name, arguments=part.args_as_json_str()),
        )
        for part in response.parts
        if isinstance(part, ToolCallPart)
    ]
    message = CompletionMessage(content=text or (None if calls else ""), tool_calls=calls or None)
    return ChatCompletion(
        id=new_completion_id(),
        created=now_seconds(),
        model=model_id,
        choices=[CompletionChoice(message=message, finish_reason=finish_reason(response))],
        usage=usage_of(response),
    )


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


@dataclass
class ChunkWriter:
    """Turns the growing model response into `chat.completion.chunk` events: new text as
    `content` deltas, each tool call as its id and name, then its arguments as they arrive."""

    model_id: str
    include_usage: bool
    completion_id: str = field(default_factory=new_completion_id)
    created: int = field(default_factory=now_seconds)
    _text_sent: dict[int, int] = field(default_factory=dict)
    _tool_index: dict[int, int] = field(default_factory=dict)
    _args_sent: dict[int, int] = field(default_factory=dict)

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        """One chunk with one choice."""
        payload: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model_id,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            payload["usage"] = None
        return _event(payload)

    def opening(self) -> bytes:
        """The first chunk: the assistant's role."""
        return self.chunk({"role": "assistant", "content": "", "refusal": None})

    def changes(self, response: ModelResponse, *, final: bool = False) -> list[bytes]:
        """Chunks for what the response gained since the last call."""
        chunks: list[bytes] = []
        for index, part in enumerate(response.parts):
            if isinstance(part, TextPart):
                sent = self._text_sent.get(index, 0)
                if len(part.content) > sent:
                    chunks.append(self.chunk({"content": part.content[sent:]}))
                    self._text_sent[index] = len(part.content)
            elif isinstance(part, ToolCallPart):
                chunks.extend(self._tool_call_changes(index, part, final=final))
        return chunks

    def _tool_call_changes(self, index: int, part: ToolCallPart, *, final: bool) -> list[bytes]:
        chunks: list[bytes] = []
        if index not in self._tool_index:
            if not part.tool_name:
                return chunks
            position = len(self._tool_index)
            self._tool_index[index] = position
            opening = {
                "index": position,
                "id": part.tool_call_id,
                "type": "function",
                "function": {"name": part.tool_name, "arguments": ""},
            }
            chunks.append(self.chunk({"tool_calls": [opening]}))
        position = self._tool_index[index]
        # String arguments stream as they grow; an object (Gemini) is sent whole at the end.
        if isinstance(part.args, str):
            arguments = part.args
        elif final:
            arguments = part.args_as_json_str()
        else:
            return chunks
        sent = self._args_sent.get(index, 0)
        if len(arguments) > sent:
            delta = {"index": position, "function": {"arguments": arguments[sent:]}}
            chunks.append(self.chunk({"tool_calls": [delta]}))
            self._args_sent[index] = len(arguments)
        return chunks

    def closing(self, response: ModelResponse) -> list[bytes]:
        """The last chunks: the finish reason, and the usage when asked for."""
        chunks = [self.chunk({}, finish_reason(response))]
        if self.include_usage:
            usage = response.usage
            payload = {
                "id": self.completion_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model_id,
                "system_fingerprint": None,
                "choices": [],
                "usage": {
                    "prompt_tokens": usage.input_tokens,
                    "completion_tokens": usage.output_tokens,
                    "total_tokens": usage.input_tokens + usage.output_tokens,
                },
            }
            chunks.append(_event(payload))
        return chunks
