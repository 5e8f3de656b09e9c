"""File use cases: upload, list, get, read the bytes, delete. Each public method commits once.

An upload is checked before anything is kept: its type from its first bytes (not only what the
client or the filename claims), its size while it is copied (`MAX_UPLOAD_BYTES`), the owner's
quota (`USER_STORAGE_QUOTA_BYTES`, reserved by a conditional UPDATE so that concurrent uploads
cannot pass it together) and, when given, the knowledge base it joins (the caller's own, else
404). Its row and its ingestion job (`files.ingest`, run by `parley.knowledge.ingestion`) commit
together: a file is ingested if and only if its upload committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import unicodedata
import uuid
from collections.abc import AsyncIterator
from pathlib import PurePosixPath, PureWindowsPath
from typing import BinaryIO

from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.errors import NotFound, StorageQuotaExceeded, UnsupportedMediaType
from parley.core.pagination import CursorCodec
from parley.core.telemetry import traced
from parley.files import repository
from parley.files.models import FILENAME_MAX_CHARS, QUEUED, StoredFile
from parley.files.storage import FileStorage, LocalStorage
from parley.jobs.kinds import JobKind
from parley.jobs.queue import enqueue
from parley.knowledge import repository as knowledge_repository
from parley.knowledge.extraction import SUPPORTED_MEDIA_TYPES, detect_media_type
from parley.settings import Settings

logger = logging.getLogger(__name__)

# Extract, chunk and embed one file (`parley.knowledge.ingestion`). A file that cannot be read
# ends `failed` in its first attempt; retries are for what may pass (a provider's outage).
INGEST_JOB = JobKind(
    "files.ingest", queue="default", max_attempts=4, timeout_seconds=1800, backoff_seconds=10
)
SNIFF_BYTES = 8192


def _read_head(source: BinaryIO) -> bytes:
    head = source.read(SNIFF_BYTES)
    source.seek(0)
    return head


def storage_of(settings: Settings) -> FileStorage:
    """Where this deployment keeps files' bytes."""
    return LocalStorage(settings.data_dir / "files")


def safe_filename(name: str | None) -> str:
    """The name to keep and show for an upload: its last path component (either slash), without
    control characters, at most `FILENAME_MAX_CHARS`; "file" if nothing is left."""
    raw = name or ""
    last = PureWindowsPath(PurePosixPath(raw).name).name
    cleaned = "".join(ch for ch in last if unicodedata.category(ch)[0] != "C").strip()
    cleaned = cleaned.lstrip(".") or "file"
    if len(cleaned) > FILENAME_MAX_CHARS:
        stem, dot, suffix = cleaned.rpartition(".")
        if dot and 0 < len(suffix) <= 16:
            cleaned = stem[: FILENAME_MAX_CHARS - len(suffix) - 1] + "." + suffix
        else:
            cleaned = cleaned[:FILENAME_MAX_CHARS]
    return cleaned


