"""The `parley` command: serve, worker, consumers, migrate, user, version.

Each subcommand exits non-zero with a one-line reason on bad input or bad configuration.
"""

from __future__ import annotations

import asyncio
import os
from typing import Annotated, Literal

import typer
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from parley import __version__

cli = typer.Typer(
    name="parley",
    help="Parley: a self-hostable backend for AI assistants.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
user_cli = typer.Typer(help="Manage users.", no_args_is_help=True)
cli.add_typer(user_cli, name="user")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def _settings() -> "Settings":  # noqa: UP037 - imported lazily to keep `parley version` fast
    from parley.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first.get("loc", ())) or "settings"
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise _fail(f"invalid configuration ({location}): {message}") from exc


def _require_migrated(settings: "Settings") -> None:  # noqa: UP037 - as in `_settings`
    """Exit unless the database is reachable and migrated to this version (a process that
    runs jobs or consumers must not start on an older schema)."""
    from parley import migrate as migrations

    try:
        current = migrations.is_current(settings)
    except (SQLAlchemyError, OSError) as exc:
        raise _fail(f"cannot reach the database: {exc.__class__.__name__}: {exc}") from exc
    if not current:
        raise _fail("the database is not migrated to this version: run `parley migrate` first")


if False:  # pragma: no cover - for type checkers only
    from parley.migrate import MigrationStep
    from parley.settings import Settings


@cli.command()
def version() -> None:
    """Print Parley's version."""
    typer.echo(__version__)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
    migrate: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Apply pending migrations first.")
    ] = True,
    proxy_headers: Annotated[
        bool,
        typer.Option(
            "--proxy-headers/--no-proxy-headers",
            help="Take the client's address and scheme from X-Forwarded-For and "
            "X-Forwarded-Proto when a trusted proxy (--forwarded-allow-ips) sends them.",
        ),
    ] = True,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated addresses or networks of the proxies to trust with forwarded "
            "headers; '*' trusts any, which lets clients of a directly reachable server forge "
            "their address.",
            show_default="FORWARDED_ALLOW_IPS, else 127.0.0.1,::1",
        ),
    ] = None,
) -> None:
    """Run the API server (applies pending migrations first unless --no-migrate)."""
    import importlib.util
    import logging

    import uvicorn

    from parley import migrate as migrations
    from parley.core.logging import configure_logging

    settings = _settings()
    if reload and workers > 1:
        raise _fail("--reload and --workers > 1 cannot be combined")
    # This process's lines (migrations; with workers or reload, the supervisor's, among them the
    # URL it listens on) in Parley's format too, not only the app's.
    configure_logging(settings)
    if migrate:
        try:
            applied = migrations.upgrade_if_needed(settings)
        except (SQLAlchemyError, OSError) as exc:
            raise _fail(f"cannot migrate the database: {exc.__class__.__name__}: {exc}") from exc
        for step in applied:
            logging.getLogger("parley.migrate").info(
                "applied migration %s: %s", step.revision, step.message
            )
    # The workers build their app from the environment: this tells them where they listen (the
    # MCP Host and Origin checks default to loopback names only when that is loopback).
    os.environ["PARLEY_SERVE_HOST"] = host
    # uvloop's event loop and httptools' parser (uvicorn[standard] installs both where they
    # build): several times cheaper per request than asyncio's loop and h11.
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    logging.getLogger("parley.serve").info("event loop %s, HTTP parser %s", loop, http)
    uvicorn.run(
        "parley.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        access_log=False,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=(
            settings.forwarded_allow_ips if forwarded_allow_ips is None else forwarded_allow_ips
        ),
        timeout_keep_alive=settings.http_keep_alive_seconds,
        log_config=None,
        loop=loop,
        http=http,
    )


