"""Chats and the message tree over HTTP (CONTRACT.md section 5).

- `POST /api/chats`, `GET /api/chats` (`q`, `archived`; newest activity first)
- `GET/PATCH/DELETE /api/chats/{chat_id}` (DELETE is a soft delete)
- `GET /api/chats/{chat_id}/messages?leaf_id=` (the path to a leaf, a page at a time)

Sending, regenerating, stopping and resuming replies are in `parley.turns.router`.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from parley.accounts.dependencies import CurrentUser
from parley.chats.dependencies import ChatServiceDep
from parley.chats.schemas import ChatCreate, ChatPublic, ChatUpdate, MessagePublic
from parley.core.dependencies import PageDep
from parley.core.errors import InvalidToken, NotAuthenticated, NotFound
from parley.core.responses import Envelope, Page, error_responses, ok
from parley.core.validation import StorableText

chats_router = APIRouter(prefix="/api/chats", tags=["chats"])
AUTH_ERRORS = (NotAuthenticated, InvalidToken)


@chats_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a chat",
    responses=error_responses(*AUTH_ERRORS, NotFound),
)
async def create_chat(
    body: ChatCreate, user: CurrentUser, chats: ChatServiceDep
) -> Envelope[ChatPublic]:
    """A new chat; `model_id` must be an enabled catalog model (default: the default model)."""
    chat = await chats.create(
        user,
        title=body.title,
        model_id=body.model_id or None,
        system_prompt=body.system_prompt,
        knowledge_ids=body.knowledge_ids or (),
    )
    return ok(ChatPublic.model_validate(chat))


@chats_router.get("", summary="List chats", responses=error_responses(*AUTH_ERRORS))
async def list_chats(
    user: CurrentUser,
    chats: ChatServiceDep,
    page: PageDep,
    q: Annotated[
        StorableText | None,
        Query(max_length=200, description="Text in the title or in any message."),
    ] = None,
    archived: Annotated[
        bool | None, Query(description="Only archived (true) or only active (false) chats.")
    ] = None,
) -> Envelope[Page[ChatPublic]]:
    """The caller's chats, newest activity first."""
    items, next_cursor = await chats.list_chats(
        user, q=q, archived=archived, cursor=page.cursor, limit=page.limit
    )
    return ok(Page(items=[ChatPublic.model_validate(c) for c in items], next_cursor=next_cursor))


@chats_router.get(
    "/{chat_id}", summary="Get a chat", responses=error_responses(*AUTH_ERRORS, NotFound)
)
async def get_chat(
    chat_id: uuid.UUID, user: CurrentUser, chats: ChatServiceDep
) -> Envelope[ChatPublic]:
    """One of the caller's chats."""
    return ok(ChatPublic.model_validate(await chats.get(user, chat_id)))


@chats_router.patch(
    "/{chat_id}", summary="Update a chat", responses=error_responses(*AUTH_ERRORS, NotFound)
)
async def update_chat(
    chat_id: uuid.UUID,
    body: ChatUpdate,
    user: CurrentUser,
    chats: ChatServiceDep,
) -> Envelope[ChatPublic]:
    """Rename, archive or unarchive, change the model or system prompt (null clears it), or
    switch to another branch with `current_leaf_id`."""
    chat = await chats.update(user, chat_id, body.model_dump(exclude_unset=True))
    return ok(ChatPublic.model_validate(chat))


@chats_router.delete(
    "/{chat_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a chat",
    responses=error_responses(*AUTH_ERRORS, NotFound),
)
async def delete_chat(chat_id: uuid.UUID, user: CurrentUser, chats: ChatServiceDep) -> Response:
    """Soft-delete the chat: it is gone from every route afterwards."""
    await chats.delete(user, chat_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@chats_router.get(
    "/{chat_id}/messages",
    summary="Messages on a branch",
    responses=error_responses(*AUTH_ERRORS, NotFound),
)
async def list_messages(
    chat_id: uuid.UUID,
    user: CurrentUser,
    chats: ChatServiceDep,
    page: PageDep,
    leaf_id: Annotated[
        uuid.UUID | None, Query(description="Default: the chat's current leaf.")
    ] = None,
) -> Envelope[Page[MessagePublic]]:
    """The path from the root to `leaf_id`, oldest first. The first page is the `limit` messages
    ending at the leaf; `next_cursor` continues towards the root."""
    items, next_cursor = await chats.messages(
        user, chat_id, leaf_id=leaf_id, cursor=page.cursor, limit=page.limit
    )
    return ok(Page(items=items, next_cursor=next_cursor))
