"""The OpenAI-compatible model step: one step streamed straight from an OpenAI-compatible server
(Ollama, vLLM, llama.cpp, OpenRouter...), read as the step events of `parley.llm.steps`.

A turn's step goes through Pydantic AI's model by default (`parley.llm.pydantic_step`). For an
OpenAI-compatible server other than OpenAI's own, whose request and stream are plain
`/chat/completions` JSON, this does the same for a fraction of the CPU: the request is built from
the conversation directly (`parley.llm.openai_request`), sent by `parley.llm.openai_relay` as the
`/v1` gateway's pass-through sends it (one shared HTTP client, the same retries before the first
byte: connection errors, 408, 409, 429 and 5xx, up to `PROVIDER_MAX_RETRIES`), and each streamed
line is parsed once with `json.loads`, reading only the fields a reply needs (text, reasoning, tool
calls, the finish reason and usage); bench/findings.md has the measurements.

OpenAI's own service keeps Pydantic AI's model, with OpenAI's model profiles; so does a turn with a
fallback model, which Pydantic AI's `FallbackModel` tries in turn.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic_ai.messages import (
    FinishReason,
    ModelMessage,
    ModelResponse,
    ModelResponsePart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
)
from pydantic_ai.usage import RequestUsage

from parley.core.errors import ProviderError
from parley.llm.failures import provider_failure
from parley.llm.openai_request import request_body
from parley.llm.selection import OpenAICompatibleModel
from parley.llm.steps import (
    StepEvent,
    StepFailed,
    StepFinished,
    StepRequest,
    StepUsage,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
)

PROVIDER_NAME = "openai"
# Reasoning models served without a reasoning parser stream their thinking in these.
THINK_START, THINK_END = "<think>", "</think>"
_NOTHING: list[StepEvent] = []  # a line with no events (never changed)
_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_call",
    "function_call": "tool_call",
    "content_filter": "content_filter",
}


@dataclass
class _Call:
    """A tool call being streamed; it becomes a part once its name is known."""

    tool_call_id: str
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    index: int | None = None  # its part's index, once started


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _held_back(text: str, tag: str) -> int:
    """How many characters at the end of `text` could be the start of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