@cli.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, max=256, help="Jobs run at once.", show_default="WORKER_CONCURRENCY, else 4"
        ),
    ] = None,
    queue: Annotated[
        list[str] | None,
        typer.Option(help="A queue to take jobs from (repeat for more; default: every queue)."),
    ] = None,
) -> None:
    """Run background jobs without the API server (SIGTERM: finish or put back, then exit)."""
    from parley.background import run_worker
    from parley.core.logging import configure_logging
    from parley.jobs.kinds import check_queue

    settings = _settings()
    configure_logging(settings)
    try:
        queues = [check_queue(name) for name in queue or ()]
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    _require_migrated(settings)
    run_worker(settings, concurrency=concurrency, queues=queues or None)


@cli.command()
def consumers() -> None:
    """Run only the event consumers on EVENTS_BROKER (no jobs, no relay) until SIGTERM."""
    from parley.core.logging import configure_logging
    from parley.events.brokers import run_consumers

    settings = _settings()
    if settings.events_broker in ("none", "dapr"):
        typer.echo(
            f"error: EVENTS_BROKER is {settings.events_broker}: consumers run in `parley worker` "
            "(none) or are called by the sidecar (dapr); `parley consumers` needs a broker URL",
            err=True,
        )
        raise typer.Exit(code=2)
    configure_logging(settings)
    _require_migrated(settings)
    run_consumers(settings)


# `downgrade -1` (one back) is a revision, not an unknown option.
@cli.command(context_settings={"ignore_unknown_options": True})
def migrate(
    action: Annotated[str, typer.Argument(help="upgrade, downgrade or current.")] = "upgrade",
    revision: Annotated[
        str | None,
        typer.Argument(help="Target revision (upgrade: default head; downgrade: required)."),
    ] = None,
) -> None:
    """Apply, revert or show database migrations."""
    from alembic.util.exc import CommandError

    from parley import migrate as migrations

    if action not in ("upgrade", "downgrade", "current"):
        raise _fail(f"unknown action {action!r}: use upgrade, downgrade or current")
    settings = _settings()
    try:
        if action == "upgrade":
            applied = migrations.upgrade(settings, revision or "head")
            _report_steps(settings, "applied", applied, nothing="nothing to apply")
        elif action == "downgrade":
            if not revision:
                raise _fail("downgrade needs a revision (for example -1 or base)")
            reverted = migrations.downgrade(settings, revision)
            _report_steps(settings, "reverted", reverted, nothing="nothing to revert")
        else:
            typer.echo(migrations.current(settings))
    except CommandError as exc:
        raise _fail(str(exc)) from exc
    except (SQLAlchemyError, OSError) as exc:
        raise _fail(f"database error: {exc.__class__.__name__}: {exc}") from exc


def _report_steps(
    settings: Settings, verb: str, steps: list[MigrationStep], *, nothing: str
) -> None:
    """Say each migration run, with its message, and where the database is now."""
    from parley import migrate as migrations

    for step in steps:
        typer.echo(f"{verb} {step.revision}: {step.message}")
    position = migrations.current(settings)
    if position == migrations.EMPTY_DATABASE:
        position = f"base {position}"
    typer.echo(f"database at {position}" if steps else f"already at {position}: {nothing}")


@user_cli.command("create")
def create_user(
    email: Annotated[str, typer.Option(help="The new user's email.")],
    password: Annotated[
        str | None, typer.Option(help="The password (asked for when omitted).")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an admin.")] = False,
    display_name: Annotated[str | None, typer.Option(help="Display name.")] = None,
) -> None:
    """Create a user (an admin with --admin). Applies pending migrations first."""
    from parley import migrate as migrations
    from parley.accounts.admin_commands import create_user as create
    from parley.core.errors import ParleyError

    settings = _settings()
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        migrations.upgrade(settings)
        user = asyncio.run(
            create(settings, email=email, password=password, admin=admin, display_name=display_name)
        )
    except ParleyError as exc:
        detail = exc.details[0]["message"] if exc.details else exc.message
        raise _fail(detail) from exc
    except (SQLAlchemyError, OSError) as exc:
        raise _fail(f"database error: {exc.__class__.__name__}: {exc}") from exc
    role: Literal["admin", "user"] = "admin" if user.is_admin else "user"
    typer.echo(f"created {role} {user.email} ({user.id})")


def main() -> None:
    """Entry point of the `parley` console script."""
    cli()
