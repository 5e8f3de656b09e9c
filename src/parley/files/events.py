"""The events the files publish (see docs/events.md): a file read and searchable, or one that
could not be read, with the file as clients see it (its `error` says why)."""

from __future__ import annotations

from parley.events.types import EventType
from parley.files.schemas import FilePublic

FILE_READY = "parley.file.ready.v1"
FILE_FAILED = "parley.file.failed.v1"

FILE_EVENTS: tuple[EventType, ...] = (
    EventType(FILE_READY, FilePublic, "A file was read and is searchable; `data` is the file."),
    EventType(
        FILE_FAILED,
        FilePublic,
        "A file could not be read; `data` is the file, its `error` the reason.",
    ),
)
