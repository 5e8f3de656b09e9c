"""Pydantic models of the user's OAuth connections over REST."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class ConnectionPublic(BaseModel):
    """An MCP client the user allowed: one grant, with its client."""

    id: uuid.UUID = Field(description="The connection (grant) id; revoke it with DELETE.")
    client_id: str = Field(description="The client's OAuth `client_id`.")
    client_name: str | None = Field(description="The name the client registered with.")
    resource: str = Field(description="The resource its tokens are bound to (`<base>/mcp`).")
    scope: str | None
    created_at: datetime
    last_used_at: datetime | None
