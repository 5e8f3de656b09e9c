"""Where uploaded bytes live: content-addressed per user, behind a small interface so that an
object store can take the local disk's place.

`LocalStorage` keeps each blob at `<root>/<owner id>/<sha256[:2]>/<sha256>`. An upload is copied
to a temporary file under `<root>/.incoming` while it is hashed and counted, then renamed into
place (an atomic rename on one filesystem): the same bytes uploaded again by the same user take
the same place, one blob. Paths are built only from the owner's UUID and a hex digest, never from
a filename. Every disk operation runs in a worker thread, so the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from parley.core.errors import PayloadTooLarge

COPY_CHUNK_BYTES = 1024 * 1024
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """What `put` stored: the bytes' SHA-256 (hex) and size."""

    sha256: str
    size_bytes: int


class FileStorage(Protocol):
    """The bytes of users' files, addressed by owner and SHA-256."""

    async def put(self, owner_id: uuid.UUID, source: BinaryIO, *, max_bytes: int) -> StoredBlob:
        """Store what `source` holds (read from its current position to its end).

        Raises:
            PayloadTooLarge: it holds more than `max_bytes` (nothing is kept).
        """
        ...

    def local_path(self, owner_id: uuid.UUID, sha256: str) -> Path:
        """A path on this machine to read the blob from (for extraction)."""
        ...

    def read(self, owner_id: uuid.UUID, sha256: str) -> AsyncIterator[bytes]:
        """The blob's bytes, in chunks."""
        ...

    async def exists(self, owner_id: uuid.UUID, sha256: str) -> bool:
        """Whether the blob is stored."""
        ...

    async def delete(self, owner_id: uuid.UUID, sha256: str) -> None:
        """Remove the blob (nothing if it is not there)."""
        ...


def _check_digest(sha256: str) -> str:
    if len(sha256) != 64 or not set(sha256) <= _HEX:
        raise ValueError("not a SHA-256 hex digest")
    return sha256


class LocalStorage:
    """Blobs on the local disk under `root` (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._incoming = root / ".incoming"

    def local_path(self, owner_id: uuid.UUID, sha256: str) -> Path:
        digest = _check_digest(sha256)
        return self.root / owner_id.hex / digest[:2] / digest

    async def put(self, owner_id: uuid.UUID, source: BinaryIO, *, max_bytes: int) -> StoredBlob:
        return await asyncio.to_thread(self._put, owner_id, source, max_bytes)

    def _put(self, owner_id: uuid.UUID, source: BinaryIO, max_bytes: int) -> StoredBlob:
        self._incoming.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        handle, name = tempfile.mkstemp(dir=self._incoming, prefix="upload-")
        temporary = Path(name)
        try:
            with os.fdopen(handle, "wb") as target:
                while chunk := source.read(COPY_CHUNK_BYTES):
                    size += len(chunk)
                    if size > max_bytes:
                        raise PayloadTooLarge(
                            f"The file is larger than the {max_bytes:,}-byte upload limit."
                        )
                    digest.update(chunk)
                    target.write(chunk)
            blob = StoredBlob(digest.hexdigest(), size)
            final = self.local_path(owner_id, blob.sha256)
            final.parent.mkdir(parents=True, exist_ok=True)
            # Replaced even when there: the same bytes, and a delete of the other file with
            # these bytes that is under way cannot leave this upload without its blob.
            temporary.replace(final)
            return blob
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()

    async def read(self, owner_id: uuid.UUID, sha256: str) -> AsyncIterator[bytes]:
        path = self.local_path(owner_id, sha256)
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, COPY_CHUNK_BYTES):
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def exists(self, owner_id: uuid.UUID, sha256: str) -> bool:
        return await asyncio.to_thread(self.local_path(owner_id, sha256).is_file)

    async def delete(self, owner_id: uuid.UUID, sha256: str) -> None:
        path = self.local_path(owner_id, sha256)
        await asyncio.to_thread(path.unlink, missing_ok=True)
