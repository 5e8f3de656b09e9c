"""Run Alembic from code: the CLI (`parley migrate`, `parley serve`) and the tests call these."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TextIO

from alembic import command
from alembic.config import Config

from parley.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str, *, stdout: TextIO | None = None) -> Config:
    """An Alembic config for the database at `url`, using the migrations inside the package."""
    config = Config(stdout=stdout) if stdout is not None else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["url"] = url
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Apply migrations up to `revision`."""
    settings.ensure_data_dir()
    command.upgrade(alembic_config(settings.effective_database_url), revision)


def downgrade(settings: Settings, revision: str) -> None:
    """Revert migrations down to `revision` (`base` for an empty schema)."""
    command.downgrade(alembic_config(settings.effective_database_url), revision)


def current(settings: Settings) -> str:
    """The database's current revision, as Alembic prints it."""
    buffer = io.StringIO()
    command.current(alembic_config(settings.effective_database_url, stdout=buffer))
    return buffer.getvalue().strip() or "(no revision: the database is empty)"
