"""The AI SDK UI message stream chunks of a turn's steps, built from the model's step events.

A step streams as `start-step`, its text (`text-start`, `text-delta`..., `text-end`), reasoning
(`reasoning-*`) and tool calls (`tool-input-start`, `tool-input-delta`...) as they arrive, then each
call's `tool-input-available` and, once it ran, its `tool-output-available` or `tool-output-error`,
then `finish-step`. `StepChunks` keeps what is open in the step being streamed (the text or
reasoning part, the tool calls whose input streams) so that a turn that ends early can close them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.messages import ToolCallPart
from pydantic_ai.ui.vercel_ai.response_types import (
    BaseChunk,
    ReasoningDeltaChunk,
    ReasoningEndChunk,
    ReasoningStartChunk,
    SourceDocumentChunk,
    TextDeltaChunk,
    TextEndChunk,
    TextStartChunk,
    ToolInputAvailableChunk,
    ToolInputDeltaChunk,
    ToolInputErrorChunk,
    ToolInputStartChunk,
    ToolOutputAvailableChunk,
    ToolOutputErrorChunk,
)

from parley.llm.steps import PartEnd, StepEvent, TextDelta, ToolCallDelta, ToolCallStart
from parley.tools.registry import ToolResult

# What a tool call that was announced but never answered gets, when the turn ends early.
INTERRUPTED_TOOL_TEXT = "Tool execution was interrupted."
# What a tool call gets whose input was still streaming when the turn ended.
CUT_TOOL_TEXT = "The tool call was cut off before its input was complete."


@dataclass
class _StreamedCall:
    """A tool call of the step being streamed: its input so far."""

    tool_call_id: str
    tool_name: str
    arguments: list[str]


@dataclass
class StepChunks:
    """The chunks of the step being streamed, event by event.

    Attributes:
        chars: the characters of text, reasoning and tool input streamed in this step (for an
            estimate of its output tokens when the provider reports none).
    """

    chars: int = 0
    # The step's text or reasoning part streaming now (index: kind, UI id), and its tool calls.
    _open: dict[int, tuple[str, str]] = field(default_factory=dict)
    _calls: dict[int, _StreamedCall] = field(default_factory=dict)  # by part index

    def new_step(self) -> None:
        """Count the characters of a new step."""
        self.chars = 0

    def end_step(self) -> list[BaseChunk]:
        """The step's stream ended: close its open text, and forget its calls' streaming input."""
        self._calls.clear()
        return self.end_texts()

    def of(self, event: StepEvent) -> list[BaseChunk]:
        """The UI chunks of one step event."""
        if isinstance(event, TextDelta):
            return self._text(event.part, event.kind, event.text, start=event.start)
        if isinstance(event, ToolCallDelta):
            call = self._calls.get(event.part)
            if call is None:
                return []
            call.arguments.append(event.arguments)
            self.chars += len(event.arguments)
            return [
                ToolInputDeltaChunk(
                    tool_call_id=call.tool_call_id, input_text_delta=event.arguments
                )
            ]
        if isinstance(event, ToolCallStart):
            chunks = self.end_texts()
            args = event.arguments
            self._calls[event.part] = _StreamedCall(event.tool_call_id, event.tool_name, [args])
            self.chars += len(args)
            chunks.append(
                ToolInputStartChunk(tool_call_id=event.tool_call_id, tool_name=event.tool_name)
            )
            if args:
                chunks.append(
                    ToolInputDeltaChunk(tool_call_id=event.tool_call_id, input_text_delta=args)
                )
            return chunks
        if isinstance(event, PartEnd):
            return self._end_text(event.part)
        return []

    def _text(self, index: int, kind: str, text: str, *, start: bool) -> list[BaseChunk]:
        """Text or reasoning for the part at `index`; a part that starts, or streams again after
        another part, is a new UI part (only one streams at a time)."""
        opened = self._open.get(index)
        chunks: list[BaseChunk] = []
        if start or opened is None or opened[0] != kind:
            chunks.extend(self.end_texts())
            ui_id = str(uuid.uuid4())
            self._open[index] = (kind, ui_id)
            chunks.append(
                TextStartChunk(id=ui_id) if kind == "text" else ReasoningStartChunk(id=ui_id)
            )
        else:
            ui_id = opened[1]
        if text:
            self.chars += len(text)
            chunks.append(
                TextDeltaChunk(id=ui_id, delta=text)
                if kind == "text"
                else ReasoningDeltaChunk(id=ui_id, delta=text)
            )
        return chunks

    def _end_text(self, index: int) -> list[BaseChunk]:
        opened = self._open.pop(index, None)
        if opened is None:
            return []
        kind, ui_id = opened
        return [TextEndChunk(id=ui_id) if kind == "text" else ReasoningEndChunk(id=ui_id)]

    def end_texts(self) -> list[BaseChunk]:
        """End the text or reasoning part that is open."""
        chunks: list[BaseChunk] = []
        for index in list(self._open):
            chunks.extend(self._end_text(index))
        return chunks

    def cut_calls(self) -> list[BaseChunk]:
        """Fail the tool calls whose input was still streaming (the turn ended early)."""
        chunks: list[BaseChunk] = [
            ToolInputErrorChunk(
                tool_call_id=call.tool_call_id,
                tool_name=call.tool_name,
                input="".join(call.arguments),
                error_text=CUT_TOOL_TEXT,
            )
            for call in self._calls.values()
        ]
        self._calls.clear()
        return chunks


def tool_input_available(call: ToolCallPart) -> ToolInputAvailableChunk:
    """A call's whole input, as the client sees it: the object, or the raw text if it is not one."""
    try:
        shown: Any = call.args_as_dict()
    except ValueError:
        shown = call.args
    return ToolInputAvailableChunk(
        tool_call_id=call.tool_call_id, tool_name=call.tool_name, input=shown
    )


def tool_output(tool_call_id: str, result: ToolResult) -> BaseChunk:
    """A call's result: its output, or the error the model is told."""
    if result.is_error:
        return ToolOutputErrorChunk(tool_call_id=tool_call_id, error_text=result.as_text())
    return ToolOutputAvailableChunk(tool_call_id=tool_call_id, output=result.content)


def tool_interrupted(tool_call_id: str) -> ToolOutputErrorChunk:
    """What a call announced but never run gets when the turn ends early."""
    return ToolOutputErrorChunk(tool_call_id=tool_call_id, error_text=INTERRUPTED_TOOL_TEXT)


def source_documents(result: ToolResult) -> list[SourceDocumentChunk]:
    """The passages of the user's files a tool result quotes, as the reply's sources (the file
    and page ride in `providerMetadata.parley`, for a client that opens the passage)."""
    return [source_document(source) for source in result.sources]


def source_document(source: Mapping[str, Any]) -> SourceDocumentChunk:
    """One source (a stored `source` part, or a tool result's) as its stream chunk."""
    return SourceDocumentChunk(
        source_id=str(source["source_id"]),
        media_type=str(source.get("media_type") or "text/plain"),
        title=str(source.get("title") or source.get("filename") or "source"),
        filename=source.get("filename"),
        provider_metadata={"parley": {"fileId": source.get("file_id"), "page": source.get("page")}},
    )
