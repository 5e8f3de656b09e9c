"""Knowledge use cases: the caller's knowledge bases (create, list, get, change, delete, add and
remove files) and search over the caller's files. Each public method commits once (search reads).

A base, a file or a chunk that is not the caller's is not found (404), like one that does not
exist; a search reads the caller's rows only (see `parley.knowledge.repository`).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.errors import NotFound
from parley.core.pagination import CursorCodec
from parley.core.telemetry import traced
from parley.files import repository as files_repository
from parley.files.models import StoredFile
from parley.knowledge import repository
from parley.knowledge.models import KnowledgeBase
from parley.knowledge.search import SearchHit, hybrid_search
from parley.llm.embeddings import Embeddings

UNSET = object()


@dataclass(frozen=True, slots=True)
class KnowledgeView:
    """A knowledge base with how many files it holds."""

    id: uuid.UUID
    name: str
    description: str | None
    file_count: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, base: KnowledgeBase, file_count: int) -> KnowledgeView:
        return cls(
            base.id, base.name, base.description, file_count, base.created_at, base.updated_at
        )


@dataclass(frozen=True, slots=True)
class ChunkView:
    """One passage of a file, as a citation opens it."""

    chunk_id: uuid.UUID
    file_id: uuid.UUID
    filename: str
    media_type: str
    page: int | None
    heading: str | None
    text: str


class KnowledgeService:
    """The caller's knowledge bases and searches."""

    def __init__(
        self, session: AsyncSession, codec: CursorCodec, embeddings: Embeddings | None = None
    ) -> None:
        self.session = session
        self.codec = codec
        self.embeddings = embeddings

    async def _base(self, owner_id: uuid.UUID, knowledge_id: uuid.UUID) -> KnowledgeBase:
        base = await repository.get_base(self.session, owner_id, knowledge_id)
        if base is None:
            raise NotFound("No such knowledge base.")
        return base

    async def _view(self, owner_id: uuid.UUID, base: KnowledgeBase) -> KnowledgeView:
        counts = await repository.file_counts(self.session, owner_id, [base.id])
        return KnowledgeView.of(base, counts.get(base.id, 0))

    @traced(name="knowledge.create")
    async def create(
        self, owner_id: uuid.UUID, *, name: str, description: str | None
    ) -> KnowledgeView:
        """A new, empty knowledge base."""
        base = KnowledgeBase(owner_id=owner_id, name=name, description=description)
        self.session.add(base)
        await self.session.commit()
        return KnowledgeView.of(base, 0)

    async def list(
        self, owner_id: uuid.UUID, *, cursor: str | None, limit: int
    ) -> tuple[list[KnowledgeView], str | None]:
        """A page of the caller's bases, newest first."""
        bases, next_cursor = await repository.list_bases(
            self.session, owner_id, codec=self.codec, cursor=cursor, limit=limit
        )
        counts = await repository.file_counts(self.session, owner_id, [base.id for base in bases])
        return [KnowledgeView.of(base, counts.get(base.id, 0)) for base in bases], next_cursor

    async def get(self, owner_id: uuid.UUID, knowledge_id: uuid.UUID) -> KnowledgeView:
        """One of the caller's bases.

        Raises:
            NotFound: no such base of the caller's.
        """
        return await self._view(owner_id, await self._base(owner_id, knowledge_id))

    @traced(name="knowledge.update")
    async def update(
        self,
        owner_id: uuid.UUID,
        knowledge_id: uuid.UUID,
        *,
        name: str | None = None,
        description: str | object | None = UNSET,
    ) -> KnowledgeView:
        """Change the base's name and description (`UNSET`: keep it).

        Raises:
            NotFound: no such base of the caller's.
        """
        base = await self._base(owner_id, knowledge_id)
        if name is not None:
            base.name = name
        if description is not UNSET:
            base.description = description  # type: ignore[assignment]
        await self.session.commit()
        return await self._view(owner_id, base)

    @traced(name="knowledge.delete")
    async def delete(self, owner_id: uuid.UUID, knowledge_id: uuid.UUID) -> None:
        """Delete the base (its files stay).

        Raises:
            NotFound: no such base of the caller's.
        """
        await self._base(owner_id, knowledge_id)
        await repository.delete_base(self.session, owner_id, knowledge_id)
        await self.session.commit()

    @traced(name="knowledge.add_file")
    async def add_file(
        self, owner_id: uuid.UUID, knowledge_id: uuid.UUID, file_id: uuid.UUID
    ) -> KnowledgeView:
        """Put one of the caller's files in the base (again: nothing changes).

        Raises:
            NotFound: no such base, or no such file, of the caller's.
        """
        base = await self._base(owner_id, knowledge_id)
        if await files_repository.get_file(self.session, owner_id, file_id) is None:
            raise NotFound("No such file.")
        await repository.link_file(self.session, owner_id, knowledge_id, file_id)
        await self.session.commit()
        return await self._view(owner_id, base)

    async def files(
        self, owner_id: uuid.UUID, knowledge_id: uuid.UUID, *, cursor: str | None, limit: int
    ) -> tuple[builtins.list[StoredFile], str | None]:
        """A page of the files in one of the caller's bases, newest first.

        Raises:
            NotFound: no such base of the caller's.
        """
        await self._base(owner_id, knowledge_id)
        return await files_repository.list_files(
            self.session,
            owner_id,
            codec=self.codec,
            cursor=cursor,
            limit=limit,
            among=repository.base_file_ids(owner_id, knowledge_id),
        )

    async def chunk(self, owner_id: uuid.UUID, chunk_id: uuid.UUID) -> ChunkView:
        """One passage of the caller's files (what a `source` part of a reply names).

        Raises:
            NotFound: no such passage of the caller's (or its file was deleted).
        """
        found = await repository.chunks_with_files(self.session, owner_id, [chunk_id])
        if chunk_id not in found:
            raise NotFound("No such passage: its file may have been deleted.")
        chunk, stored = found[chunk_id]
        return ChunkView(
            chunk.id,
            stored.id,
            stored.filename,
            stored.media_type,
            chunk.page,
            chunk.heading,
            chunk.text,
        )

    @traced(name="knowledge.remove_file")
    async def remove_file(
        self, owner_id: uuid.UUID, knowledge_id: uuid.UUID, file_id: uuid.UUID
    ) -> None:
        """Take a file out of the base (the file stays).

        Raises:
            NotFound: no such base of the caller's, or the file is not in it.
        """
        await self._base(owner_id, knowledge_id)
        if not await repository.unlink_file(self.session, owner_id, knowledge_id, file_id):
            raise NotFound("The file is not in this knowledge base.")
        await self.session.commit()

    async def scope(
        self,
        owner_id: uuid.UUID,
        *,
        knowledge_ids: Sequence[uuid.UUID] = (),
        file_ids: Sequence[uuid.UUID] = (),
        strict: bool = True,
    ) -> builtins.list[uuid.UUID] | None:
        """The files a search covers: those of the bases and the files given, or (neither
        given) None, every file of the caller's.

        Raises:
            NotFound: `strict` and a base or a file is not the caller's.
        """
        if not knowledge_ids and not file_ids:
            return None
        bases = await repository.get_bases(self.session, owner_id, knowledge_ids)
        files = await files_repository.get_files(self.session, owner_id, file_ids)
        if strict and (len(bases) < len(set(knowledge_ids)) or len(files) < len(set(file_ids))):
            raise NotFound("No such knowledge base or file.")
        scoped = set(await repository.files_in_bases(self.session, owner_id, [b.id for b in bases]))
        scoped.update(stored.id for stored in files)
        return sorted(scoped)

    @traced(name="knowledge.search")
    async def search(
        self,
        owner_id: uuid.UUID,
        query: str,
        *,
        knowledge_ids: Sequence[uuid.UUID] = (),
        file_ids: Sequence[uuid.UUID] = (),
        limit: int = 8,
    ) -> builtins.list[SearchHit]:
        """The caller's passages that best answer `query` (hybrid search), within the bases and
        files given (none: every file of the caller's).

        Raises:
            NotFound: a base or a file given is not the caller's.
        """
        scoped = await self.scope(owner_id, knowledge_ids=knowledge_ids, file_ids=file_ids)
        return await self.search_within(owner_id, query, scoped, limit=limit)

    async def search_within(
        self,
        owner_id: uuid.UUID,
        query: str,
        file_ids: Sequence[uuid.UUID] | None,
        *,
        limit: int = 8,
    ) -> builtins.list[SearchHit]:
        """Hybrid search over the caller's `file_ids` (None: all the caller's files)."""
        if self.embeddings is None:
            raise RuntimeError("KnowledgeService.search needs the embedding models")
        return await hybrid_search(
            self.session,
            owner_id,
            query,
            self.embeddings.default(),
            file_ids=file_ids,
            limit=limit,
        )
