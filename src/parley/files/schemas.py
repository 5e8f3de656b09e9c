"""File responses (CONTRACT.md section 9)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FileError(BaseModel):
    """Why a file could not be made searchable."""

    code: str = Field(
        description="Stable: unreadable, encrypted, too_many_pages, too_much_text, zip_bomb, "
        "type_mismatch, no_text, missing_bytes, timeout, embedding_failed."
    )
    message: str


class FilePublic(BaseModel):
    """An uploaded file as clients see it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    filename: str
    media_type: str
    size_bytes: int
    sha256: str
    status: Literal["queued", "processing", "ready", "failed"]
    progress: float = Field(ge=0, le=1)
    error: FileError | None
    pages: int | None = Field(description="PDF pages; null for formats without pages.")
    chunks: int
    created_at: datetime
    updated_at: datetime
