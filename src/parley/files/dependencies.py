"""`FileServiceDep`: the caller's file use cases over the route's session."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from parley.core.dependencies import SessionDep, cursor_codec_of, settings_of
from parley.files.service import FileService


async def get_file_service(request: Request, session: SessionDep) -> FileService:
    """The file use cases over the route's session."""
    return FileService(session, settings_of(request), cursor_codec_of(request))


FileServiceDep = Annotated[FileService, Depends(get_file_service)]
