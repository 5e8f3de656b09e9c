"""Knowledge bases and search over HTTP (CONTRACT.md section 9). Every route acts on the caller's
own bases and files; another user's is a 404 like a missing one.

- `POST /api/knowledge` — create a knowledge base
- `GET /api/knowledge` — list, newest first, with cursor paging
- `GET /api/knowledge/search` — hybrid search over the caller's files (`q`, `knowledge_id`,
  `file_id`, `limit`)
- `GET /api/knowledge/chunks/{chunk_id}` — one passage of the caller's files (a citation's
  `source_id`), with its file, page and heading
- `GET /api/knowledge/{knowledge_id}` — one base
- `PATCH /api/knowledge/{knowledge_id}` — change its name or description
- `DELETE /api/knowledge/{knowledge_id}` — delete it (its files stay)
- `GET /api/knowledge/{knowledge_id}/files` — the files in it, newest first, with cursor paging
- `POST /api/knowledge/{knowledge_id}/files` — add one of the caller's files
- `DELETE /api/knowledge/{knowledge_id}/files/{file_id}` — take a file out
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from parley.accounts.dependencies import CurrentUser
from parley.core.dependencies import PageDep
from parley.core.errors import InvalidToken, NotAuthenticated, NotFound
from parley.core.responses import Envelope, Page, error_responses, ok
from parley.files.schemas import FilePublic
from parley.knowledge.dependencies import KnowledgeServiceDep
from parley.knowledge.schemas import (
    ChunkPublic,
    KnowledgeCreate,
    KnowledgeFileAdd,
    KnowledgePublic,
    KnowledgeUpdate,
    SearchItem,
    SearchQuery,
    SearchResults,
)
from parley.knowledge.search import MAX_LIMIT
from parley.knowledge.service import UNSET, KnowledgeView

knowledge_router = APIRouter(prefix="/api/knowledge", tags=["knowledge"])

_AUTH_ERRORS = (NotAuthenticated, InvalidToken)


def _public(view: KnowledgeView) -> KnowledgePublic:
    return KnowledgePublic.model_validate(view)


@knowledge_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a knowledge base",
    response_model=Envelope[KnowledgePublic],
    responses=error_responses(*_AUTH_ERRORS),
)
async def create_knowledge(
    body: KnowledgeCreate, user: CurrentUser, knowledge: KnowledgeServiceDep
) -> Envelope[KnowledgePublic]:
    """A new, empty knowledge base of the caller's."""
    view = await knowledge.create(user.id, name=body.name, description=body.description)
    return ok(_public(view))


@knowledge_router.get(
    "",
    summary="List knowledge bases",
    response_model=Envelope[Page[KnowledgePublic]],
    responses=error_responses(*_AUTH_ERRORS),
)
async def list_knowledge(
    user: CurrentUser, knowledge: KnowledgeServiceDep, page: PageDep
) -> Envelope[Page[KnowledgePublic]]:
    """The caller's knowledge bases, newest first."""
    items, next_cursor = await knowledge.list(user.id, cursor=page.cursor, limit=page.limit)
    return ok(Page(items=[_public(item) for item in items], next_cursor=next_cursor))


