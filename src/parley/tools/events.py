"""The event every tool call publishes (see docs/events.md): `parley.tool.called.v1`, for each
call by the in-chat assistant or an MCP client, with the arguments (bounded), how it ended and
how long it took. The audit log is built from it.

A tool call is no change of the database's in itself (a tool that changes something commits its
own events), so its event is written by `record_tool_call` in a short transaction of its own
right after the call. Recording never breaks the call: a failure to write is logged, not raised.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from parley.events.bounds import bounded_json
from parley.events.outbox import add_event
from parley.events.types import EventType

logger = logging.getLogger(__name__)

TOOL_CALLED = "parley.tool.called.v1"
ToolSurface = Literal["assistant", "mcp"]
# The arguments as recorded: each string cut to this many characters, the whole to these bytes.
ARGUMENT_CHARS = 1000
ARGUMENTS_BYTES = 8 * 1024
ERROR_MESSAGE_CHARS = 300


@dataclass(frozen=True, slots=True)
class ToolAudit:
    """Who made a tool call and from where, for its `parley.tool.called.v1` event.

    Attributes:
        surface: `assistant` (the in-chat assistant) or `mcp` (an MCP client).
        chat_id: the chat whose reply made the call (the assistant only).
        message_id: that reply, the assistant message (the assistant only).
    """

    surface: ToolSurface
    chat_id: uuid.UUID | None = None
    message_id: uuid.UUID | None = None


class ToolCallError(BaseModel):
    """Why a call failed."""

    code: str = Field(description="A stable snake_case code, e.g. `not_found`.")
    message: str = Field(description="For a person (cut to 300 characters).")


class ToolCalled(BaseModel):
    """`data` of `parley.tool.called.v1`."""

    surface: ToolSurface = Field(description="Who called: the in-chat assistant, or MCP.")
    tool: str = Field(description="The tool's name, e.g. `add_task`.")
    arguments: dict[str, Any] = Field(
        description="The arguments as validated (as sent when they were invalid); each string "
        "cut to 1,000 characters and the whole to 8 KB."
    )
    status: Literal["ok", "error"]
    error: ToolCallError | None = Field(default=None, description="When `status` is `error`.")
    chat_id: uuid.UUID | None = Field(default=None, description="The assistant's chat.")
    message_id: uuid.UUID | None = Field(
        default=None, description="The assistant message whose reply made the call."
    )
    duration_ms: float = Field(ge=0, description="How long the call took.")


TOOL_EVENTS: tuple[EventType, ...] = (
    EventType(
        TOOL_CALLED,
        ToolCalled,
        "A tool was called by the in-chat assistant or an MCP client; `data` has the "
        "surface, the tool, its arguments (bounded), the outcome and the duration.",
    ),
)


def recorded_arguments(arguments: Any) -> dict[str, Any]:
    """The arguments as an event holds them: JSON, bounded."""
    bounded = bounded_json(arguments, max_chars=ARGUMENT_CHARS, max_bytes=ARGUMENTS_BYTES)
    return bounded if isinstance(bounded, dict) else {"value": bounded}


async def record_tool_call(
    sessionmaker: async_sessionmaker[AsyncSession],
    audit: ToolAudit,
    *,
    user_id: uuid.UUID,
    tool: str,
    arguments: Any,
    error: tuple[str, str] | None,
    duration_ms: float,
) -> None:
    """Write the call's `parley.tool.called.v1` event in a transaction of its own; a failure is
    logged, never raised (the call has happened whatever its record does).

    Args:
        arguments: the validated arguments as JSON (or the raw ones, when invalid).
        error: `(code, message)` of a failed call; None for a success.
    """
    data = ToolCalled(
        surface=audit.surface,
        tool=tool,
        arguments=recorded_arguments(arguments),
        status="ok" if error is None else "error",
        error=None
        if error is None
        else ToolCallError(code=error[0][:100], message=error[1][:ERROR_MESSAGE_CHARS]),
        chat_id=audit.chat_id,
        message_id=audit.message_id,
        duration_ms=round(max(duration_ms, 0.0), 3),
    )
    # Shielded: a caller cancelled meanwhile (a client gone, a turn stopped) waits for this one
    # short write, rather than leave its transaction open (on SQLite, holding the write lock).
    with anyio.CancelScope(shield=True):
        try:
            async with sessionmaker() as session:
                await add_event(
                    session,
                    TOOL_CALLED,
                    subject=f"tools/{tool}"[:200],
                    user_id=user_id,
                    data=data.model_dump(mode="json"),
                )
                await session.commit()
        except Exception:
            logger.exception("could not record the call of tool %s", tool)
