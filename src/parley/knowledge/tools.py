"""The knowledge tool (CONTRACT.md section 9): `search_knowledge {query}`, for the in-chat
assistant and MCP clients alike.

In a chat it searches the chat's knowledge bases and the files attached to its messages, and is
offered only when the chat has either; over MCP it searches every file of the caller's. Each
passage it returns is also a source of the reply: the turn streams it as a `source-document`
chunk and saves it as a `source` part. Thin over `KnowledgeService`, acting as the calling user.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from parley.core.validation import RequestModel, reject_unstorable_text
from parley.knowledge.service import KnowledgeService
from parley.tools.registry import ToolContext, ToolDefinition, ToolError

MAX_TOOL_RESULTS = 10


class SearchKnowledgeArgs(RequestModel):
    """Arguments of `search_knowledge`."""

    query: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
        AfterValidator(reject_unstorable_text),
    ] = Field(description="What to look for, in the user's words or a rephrasing.")
    limit: int = Field(default=5, ge=1, le=MAX_TOOL_RESULTS, description="How many passages.")


class KnowledgePassage(BaseModel):
    """A passage of one of the user's files."""

    source_id: str = Field(description="Cite it by this id (the passage's chunk id).")
    file_id: uuid.UUID
    filename: str
    page: int | None = Field(description="From 1; null for formats without pages.")
    heading: str | None
    text: str
    score: float


class KnowledgeResults(BaseModel):
    """The passages found, best first (an empty list: nothing matched)."""

    results: list[KnowledgePassage]
    media_types: dict[str, str] = Field(default_factory=dict, exclude=True)

    def cited_sources(self) -> list[dict[str, Any]]:
        """Each passage as a source of the reply (see `parley.tools.registry.ToolResult`)."""
        return [
            {
                "source_id": passage.source_id,
                "media_type": self.media_types.get(passage.source_id, "text/plain"),
                "title": _title(passage),
                "filename": passage.filename,
                "file_id": str(passage.file_id),
                "page": passage.page,
            }
            for passage in self.results
        ]


def _title(passage: KnowledgePassage) -> str:
    where = f", page {passage.page}" if passage.page else ""
    heading = f" — {passage.heading}" if passage.heading else ""
    return f"{passage.filename}{where}{heading}"


def _offered(context: ToolContext) -> bool:
    # Over MCP (no scope) always; in a chat only when it has knowledge bases or attached files.
    return context.embeddings is not None and (context.knowledge is None or bool(context.knowledge))


async def search_knowledge(context: ToolContext, args: SearchKnowledgeArgs) -> KnowledgeResults:
    if context.embeddings is None:
        raise ToolError("Knowledge search is not available here.", code="unavailable")
    scope = context.knowledge
    async with context.session() as session:
        service = KnowledgeService(session, context.cursor_codec, context.embeddings)
        if scope is None:
            files = None
        else:
            files = await service.scope(
                context.user.id,
                knowledge_ids=scope.knowledge_ids,
                file_ids=scope.file_ids,
                strict=False,  # a base or a file deleted since it was attached: the rest
            )
        hits = await service.search_within(context.user.id, args.query, files, limit=args.limit)
    return KnowledgeResults(
        results=[
            KnowledgePassage(
                source_id=str(hit.chunk_id),
                file_id=hit.file_id,
                filename=hit.filename,
                page=hit.page,
                heading=hit.heading,
                text=hit.text,
                score=round(hit.score, 6),
            )
            for hit in hits
        ],
        media_types={str(hit.chunk_id): hit.media_type for hit in hits},
    )


KNOWLEDGE_TOOLS: tuple[ToolDefinition[Any], ...] = (
    ToolDefinition(
        name="search_knowledge",
        description=(
            "Search the user's files (in a chat: its knowledge bases and attached files) for "
            "passages about `query`. Returns the best passages with their file, page and "
            "heading; quote them and cite each by its file and page."
        ),
        arguments=SearchKnowledgeArgs,
        function=search_knowledge,
        result=KnowledgeResults,
        read_only=True,
        idempotent=True,
        available=_offered,
    ),
)
