"""Run Alembic from code: the CLI (`parley migrate`, `parley serve`) and the tests call these.

Alembic is imported only when there is something to do: `parley serve` first asks the database
for its revision (`is_current`), and a database already at `HEAD_REVISION` starts without loading
Alembic and the migration scripts (half a second of a start-up that issue 8 wants under 3 s).
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from parley.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest migration's revision: a new migration changes it (tests/test_migrations.py checks it
# against the scripts' head, so a stale value fails the suite rather than skipping a migration).
HEAD_REVISION = "c3a9e51f7d20"
# What `current` says of a database without any migration.
EMPTY_DATABASE = "(no revision: the database is empty)"


def alembic_config(url: str, *, stdout: TextIO | None = None) -> Config:
    """An Alembic config for the database at `url`, using the migrations inside the package."""
    from alembic.config import Config

    config = Config(stdout=stdout) if stdout is not None else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["url"] = url
    return config


@dataclass(frozen=True, slots=True)
class MigrationStep:
    """One migration applied (or reverted): its revision and its message."""

    revision: str
    message: str


def _run(settings: Settings, direction: str, revision: str) -> list[MigrationStep]:
    """Run Alembic's upgrade or downgrade to `revision`; the migrations it ran, in order."""
    from alembic import command

    steps: list[MigrationStep] = []

    def record(*, step: Any, **_: Any) -> None:
        script = step.up_revision  # the upper revision of the step, applied or reverted
        steps.append(MigrationStep(script.revision, script.doc))

    config = alembic_config(settings.effective_database_url)
    config.attributes["on_version_apply"] = record  # migrations/env.py hands it to Alembic
    getattr(command, direction)(config, revision)
    return steps


def upgrade(settings: Settings, revision: str = "head") -> list[MigrationStep]:
    """Apply migrations up to `revision`; the ones applied, oldest first."""
    settings.ensure_data_dir()
    return _run(settings, "upgrade", revision)


def is_current(settings: Settings) -> bool:
    """Whether the database is at `HEAD_REVISION` (False if it cannot be read: no schema yet, or
    unreachable; `upgrade` then creates it or reports the error)."""
    from parley.core.db import build_engine

    async def revisions() -> set[str]:
        engine = build_engine(settings)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
                return {str(value) for value in rows.scalars()}
        finally:
            await engine.dispose()

    try:
        return asyncio.run(revisions()) == {HEAD_REVISION}
    except (SQLAlchemyError, OSError):
        return False


def upgrade_if_needed(settings: Settings) -> list[MigrationStep]:
    """`upgrade` to head unless the database is there already; the migrations applied."""
    if is_current(settings):
        return []
    return upgrade(settings)


def downgrade(settings: Settings, revision: str) -> list[MigrationStep]:
    """Revert migrations down to `revision` (`base` for an empty schema); the ones reverted,
    newest first."""
    return _run(settings, "downgrade", revision)


def current(settings: Settings) -> str:
    """The database's current revision, as Alembic prints it."""
    from alembic import command

    buffer = io.StringIO()
    command.current(alembic_config(settings.effective_database_url, stdout=buffer))
    return buffer.getvalue().strip() or EMPTY_DATABASE
