"""Migrations on a fresh database of the current kind: up to head, down to base, up again; and no
drift between the migrated schema and the models (what autogenerate would write is nothing)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from parley import migrate
from parley.core.db import build_engine
from parley.models import Base
from parley.settings import Settings


def _settings(url: str, tmp_path: Path) -> Settings:
    return Settings(_env_file=None, database_url=url, data_dir=tmp_path, jwt_secret="t" * 40)


def _inspect(url: str, tmp_path: Path, probe: Any) -> Any:
    """Run `probe(sync_connection)` on the database at `url`."""

    async def run() -> Any:
        engine = build_engine(_settings(url, tmp_path), url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(probe)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _head(url: str) -> str:
    head = ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()
    assert head is not None
    return head


# The SQLite indexes on expressions, as the models declare them (see the drift test).
# SQLite's FTS5 keyword index over knowledge chunks: a virtual table and its shadow tables,
# made by the migration, not by a model.
SQLITE_FTS_TABLES = {
    "knowledge_chunks_fts",
    *(f"knowledge_chunks_fts_{part}" for part in ("config", "content", "data", "docsize", "idx")),
}
# PostgreSQL's keyword index over chunks: a generated column and its index, made by the migration
# and read by the knowledge repository only (no model maps them: SQLite has no tsvector); and, on
# a server with pgvector, the chunks' `embedding_vec` column (its HNSW indexes are partial, named
# `ix_knowledge_chunks_hnsw_*`, and made per embedding model: see parley.knowledge.vectors).
POSTGRESQL_ONLY_COLUMNS = {"search_vector", "embedding_vec"}
POSTGRESQL_ONLY_INDEXES = {
    "ix_knowledge_chunks_search_vector",
    "ix_knowledge_chunks_missing_vectors",  # with pgvector: chunks whose embedding_vec is empty
}
HNSW_INDEX_PREFIX = "ix_knowledge_chunks_hnsw_"

SQLITE_EXPRESSION_INDEXES = {
    "ix_jobs_due": (
        "CREATE INDEX ix_jobs_due ON jobs (queue, priority DESC, run_at) WHERE status = 'queued'"
    ),
}


def test_upgrade_downgrade_upgrade(fresh_database_url: str, tmp_path: Path) -> None:
    settings = _settings(fresh_database_url, tmp_path)
    model_tables = set(Base.metadata.tables)
    assert {"users", "api_keys", "refresh_tokens"} <= model_tables

    if fresh_database_url.startswith("sqlite"):
        model_tables |= SQLITE_FTS_TABLES
    migrate.upgrade(settings)
    assert _inspect(fresh_database_url, tmp_path, _tables) == model_tables | {"alembic_version"}
    assert _inspect(fresh_database_url, tmp_path, _revision) == _head(fresh_database_url)

    migrate.downgrade(settings, "base")
    assert _inspect(fresh_database_url, tmp_path, _tables) == {"alembic_version"}
    assert _inspect(fresh_database_url, tmp_path, _revision) is None

    migrate.upgrade(settings)
    assert _inspect(fresh_database_url, tmp_path, _tables) == model_tables | {"alembic_version"}
    assert migrate.current(settings).startswith(_head(fresh_database_url))


def test_each_revision_goes_down_and_up_one_step(fresh_database_url: str, tmp_path: Path) -> None:
    settings = _settings(fresh_database_url, tmp_path)
    script = ScriptDirectory.from_config(migrate.alembic_config(fresh_database_url))
    revisions = [revision.revision for revision in script.walk_revisions("base", "heads")]
    assert revisions, "no migrations found"
    migrate.upgrade(settings)
    for expected_after_step in revisions[1:]:
        migrate.downgrade(settings, "-1")
        assert _inspect(fresh_database_url, tmp_path, _revision) == expected_after_step
    migrate.downgrade(settings, "-1")
    assert _inspect(fresh_database_url, tmp_path, _revision) is None
    migrate.upgrade(settings)
    assert _inspect(fresh_database_url, tmp_path, _revision) == revisions[0]


def test_migrations_have_a_single_head(fresh_database_url: str) -> None:
    heads = ScriptDirectory.from_config(migrate.alembic_config(fresh_database_url)).get_heads()
    assert len(heads) == 1, f"several heads, merge them: {heads}"


def schema_differences(connection: Connection) -> list[Any]:
    """What autogenerate would write for the migrated database behind `connection` (nothing, when
    the models and the migrations agree); the objects only a migration makes left out."""
    sqlite = connection.dialect.name == "sqlite"

    def include(item: Any, name: str | None, kind: str, *_: Any) -> bool:
        # Alembic cannot reflect SQLite's indexes on expressions (`priority DESC`), so it
        # cannot compare them: they are checked by their SQL below instead.
        if kind == "table" and name in SQLITE_FTS_TABLES:
            return False
        if kind == "index" and (
            name in POSTGRESQL_ONLY_INDEXES or (name or "").startswith(HNSW_INDEX_PREFIX)
        ):
            return False
        if kind == "column" and name in POSTGRESQL_ONLY_COLUMNS:
            return False
        return not (sqlite and kind == "index" and name in SQLITE_EXPRESSION_INDEXES)

    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "render_as_batch": sqlite, "include_object": include},
    )
    found = list(compare_metadata(context, Base.metadata))
    if sqlite:
        for name, expected in SQLITE_EXPRESSION_INDEXES.items():
            sql = connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
            ).scalar_one()
            if " ".join(sql.split()) != expected:
                found.append(("index differs", name, sql))
    return found


def test_no_drift_between_migrations_and_models(fresh_database_url: str, tmp_path: Path) -> None:
    migrate.upgrade(_settings(fresh_database_url, tmp_path))
    diff = _inspect(fresh_database_url, tmp_path, schema_differences)
    assert diff == [], f"the models and the migrations disagree: {diff}"


def test_head_revision_constant_is_the_scripts_head(fresh_database_url: str) -> None:
    """`parley serve` skips Alembic when the database is at `HEAD_REVISION`: a new migration
    that does not move it would never be applied."""
    assert _head(fresh_database_url) == migrate.HEAD_REVISION


def test_is_current_only_at_head(fresh_database_url: str, tmp_path: Path) -> None:
    settings = _settings(fresh_database_url, tmp_path)
    assert not migrate.is_current(settings)  # no schema yet
    assert migrate.upgrade_if_needed(settings)
    assert migrate.is_current(settings)
    assert not migrate.upgrade_if_needed(settings)  # nothing to do: Alembic is not run
    migrate.downgrade(settings, "-1")
    assert not migrate.is_current(settings)
    assert migrate.upgrade_if_needed(settings)
    assert _inspect(fresh_database_url, tmp_path, _revision) == migrate.HEAD_REVISION
