"""`ChatServiceDep`: chat use cases over the route's session."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from parley.chats.service import ChatService
from parley.core.dependencies import SessionDep, cursor_codec_of
from parley.llm.dependencies import llm_service_of


async def get_chat_service(request: Request, session: SessionDep) -> ChatService:
    """Chat use cases over the route's session."""
    return ChatService(session, cursor_codec_of(request), llm_service_of(request, session))


ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
