"""A reply's stored parts.

`PartsAccumulator` rebuilds the contract's message parts from the very chunks the clients receive,
so what is saved is exactly what was streamed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.ui.vercel_ai.response_types import (
    BaseChunk,
    ReasoningDeltaChunk,
    ReasoningStartChunk,
    SourceDocumentChunk,
    TextDeltaChunk,
    TextStartChunk,
    ToolInputAvailableChunk,
    ToolOutputAvailableChunk,
    ToolOutputErrorChunk,
)


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
        elif isinstance(chunk, SourceDocumentChunk):
            parley = (chunk.provider_metadata or {}).get("parley") or {}
            self.parts.append(
                {
                    "type": "source",
                    "source_id": chunk.source_id,
                    "media_type": chunk.media_type,
                    "title": chunk.title,
                    "filename": chunk.filename,
                    "file_id": parley.get("fileId"),
                    "page": parley.get("page"),
                }
            )
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