@dataclass
class OpenAIChatStream:
    """The reader of a streamed chat completion: each line's step events (text, reasoning and tool
    calls, and the usage when the server reports it); `get()` is the response so far.

    As Pydantic AI's OpenAI model reads such a stream: reasoning comes as `reasoning_content` (or
    `reasoning`), or as `<think>...</think>` in the content; a tool call becomes a part once its
    name is known; calls without an `index` are told apart by their ids; an `error` in a chunk,
    or a stream that ends without any part, fails the step.

    Attributes:
        usage: the tokens the server reported (none until its usage chunk).
    """

    model_name: str
    usage: RequestUsage = field(default_factory=RequestUsage)
    finish_reason: FinishReason | None = None
    _parts: list[str] = field(default_factory=list)  # each part's kind: text, reasoning, call
    _texts: dict[int, list[str]] = field(default_factory=dict)  # part index: pieces
    _current: tuple[str, int] | None = None  # the text or reasoning part being streamed
    _calls: dict[int, _Call] = field(default_factory=dict)  # OpenAI's call index: the call
    _last_call: _Call | None = None
    _thinking: bool = False  # inside `<think>` in the content
    _held: str = ""  # content that may be the start of a think tag
    _after_thinking: bool = False  # text right after `</think>`: its leading space is dropped

    def read_line(self, line: str) -> list[StepEvent] | None:
        """The step events of one streamed line; None at the stream's `[DONE]`.

        Raises:
            ProviderError: the line is not JSON, or the server reports a failure in it.
        """
        if not line.startswith("data:"):
            return _NOTHING
        data = line[5:].strip()
        if data == "[DONE]":
            return None
        try:
            payload = json.loads(data)
        except ValueError:
            raise ProviderError("The model provider streamed something that is not JSON.") from None
        if not isinstance(payload, dict):
            return _NOTHING
        return self._read(payload)

    def end(self) -> list[StepEvent]:
        """The events held back at the stream's end (text that might have begun a think tag).

        Raises:
            ProviderError: the stream held no reply at all.
        """
        events: list[StepEvent] = []
        if self._held:
            held, self._held = self._held, ""
            events.append(self._text("reasoning" if self._thinking else "text", held))
        if not self._parts:
            raise ProviderError("The model provider's stream held no reply.")
        return events

    def _read(self, payload: dict[str, Any]) -> list[StepEvent]:
        if payload.get("error"):  # OpenRouter's and others' failure mid-stream
            raise ProviderError()
        events: list[StepEvent] = []
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self.usage = RequestUsage(
                input_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
            )
            events.append(StepUsage(self.usage.input_tokens, self.usage.output_tokens))
        if isinstance(payload.get("model"), str):
            self.model_name = payload["model"]
        for choice in payload.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if isinstance(reasoning, str) and reasoning:
                    events.append(self._text("reasoning", reasoning))
                content = _content_text(delta.get("content"))
                if content:
                    events.extend(self._content(content))
                for call in delta.get("tool_calls") or ():
                    if isinstance(call, dict):
                        events.extend(self._call(call))
            finish = choice.get("finish_reason")
            if finish == "error":
                raise ProviderError()
            if isinstance(finish, str):
                self.finish_reason = _FINISH_REASONS.get(finish)
        return events

    def _content(self, content: str) -> list[StepEvent]:
        """Content, split into text and reasoning at `<think>` and `</think>`."""
        text, self._held = self._held + content, ""
        events: list[StepEvent] = []
        while text:
            tag = THINK_END if self._thinking else THINK_START
            at = text.find(tag)
            if at == -1:
                keep = _held_back(text, tag)
                text, self._held = text[: len(text) - keep], text[len(text) - keep :]
                at = len(text)
            piece = text[:at]
            if self._after_thinking:
                piece = piece.lstrip()
                self._after_thinking = not piece
            if piece:
                events.append(self._text("reasoning" if self._thinking else "text", piece))
            if at == len(text):
                break
            text = text[at + len(tag) :]
            self._thinking = not self._thinking
            self._after_thinking = not self._thinking
        return events

    def _text(self, kind: Literal["text", "reasoning"], text: str) -> TextDelta:
        if self._current is not None and self._current[0] == kind:
            index = self._current[1]
            self._texts[index].append(text)
            return TextDelta(index, kind, text)
        index = len(self._parts)
        self._current = (kind, index)
        self._texts[index] = [text]
        self._parts.append(kind)
        return TextDelta(index, kind, text, start=True)

    def _call(self, delta: dict[str, Any]) -> list[StepEvent]:
        function = delta.get("function")
        function = function if isinstance(function, dict) else {}
        name, arguments, call_id = (
            value if isinstance(value, str) else ""
            for value in (function.get("name"), function.get("arguments"), delta.get("id"))
        )
        position = delta.get("index")
        if isinstance(position, int):
            call = self._calls.get(position)
            if call is None:
                call = self._calls[position] = _Call(call_id or _new_call_id())
        else:
            # No index: each call whole, told apart by its id.
            call = self._last_call
            if call is None or (call_id and call_id != call.tool_call_id):
                call = self._calls[-len(self._calls) - 1] = _Call(call_id or _new_call_id())
        self._last_call = call
        if call.index is None:
            call.name = call.name or name
            if arguments:
                call.arguments.append(arguments)
            if not call.name:
                return []  # held until its name comes
            self._current = None
            call.index = len(self._parts)
            self._parts.append("call")
            return [
                ToolCallStart(call.index, call.tool_call_id, call.name, "".join(call.arguments))
            ]
        if not arguments:
            return []
        call.arguments.append(arguments)
        return [ToolCallDelta(call.index, arguments)]

    def get(self) -> ModelResponse:
        """The response streamed so far (a call whose name never came is left out)."""
        parts: list[ModelResponsePart] = []
        calls = {call.index: call for call in self._calls.values() if call.index is not None}
        for index, kind in enumerate(self._parts):
            if kind == "text":
                parts.append(TextPart(content="".join(self._texts[index])))
            elif kind == "reasoning":
                parts.append(ThinkingPart(content="".join(self._texts[index])))
            elif index in calls:
                call = calls[index]
                parts.append(
                    ToolCallPart(
                        tool_name=call.name,
                        args="".join(call.arguments) or "{}",
                        tool_call_id=call.tool_call_id,
                    )
                )
        return ModelResponse(
            parts=parts,
            usage=self.usage,
            model_name=self.model_name,
            provider_name=PROVIDER_NAME,
            finish_reason=self.finish_reason,
        )


def _content_text(content: Any) -> str:
    """A delta's content: a string, or (as Mistral's API sends it) a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(item.get("text") or "")
            for item in content
            if isinstance(item, dict) and item.get("type") == "text"
        )
    return ""


@dataclass(frozen=True, slots=True)
class OpenAICompatibleStep:
    """The model step of a catalog model served by an OpenAI-compatible server."""

    model: OpenAICompatibleModel

    async def stream(
        self, messages: Sequence[ModelMessage], request: StepRequest
    ) -> AsyncIterator[StepEvent]:
        """Open the step's stream (retried before its first byte by the relay) and read it; the
        request is closed when the step ends, fails or is cancelled."""
        body = request_body(self.model.model_name, messages, request.instructions, request.tools)
        try:
            response = await self.model.relay.open(body, stream=True)
        except Exception as exc:
            yield StepFailed(provider_failure(exc, log_unknown=False), exc)
            return
        stream = OpenAIChatStream(self.model.model_name)
        try:
            try:
                async for line in response.lines():
                    events = stream.read_line(line)
                    if events is None:
                        break
                    for event in events:
                        yield event
                for event in stream.end():
                    yield event
            except Exception as exc:  # a broken or silent connection reads as a ParleyError
                yield StepFailed(provider_failure(exc, log_unknown=False), exc)
                return
            yield StepFinished(stream.get())
        finally:
            response.close()
