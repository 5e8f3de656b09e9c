"""`KnowledgeServiceDep`: the caller's knowledge use cases over the route's session and the
process's embedding models."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from parley.core.dependencies import SessionDep, cursor_codec_of
from parley.knowledge.service import KnowledgeService
from parley.llm.dependencies import embeddings_of


async def get_knowledge_service(request: Request, session: SessionDep) -> KnowledgeService:
    """The knowledge use cases over the route's session."""
    return KnowledgeService(session, cursor_codec_of(request), embeddings_of(request))


KnowledgeServiceDep = Annotated[KnowledgeService, Depends(get_knowledge_service)]
