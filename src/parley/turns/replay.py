"""A finished reply as a stream: for an idempotent retry whose event log is gone, the stored message
is sent again as AI SDK UI message stream chunks, so a streaming client reads it like a live one."""

from __future__ import annotations

from typing import Any

from pydantic_ai.ui.vercel_ai.response_types import (
    AbortChunk,
    BaseChunk,
    DoneChunk,
    ErrorChunk,
    FinishChunk,
    FinishStepChunk,
    MessageMetadataChunk,
    ReasoningDeltaChunk,
    ReasoningEndChunk,
    ReasoningStartChunk,
    StartChunk,
    StartStepChunk,
    TextDeltaChunk,
    TextEndChunk,
    TextStartChunk,
    ToolInputAvailableChunk,
    ToolInputStartChunk,
    ToolOutputAvailableChunk,
    ToolOutputErrorChunk,
)

from parley.chats.schemas import MessagePublic
from parley.turns.chunks import source_document
from parley.turns.sse import SDK_VERSION


def _part_chunks(index: int, part: dict[str, Any]) -> list[BaseChunk]:
    kind = part["type"]
    if kind == "text":
        block = f"text-{index}"
        return [
            TextStartChunk(id=block),
            TextDeltaChunk(id=block, delta=part["text"]),
            TextEndChunk(id=block),
        ]
    if kind == "reasoning":
        block = f"reasoning-{index}"
        return [
            ReasoningStartChunk(id=block),
            ReasoningDeltaChunk(id=block, delta=part["text"]),
            ReasoningEndChunk(id=block),
        ]
    if kind == "tool_call":
        return [
            ToolInputStartChunk(tool_call_id=part["tool_call_id"], tool_name=part["tool_name"]),
            ToolInputAvailableChunk(
                tool_call_id=part["tool_call_id"],
                tool_name=part["tool_name"],
                input=part["input"],
            ),
        ]
    if kind == "tool_result":
        if part.get("is_error"):
            return [
                ToolOutputErrorChunk(
                    tool_call_id=part["tool_call_id"], error_text=str(part["output"])
                )
            ]
        return [ToolOutputAvailableChunk(tool_call_id=part["tool_call_id"], output=part["output"])]
    if kind == "source":
        return [source_document(part)]
    return []


def stored_reply_chunks(message: MessagePublic, user_message_id: str) -> list[str]:
    """The encoded chunks of a stored assistant message, `[DONE]` last."""
    chunks: list[BaseChunk] = [
        StartChunk(
            message_id=str(message.id),
            message_metadata={
                "chat_id": str(message.chat_id),
                "user_message_id": user_message_id,
                "model_id": message.model_id,
            },
        ),
        StartStepChunk(),
    ]
    for index, part in enumerate(message.parts):
        chunks.extend(_part_chunks(index, part.model_dump()))
    chunks.append(FinishStepChunk())
    if message.usage is not None:
        chunks.append(
            MessageMetadataChunk(
                message_metadata={
                    "model_id": message.model_id,
                    "usage": {
                        "input_tokens": message.usage.input_tokens,
                        "output_tokens": message.usage.output_tokens,
                        "cost_usd": message.usage.cost_usd,
                    },
                }
            )
        )
    if message.status == "error" and message.error is not None:
        chunks.append(ErrorChunk(error_text=message.error.message))
    elif message.status in ("cancelled", "interrupted"):
        chunks.append(AbortChunk(reason=f"The reply was {message.status}."))
    else:
        chunks.append(FinishChunk(finish_reason="stop"))
    chunks.append(DoneChunk())
    return [chunk.encode(SDK_VERSION) for chunk in chunks]
