"""Knowledge base requests and responses, and search results (CONTRACT.md section 9)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from parley.core.validation import RequestModel, reject_unstorable_text
from parley.knowledge.models import DESCRIPTION_MAX_CHARS, NAME_MAX_CHARS

SEARCH_QUERY_MAX_CHARS = 2000

Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX_CHARS),
    AfterValidator(reject_unstorable_text),
]
Description = Annotated[
    str,
    StringConstraints(max_length=DESCRIPTION_MAX_CHARS),
    AfterValidator(reject_unstorable_text),
]
SearchQuery = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=SEARCH_QUERY_MAX_CHARS),
    AfterValidator(reject_unstorable_text),
]


class KnowledgeCreate(RequestModel):
    """A new knowledge base."""

    name: Name
    description: Description | None = None


class KnowledgeUpdate(RequestModel):
    """Changes to a knowledge base: only the fields sent change; `description` may be null."""

    name: Name | None = None
    description: Description | None = None


class KnowledgeFileAdd(RequestModel):
    """A file of the caller's to put in the base."""

    file_id: uuid.UUID


class KnowledgePublic(BaseModel):
    """A knowledge base as clients see it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None
    file_count: int
    created_at: datetime
    updated_at: datetime


class SearchItem(BaseModel):
    """One passage a search found."""

    chunk_id: uuid.UUID
    file_id: uuid.UUID
    filename: str
    page: int | None = Field(description="From 1; null for formats without pages.")
    heading: str | None
    text: str
    score: float


class ChunkPublic(BaseModel):
    """One passage of a file: what a reply's `source` part (its `source_id`) points to."""

    model_config = ConfigDict(from_attributes=True)

    chunk_id: uuid.UUID
    file_id: uuid.UUID
    filename: str
    media_type: str
    page: int | None = Field(description="From 1; null for formats without pages.")
    heading: str | None
    text: str


class SearchResults(BaseModel):
    """The passages a search found, best first."""

    items: list[SearchItem]
