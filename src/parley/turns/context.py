"""What the model sees: the branch path turned into Pydantic AI messages, trimmed to fit the model's
context window, and Parley's tools bound to the calling user.

Stored parts map onto model messages as a provider expects them: a user message is a request with
the user's text; an assistant message is one response per step (text and tool calls) followed by a
request carrying that step's tool results. A tool call whose result was never recorded (a reply
stopped mid-call) is left out, since providers refuse a call without its result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from parley.chats.models import Message
from parley.usage.pricing import tokens_for_chars

# Room left for the reply itself when trimming the context (a quarter of the window, at most this).
MAX_REPLY_RESERVE_TOKENS = 8192


ATTACHED_PREFIX = "[Attached files: "


def message_text(message: Message) -> str:
    """The text parts of a message, joined; the files attached to it named on a last line (the
    model searches them with `search_knowledge`)."""
    texts = [part.get("text", "") for part in message.parts if part.get("type") == "text"]
    files = [
        str(part.get("filename") or "file") for part in message.parts if part.get("type") == "file"
    ]
    if files:
        texts.append(f"{ATTACHED_PREFIX}{', '.join(files)}; search them with search_knowledge]")
    return "\n".join(texts)


def _assistant_messages(message: Message) -> list[ModelMessage]:
    answered = {part["tool_call_id"] for part in message.parts if part.get("type") == "tool_result"}
    converted: list[ModelMessage] = []
    response: list[TextPart | ToolCallPart] = []
    returns: list[ToolReturnPart] = []

    def flush() -> None:
        if response:
            converted.append(ModelResponse(parts=list(response)))
            response.clear()
        if returns:
            converted.append(ModelRequest(parts=list(returns)))
            returns.clear()

    for part in message.parts:
        kind = part.get("type")
        if kind == "text" and part.get("text"):
            if returns:
                flush()
            response.append(TextPart(content=part["text"]))
        elif kind == "tool_call" and part.get("tool_call_id") in answered:
            if returns:
                flush()
            response.append(
                ToolCallPart(
                    tool_name=part["tool_name"],
                    args=part.get("input") or {},
                    tool_call_id=part["tool_call_id"],
                )
            )
        elif kind == "tool_result":
            output = part.get("output")
            returns.append(
                ToolReturnPart(
                    tool_name=part.get("tool_name", ""),
                    content=output if not part.get("is_error") else f"Error: {output}",
                    tool_call_id=part["tool_call_id"],
                )
            )
    flush()
    return converted


def _estimate_tokens(message: Message) -> int:
    return tokens_for_chars(len(json.dumps(message.parts, ensure_ascii=False)), round_up=False) + 4


def trim_to_window(
    path: Sequence[Message], *, context_window: int | None, system_prompt: str | None
) -> list[Message]:
    """The newest messages of `path` that fit the window, always keeping the last one (the
    question being answered), and starting with a user message."""
    if context_window is None or not path:
        return list(path)
    reserve = min(MAX_REPLY_RESERVE_TOKENS, context_window // 4)
    budget = context_window - reserve - tokens_for_chars(len(system_prompt or ""), round_up=False)
    kept: list[Message] = []
    used = 0
    for message in reversed(path):
        cost = _estimate_tokens(message)
        if kept and used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    while len(kept) > 1 and kept[0].role != "user":
        kept.pop(0)
    return kept


@dataclass(frozen=True, slots=True)
class ModelContext:
    """The history, the question, and how big they are."""

    history: list[ModelMessage]
    prompt: str
    chars: int


def build_context(
    path: Sequence[Message], *, context_window: int | None, system_prompt: str | None
) -> ModelContext:
    """The model's view of a branch ending in the user message being answered."""
    kept = trim_to_window(path, context_window=context_window, system_prompt=system_prompt)
    *earlier, question = kept
    history: list[ModelMessage] = []
    for message in earlier:
        if message.role == "user":
            text = message_text(message)
            if text:
                history.append(ModelRequest(parts=[UserPromptPart(content=text)]))
        elif message.role == "assistant":
            history.extend(_assistant_messages(message))
    chars = sum(len(json.dumps(m.parts, ensure_ascii=False)) for m in kept)
    return ModelContext(
        history=history, prompt=message_text(question), chars=chars + len(system_prompt or "")
    )