@knowledge_router.get(
    "/search",
    summary="Search the caller's files",
    response_model=Envelope[SearchResults],
    responses=error_responses(*_AUTH_ERRORS, NotFound),
)
async def search_knowledge(
    user: CurrentUser,
    knowledge: KnowledgeServiceDep,
    q: Annotated[SearchQuery, Query(description="What to look for.")],
    knowledge_id: Annotated[
        uuid.UUID | None, Query(description="Only the files of this knowledge base.")
    ] = None,
    file_id: Annotated[uuid.UUID | None, Query(description="Only this file.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="How many passages.")] = 8,
) -> Envelope[SearchResults]:
    """The passages of the caller's ready files that best answer `q`: keyword and vector search
    fused by reciprocal rank."""
    hits = await knowledge.search(
        user.id,
        q,
        knowledge_ids=[knowledge_id] if knowledge_id else [],
        file_ids=[file_id] if file_id else [],
        limit=limit,
    )
    return ok(
        SearchResults(
            items=[
                SearchItem(
                    chunk_id=hit.chunk_id,
                    file_id=hit.file_id,
                    filename=hit.filename,
                    page=hit.page,
                    heading=hit.heading,
                    text=hit.text,
                    score=hit.score,
                )
                for hit in hits
            ]
        )
    )


@knowledge_router.get(
    "/chunks/{chunk_id}",
    summary="Get a passage",
    response_model=Envelope[ChunkPublic],
    responses=error_responses(*_AUTH_ERRORS, NotFound),
)
async def get_chunk(
    chunk_id: uuid.UUID, user: CurrentUser, knowledge: KnowledgeServiceDep
) -> Envelope[ChunkPublic]:
    """One passage of the caller's files: what a reply's `source` part (`source_id`) or a search
    hit (`chunk_id`) names, with its file, page and heading."""
    return ok(ChunkPublic.model_validate(await knowledge.chunk(user.id, chunk_id)))


@knowledge_router.get(
    "/{knowledge_id}",
    summary="Get a knowledge base",
    response_model=Envelope[KnowledgePublic],
    responses=error_responses(*_AUTH_ERRORS, NotFound),
)
async def get_knowledge(
    knowledge_id: uuid.UUID, user: CurrentUser, knowledge: KnowledgeServiceDep
) -> Envelope[KnowledgePublic]:
    """One of the caller's knowledge bases."""
    return ok(_public(await knowledge.get(user.id, knowledge_id)))


@knowledge_router.patch(
    "/{knowledge_id}",
    summary="Update a knowledge base",
    response_model=Envelope[KnowledgePublic],
    responses=error_responses(*_AUTH_ERRORS, NotFound),
)
async def update_knowledge(
    knowledge_id: uuid.UUID,
    body: KnowledgeUpdate,
    user: CurrentUser,
    knowledge: KnowledgeServiceDep,
) -> Envelope[KnowledgePublic]:
    """Change only the fields sent; `description` may be null to clear it."""
    view = await knowledge.update(
        user.id,
        knowledge_id,
        name=body.name,
        description=body.description if "description" in body.model_fields_set else UNSET,
    )
    return ok(_public(view))


@knowledge_router.delete(
    "/{knowledge_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a knowledge base",
    response_class=Response,
    responses=error_responses(*_AUTH_ERRORS, NotFound),
)
async def delete_knowledge(
    knowledge_id: uuid.UUID, user: CurrentUser, knowledge: KnowledgeServiceDep
) -> Response:
    """Delete the knowledge base; its files stay."""
    await knowledge.delete(user.id, knowledge_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@knowledge_router.get(
    "/{knowledge_id}/files",
    summary="List the files of a knowledge base",
    response_model=Envelope[Page[FilePublic]],
    responses=error_responses(*_AUTH_ERRORS, NotFound),
)
async def list_knowledge_files(
    knowledge_id: uuid.UUID, user: CurrentUser, knowledge: KnowledgeServiceDep, page: PageDep
) -> Envelope[Page[FilePublic]]:
    """The files in one of the caller's knowledge bases, newest first."""
    items, next_cursor = await knowledge.files(
        user.id, knowledge_id, cursor=page.cursor, limit=page.limit
    )
    return ok(
        Page(items=[FilePublic.model_validate(item) for item in items], next_cursor=next_cursor)
    )


@knowledge_router.post(
    "/{knowledge_id}/files",
    summary="Add a file to a knowledge base",
    response_model=Envelope[KnowledgePublic],
    responses=error_responses(*_AUTH_ERRORS, NotFound),
)
async def add_knowledge_file(
    knowledge_id: uuid.UUID,
    body: KnowledgeFileAdd,
    user: CurrentUser,
    knowledge: KnowledgeServiceDep,
) -> Envelope[KnowledgePublic]:
    """Put one of the caller's files in the base (adding it again changes nothing)."""
    return ok(_public(await knowledge.add_file(user.id, knowledge_id, body.file_id)))


@knowledge_router.delete(
    "/{knowledge_id}/files/{file_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a file from a knowledge base",
    response_class=Response,
    responses=error_responses(*_AUTH_ERRORS, NotFound),
)
async def remove_knowledge_file(
    knowledge_id: uuid.UUID, file_id: uuid.UUID, user: CurrentUser, knowledge: KnowledgeServiceDep
) -> Response:
    """Take the file out of the base; the file stays."""
    await knowledge.remove_file(user.id, knowledge_id, file_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