class FileService:
    """The caller's files."""

    def __init__(self, session: AsyncSession, settings: Settings, codec: CursorCodec) -> None:
        self.session = session
        self.settings = settings
        self.codec = codec
        self.storage = storage_of(settings)

    @traced(name="files.upload")
    async def upload(
        self,
        owner_id: uuid.UUID,
        source: BinaryIO,
        *,
        filename: str | None,
        declared_type: str | None,
        knowledge_id: uuid.UUID | None = None,
    ) -> StoredFile:
        """Keep an uploaded file and queue its ingestion.

        Raises:
            NotFound: `knowledge_id` is not one of the caller's knowledge bases.
            UnsupportedMediaType: not a type Parley reads, or not what it claims to be.
            PayloadTooLarge: over `MAX_UPLOAD_BYTES`.
            StorageQuotaExceeded: it would take the caller past `USER_STORAGE_QUOTA_BYTES`.
        """
        if knowledge_id is not None and not await knowledge_repository.get_base(
            self.session, owner_id, knowledge_id
        ):
            raise NotFound("No such knowledge base.")
        name = safe_filename(filename)
        head = await asyncio.to_thread(_read_head, source)
        media_type = detect_media_type(head, name, declared_type)
        if media_type is None or media_type not in SUPPORTED_MEDIA_TYPES:
            raise UnsupportedMediaType(
                "Parley reads PDF, DOCX, Markdown, HTML, plain text, CSV and JSON files; this "
                "file is none of them (or not what its name or type says)."
            )
        blob = await self.storage.put(owner_id, source, max_bytes=self.settings.max_upload_bytes)
        try:
            if not await repository.reserve_bytes(
                self.session,
                owner_id,
                blob.size_bytes,
                quota=self.settings.user_storage_quota_bytes,
            ):
                raise StorageQuotaExceeded(
                    f"This upload ({blob.size_bytes:,} bytes) would take your files past "
                    f"your {self.settings.user_storage_quota_bytes:,}-byte storage quota."
                )
            stored = StoredFile(
                owner_id=owner_id,
                filename=name,
                media_type=media_type,
                size_bytes=blob.size_bytes,
                sha256=blob.sha256,
                status=QUEUED,
                progress=0.0,
                chunks=0,
            )
            self.session.add(stored)
            await self.session.flush()
            if knowledge_id is not None:
                await knowledge_repository.link_file(
                    self.session, owner_id, knowledge_id, stored.id
                )
            await enqueue(self.session, INGEST_JOB, {"file_id": str(stored.id)})
            await self.session.commit()
        except BaseException:
            await self.session.rollback()
            with contextlib.suppress(Exception):
                await self._forget_blob_if_unused(owner_id, blob.sha256)
            raise
        return stored

    async def _forget_blob_if_unused(self, owner_id: uuid.UUID, sha256: str) -> None:
        if not await repository.blob_still_used(
            self.session, owner_id, sha256, besides=uuid.UUID(int=0)
        ):
            await self.storage.delete(owner_id, sha256)

    async def get(self, owner_id: uuid.UUID, file_id: uuid.UUID) -> StoredFile:
        """One of the caller's files.

        Raises:
            NotFound: no such file of the caller's.
        """
        stored = await repository.get_file(self.session, owner_id, file_id)
        if stored is None:
            raise NotFound("No such file.")
        return stored

    async def list(
        self, owner_id: uuid.UUID, *, cursor: str | None, limit: int, status: str | None = None
    ) -> tuple[list[StoredFile], str | None]:
        """A page of the caller's files, newest first."""
        return await repository.list_files(
            self.session, owner_id, codec=self.codec, cursor=cursor, limit=limit, status=status
        )

    async def content(
        self, owner_id: uuid.UUID, file_id: uuid.UUID
    ) -> tuple[StoredFile, AsyncIterator[bytes]]:
        """The file and its bytes, as uploaded.

        Raises:
            NotFound: no such file of the caller's.
        """
        stored = await self.get(owner_id, file_id)
        if not await self.storage.exists(owner_id, stored.sha256):
            raise NotFound("The file's bytes are missing.")
        return stored, self.storage.read(owner_id, stored.sha256)

    @traced(name="files.delete")
    async def delete(self, owner_id: uuid.UUID, file_id: uuid.UUID) -> None:
        """Delete the file, its chunks and vectors, its place in knowledge bases and (unless
        another of the caller's files has the same bytes) its bytes. An ingestion running for it
        finds it gone and writes nothing.

        Raises:
            NotFound: no such file of the caller's.
        """
        stored = await self.get(owner_id, file_id)
        sha256, size = stored.sha256, stored.size_bytes
        await knowledge_repository.forget_file(self.session, owner_id, file_id)
        await self.session.delete(stored)
        await repository.release_bytes(self.session, owner_id, size)
        shared = await repository.blob_still_used(self.session, owner_id, sha256, besides=file_id)
        await self.session.commit()
        if not shared:
            await self.storage.delete(owner_id, sha256)
        logger.info("file %s deleted", file_id)
