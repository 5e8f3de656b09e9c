"""`ChatServiceDep`: chat use cases over the route's session."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from parley.chats.service import ChatService
from parley.core.dependencies import CursorCodecDep, SessionDep


async def get_chat_service(session: SessionDep, codec: CursorCodecDep) -> ChatService:
    """Chat use cases over the route's session."""
    return ChatService(session, codec)


ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
