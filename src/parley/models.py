"""Every table, imported in one place so that Alembic and the tests see the whole schema."""

from parley.accounts.models import ApiKey, RefreshToken, User
from parley.core.db import Base

__all__ = ["ApiKey", "Base", "RefreshToken", "User"]
