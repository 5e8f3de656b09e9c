"""Files over HTTP (CONTRACT.md section 9). Every route acts on the caller's own files; another
user's file is a 404 like a missing one.

- `POST /api/files` — upload (multipart: `file`, optional `knowledge_id`); 201 with the file,
  queued for ingestion
- `GET /api/files` — list, newest first, with `status` and cursor paging
- `GET /api/files/{file_id}` — one file, with its ingestion status and progress
- `GET /api/files/{file_id}/content` — the bytes as uploaded, always as an attachment
- `DELETE /api/files/{file_id}` — delete it with its chunks and vectors
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status
from fastapi.responses import StreamingResponse

from parley.accounts.dependencies import CurrentUser
from parley.core.dependencies import PageDep
from parley.core.errors import (
    InvalidToken,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    StorageQuotaExceeded,
    UnsupportedMediaType,
)
from parley.core.responses import Envelope, Page, error_responses, ok
from parley.files.dependencies import FileServiceDep
from parley.files.schemas import FilePublic

files_router = APIRouter(prefix="/api/files", tags=["files"])

_AUTH_ERRORS = (NotAuthenticated, InvalidToken)


def attachment(filename: str) -> str:
    """A `Content-Disposition: attachment` value for any filename (RFC 6266: an ASCII fallback
    and the UTF-8 name)."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@files_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Upload a file",
    response_model=Envelope[FilePublic],
    responses=error_responses(
        *_AUTH_ERRORS, NotFound, PayloadTooLarge, StorageQuotaExceeded, UnsupportedMediaType
    ),
)
async def upload_file(
    user: CurrentUser,
    files: FileServiceDep,
    file: Annotated[UploadFile, File(description="PDF, DOCX, Markdown, HTML, text, CSV or JSON.")],
    knowledge_id: Annotated[
        uuid.UUID | None, Form(description="A knowledge base of the caller's to add it to.")
    ] = None,
) -> Envelope[FilePublic]:
    """Store the file and queue its ingestion (extract, chunk, embed); follow `status` and
    `progress` on `GET /api/files/{file_id}`. The type is read from the file's first bytes: a file
    that is none of the accepted types, or not what its name says, is a 415."""
    stored = await files.upload(
        user.id,
        file.file,
        filename=file.filename,
        declared_type=file.content_type,
        knowledge_id=knowledge_id,
    )
    return ok(FilePublic.model_validate(stored))


@files_router.get(
    "",
    summary="List files",
    response_model=Envelope[Page[FilePublic]],
    responses=error_responses(*_AUTH_ERRORS),
)
async def list_files(
    user: CurrentUser,
    files: FileServiceDep,
    page: PageDep,
    status_filter: Annotated[
        Literal["queued", "processing", "ready", "failed"] | None,
        Query(alias="status", description="Only files in this state."),
    ] = None,
) -> Envelope[Page[FilePublic]]:
    """The caller's files, newest first."""
    items, next_cursor = await files.list(
        user.id, cursor=page.cursor, limit=page.limit, status=status_filter
    )
    return ok(
        Page(items=[FilePublic.model_validate(item) for item in items], next_cursor=next_cursor)
    )


@files_router.get(
    "/{file_id}",
    summary="Get a file",
    response_model=Envelope[FilePublic],
    responses=error_responses(*_AUTH_ERRORS, NotFound),
)
async def get_file(
    file_id: uuid.UUID, user: CurrentUser, files: FileServiceDep
) -> Envelope[FilePublic]:
    """One of the caller's files, with its ingestion status, progress and counts."""
    return ok(FilePublic.model_validate(await files.get(user.id, file_id)))


@files_router.get(
    "/{file_id}/content",
    summary="Download a file",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The bytes."},
        **error_responses(*_AUTH_ERRORS, NotFound),
    },
)
async def download_file(
    file_id: uuid.UUID, user: CurrentUser, files: FileServiceDep
) -> StreamingResponse:
    """The bytes as uploaded, as an attachment (never shown inline, never sniffed)."""
    stored, content = await files.content(user.id, file_id)
    return StreamingResponse(
        content,
        media_type=stored.media_type,
        headers={
            "Content-Disposition": attachment(stored.filename),
            "Content-Length": str(stored.size_bytes),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "Cache-Control": "private, no-store",
        },
    )


@files_router.delete(
    "/{file_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a file",
    response_class=Response,
    responses=error_responses(*_AUTH_ERRORS, NotFound),
)
async def delete_file(file_id: uuid.UUID, user: CurrentUser, files: FileServiceDep) -> Response:
    """Delete one of the caller's files, its chunks and vectors, and its place in knowledge
    bases."""
    await files.delete(user.id, file_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
