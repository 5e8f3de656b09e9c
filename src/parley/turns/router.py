"""Replies over HTTP (CONTRACT.md sections 5 and 6).

- `POST /api/chats/{chat_id}/messages` — send; streams the reply (or `?stream=false`: 201 with
  both messages)
- `POST /api/chats/{chat_id}/messages/{message_id}/regenerate` — a new reply; streams likewise
- `POST /api/chats/{chat_id}/stop` — stop the reply in progress (204, or 409 `no_active_stream`)
- `GET /api/chats/{chat_id}/stream` — resume the reply in progress (`Last-Event-ID`), 204 if none

Errors before the first byte are ordinary enveloped errors; after it, `error` chunks.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response, status
from fastapi.responses import StreamingResponse

from parley.accounts.dependencies import CurrentCaller
from parley.chats.schemas import MessageCreate, RegenerateRequest, TurnResult
from parley.core.errors import (
    BudgetExceeded,
    InvalidToken,
    NotAuthenticated,
    NotFound,
    RateLimited,
)
from parley.core.responses import Envelope, error_responses, ok
from parley.turns.dependencies import TurnServiceDep
from parley.turns.idempotency import IdempotencyKeyReused, ReplyInProgress
from parley.turns.service import Answer, NoActiveStream
from parley.turns.sse import STREAM_HEADERS, sse_line

turns_router = APIRouter(prefix="/api/chats", tags=["messages"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Retries with the same key within 24 hours answer with the same turn.",
    ),
]
StreamFlag = Annotated[
    bool, Query(description="false: wait for the reply and answer 201 with both messages.")
]
TURN_ERRORS = (
    NotAuthenticated,
    InvalidToken,
    NotFound,
    ReplyInProgress,
    IdempotencyKeyReused,
    RateLimited,
    BudgetExceeded,
)
STREAM_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "data"],
    "properties": {
        "id": {"type": "string", "description": "Increasing from 1 within the reply."},
        "data": {
            "type": "string",
            "description": "A JSON chunk of the AI SDK UI message stream v1; `[DONE]` last.",
        },
        "event": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The reply as a server-sent event stream (AI SDK UI message stream v1).",
        # One event's schema (`itemSchema`, as FastAPI documents its own event streams): a
        # `{"type": "string"}` there would claim each event is a bare string.
        "content": {"text/event-stream": {"itemSchema": STREAM_EVENT_SCHEMA}},
    },
    201: {"model": Envelope[TurnResult], "description": "With `?stream=false`: both messages."},
}


def _stream(batches: AsyncIterator[list[tuple[int, str]]]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        # The events that wait together go out in one write: under load a reader is often
        # several chunks behind the reply, and each write costs more than its bytes.
        async for batch in batches:
            yield b"".join(sse_line(number, data) for number, data in batch)

    return StreamingResponse(body(), media_type="text/event-stream", headers=STREAM_HEADERS)


def _answered(answer: Answer, response: Response) -> Any:
    if isinstance(answer, TurnResult):
        response.status_code = status.HTTP_201_CREATED
        return ok(answer)
    return _stream(answer)


@turns_router.post(
    "/{chat_id}/messages",
    summary="Send a message",
    response_model=None,
    responses={**error_responses(*TURN_ERRORS), **STREAM_RESPONSE},
)
async def send_message(
    chat_id: uuid.UUID,
    body: MessageCreate,
    caller: CurrentCaller,
    turns: TurnServiceDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    stream: StreamFlag = True,
) -> Any:
    """Add a user message (under `parent_id`, default the current leaf; an earlier message's id
    starts a branch; an explicit null starts a new root) and stream the assistant's reply."""
    answer = await turns.send(
        caller,
        chat_id,
        parts=body.text_parts(),
        parent_id=body.parent_id,
        new_root="parent_id" in body.model_fields_set and body.parent_id is None,
        model_id=body.model_id,
        idempotency_key=idempotency_key,
        fingerprint_body=body.model_dump(mode="json", exclude_unset=True),
        api_key_id=caller.api_key_id,
        stream=stream,
    )
    return _answered(answer, response)


@turns_router.post(
    "/{chat_id}/messages/{message_id}/regenerate",
    summary="Regenerate a reply",
    response_model=None,
    responses={**error_responses(*TURN_ERRORS), **STREAM_RESPONSE},
)
async def regenerate_message(
    chat_id: uuid.UUID,
    message_id: uuid.UUID,
    caller: CurrentCaller,
    turns: TurnServiceDep,
    response: Response,
    body: Annotated[RegenerateRequest | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
    stream: StreamFlag = True,
) -> Any:
    """A new assistant reply: a sibling of `message_id` (an assistant message) or a new child of
    it (a user message). Streams like sending."""
    request = body or RegenerateRequest()
    answer = await turns.regenerate(
        caller,
        chat_id,
        message_id,
        model_id=request.model_id,
        idempotency_key=idempotency_key,
        fingerprint_body=request.model_dump(mode="json", exclude_unset=True),
        api_key_id=caller.api_key_id,
        stream=stream,
    )
    return _answered(answer, response)


@turns_router.post(
    "/{chat_id}/stop",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Stop the reply in progress",
    responses=error_responses(NotAuthenticated, InvalidToken, NotFound, NoActiveStream),
)
async def stop_reply(chat_id: uuid.UUID, caller: CurrentCaller, turns: TurnServiceDep) -> Response:
    """Stop the chat's reply in progress; the partial reply is kept as `cancelled`."""
    await turns.stop(caller, chat_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@turns_router.get(
    "/{chat_id}/stream",
    summary="Resume the reply in progress",
    response_model=None,
    responses={
        **error_responses(NotAuthenticated, InvalidToken, NotFound),
        200: STREAM_RESPONSE[200],
        204: {"description": "No reply is in progress."},
    },
)
async def resume_stream(
    chat_id: uuid.UUID,
    caller: CurrentCaller,
    turns: TurnServiceDep,
    last_event_id: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            # A Redis stream id's part is a 64-bit number.
            le=2**63 - 1,
            description="Replay after this event id.",
        ),
    ] = None,
) -> Response:
    """Replay the reply in progress from its first event, or after `Last-Event-ID`, then follow
    it to its end."""
    events = await turns.follow(caller, chat_id, last_event_id or 0)
    if events is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return _stream(events)
