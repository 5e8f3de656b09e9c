"""The `/chat/completions` request of a model step to an OpenAI-compatible server, built from the
conversation directly, as Pydantic AI's OpenAI model would send it (see `parley.llm.openai_step`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    SystemPromptPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.tools import ToolDefinition

from parley.core.errors import ProviderError


def request_body(
    model_name: str,
    messages: Sequence[ModelMessage],
    instructions: str | None,
    tools: Sequence[ToolDefinition],
) -> dict[str, Any]:
    """The streamed `/chat/completions` request for a conversation, as Pydantic AI's OpenAI model
    sends it to such a server: the instructions as the system message, tool results as `tool`
    messages (a failed one as `{"error": ...}`), usage asked for at the end of the stream."""
    wire: list[dict[str, Any]] = []
    if instructions:
        wire.append({"role": "system", "content": instructions})
    # Where the turn's question is: the reasoning of its own tool-calling steps goes back with them.
    question = max(
        (
            number
            for number, message in enumerate(messages)
            if isinstance(message, ModelRequest)
            and any(isinstance(part, UserPromptPart) for part in message.parts)
        ),
        default=-1,
    )
    for number, message in enumerate(messages):
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart):
                    if not isinstance(part.content, str):
                        raise ProviderError("Only text can be sent to this model.")
                    wire.append({"role": "user", "content": part.content})
                elif isinstance(part, ToolReturnPart):
                    wire.append(
                        {
                            "role": "tool",
                            "tool_call_id": part.tool_call_id,
                            "content": part.model_response_str(),
                        }
                    )
                elif isinstance(part, SystemPromptPart):
                    wire.append({"role": "system", "content": part.content})
        else:
            text = "\n\n".join(p.content for p in message.parts if isinstance(p, TextPart))
            calls = [
                {
                    "id": p.tool_call_id,
                    "type": "function",
                    "function": {"name": p.tool_name, "arguments": p.args_as_json_str()},
                }
                for p in message.parts
                if isinstance(p, ToolCallPart)
            ]
            assistant: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                assistant["tool_calls"] = calls
                thinking = [p.content for p in message.parts if isinstance(p, ThinkingPart)]
                if number > question and any(thinking):
                    # DeepSeek's thinking mode refuses a tool-calling step of the current
                    # question sent back without it; other servers ignore the field.
                    assistant["reasoning_content"] = "\n\n".join(thinking)
            wire.append(assistant)
    body: dict[str, Any] = {
        "model": model_name,
        "messages": wire,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description or "",
                    "parameters": tool.parameters_json_schema,
                },
            }
            for tool in tools
        ]
    return body
