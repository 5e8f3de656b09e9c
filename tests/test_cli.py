"""The `parley` command (CONTRACT.md section 8): version, migrate, user create, and an end-to-end
`python -m parley serve` that creates its SQLite database, migrates it and serves the API."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import time
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from parley import __version__, migrate
from parley.cli import cli
from tests.fixtures.apps import running_app
from tests.fixtures.servers import clean_environment, parley_serve
from tests.fixtures.settings import make_settings

PASSWORD = "a fine long password"


@pytest.fixture
def runner(fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner whose environment points Parley at a fresh database and a temporary data dir."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    # Unset every Parley and OpenTelemetry variable the outer environment may carry.
    env: dict[str, str | None] = dict.fromkeys(set(os.environ) - set(clean_environment()))
    env.update(
        DATABASE_URL=fresh_database_url,
        PARLEY_DATA_DIR=str(tmp_path / "data"),
        LOG_LEVEL="WARNING",
    )
    return CliRunner(env=env)


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line reason, got: {stderr!r}"
    assert lines[0].startswith("error: ")
    assert "Traceback" not in stderr
    return lines[0]


def _head(url: str) -> str:
    head = ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()
    assert head is not None
    return head


def _revisions(url: str) -> list[tuple[str, str]]:
    """Every migration's revision and message, oldest first."""
    scripts = ScriptDirectory.from_config(migrate.alembic_config(url)).walk_revisions()
    return [(script.revision, script.doc) for script in reversed(list(scripts))]


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == __version__


def test_no_arguments_shows_help(runner: CliRunner) -> None:
    result = runner.invoke(cli, [])
    assert result.exit_code != 0
    assert "serve" in result.output
    assert "migrate" in result.output


def test_migrate_upgrade_current_downgrade(runner: CliRunner, fresh_database_url: str) -> None:
    head = _head(fresh_database_url)

    empty = runner.invoke(cli, ["migrate", "current"])
    assert empty.exit_code == 0, empty.output
    assert "no revision" in empty.stdout

    revisions = _revisions(fresh_database_url)
    assert len(revisions) > 1
    upgraded = runner.invoke(cli, ["migrate", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    # Each migration applied, with its message, then where the database now is.
    assert upgraded.stdout.splitlines() == [
        *(f"applied {revision}: {message}" for revision, message in revisions),
        f"database at {head} (head)",
    ]
    again = runner.invoke(cli, ["migrate", "upgrade"])
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines() == [f"already at {head} (head): nothing to apply"]

    current = runner.invoke(cli, ["migrate", "current"])
    assert current.exit_code == 0, current.output
    assert current.stdout.strip().startswith(head)
    assert "(head)" in current.stdout

    one_back = runner.invoke(cli, ["migrate", "downgrade", "-1"])
    assert one_back.exit_code == 0, one_back.output
    previous, last = revisions[-2], revisions[-1]
    assert one_back.stdout.splitlines() == [
        f"reverted {last[0]}: {last[1]}",
        f"database at {previous[0]}",
    ]
    downgraded = runner.invoke(cli, ["migrate", "downgrade", "base"])
    assert downgraded.exit_code == 0, downgraded.output
    assert downgraded.stdout.splitlines() == [
        *(f"reverted {revision}: {message}" for revision, message in reversed(revisions[:-1])),
        "database at base (no revision: the database is empty)",
    ]
    assert "no revision" in runner.invoke(cli, ["migrate", "current"]).stdout

    default_action = runner.invoke(cli, ["migrate"])
    assert default_action.exit_code == 0, default_action.output
    assert runner.invoke(cli, ["migrate", "current"]).stdout.strip().startswith(head)


def test_migrate_refuses_an_unknown_action(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["migrate", "bogus"])
    assert result.exit_code != 0
    assert "bogus" in one_line_error(result.stderr)


def test_migrate_downgrade_needs_a_revision(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["migrate", "downgrade"])
    assert result.exit_code == 1
    assert "revision" in one_line_error(result.stderr)


def test_migrate_refuses_an_unknown_revision(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["migrate", "upgrade", "nosuchrevision"])
    assert result.exit_code == 1
    assert "nosuchrevision" in one_line_error(result.stderr)


def test_production_without_a_secret_refuses_in_one_line(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["migrate", "current"], env={"ENVIRONMENT": "production"})
    assert result.exit_code == 1
    assert "JWT_SECRET" in one_line_error(result.stderr)


async def _login(database_url: str, data_dir: Path, email: str, password: str) -> httpx.Response:
    async with running_app(make_settings(database_url, data_dir)) as (_, http):
        return await http.post("/api/auth/login", json={"email": email, "password": password})


def test_user_create_admin_can_log_in(
    runner: CliRunner, fresh_database_url: str, tmp_path: Path
) -> None:
    result = runner.invoke(
        cli, ["user", "create", "--email", "Root@Example.com", "--password", PASSWORD, "--admin"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("created admin root@example.com (")

    response = asyncio.run(_login(fresh_database_url, tmp_path, "root@example.com", PASSWORD))
    assert response.status_code == 200, response.text
    user = response.json()["data"]["user"]
    assert user["is_admin"] is True
    assert user["email"] == "root@example.com"

    wrong = asyncio.run(_login(fresh_database_url, tmp_path, "root@example.com", "wrong pass"))
    assert wrong.status_code == 401


def test_user_create_asks_for_the_password(
    runner: CliRunner, fresh_database_url: str, tmp_path: Path
) -> None:
    result = runner.invoke(
        cli, ["user", "create", "--email", "asked@example.com"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert "created user asked@example.com" in result.stdout
    assert PASSWORD not in result.output  # hidden input is not echoed
    response = asyncio.run(_login(fresh_database_url, tmp_path, "asked@example.com", PASSWORD))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["user"]["is_admin"] is False


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["--email", "not-an-email", "--password", PASSWORD], "invalid email"),
        (["--email", "short@example.com", "--password", "short"], "8 to 128"),
    ],
)
def test_user_create_refuses_bad_input(
    runner: CliRunner, arguments: list[str], reason: str
) -> None:
    result = runner.invoke(cli, ["user", "create", *arguments])
    assert result.exit_code == 1
    assert reason in one_line_error(result.stderr)


def test_user_create_refuses_a_duplicate(runner: CliRunner) -> None:
    arguments = ["user", "create", "--email", "twice@example.com", "--password", PASSWORD]
    assert runner.invoke(cli, arguments).exit_code == 0
    again = runner.invoke(cli, [*arguments[:3], "TWICE@example.com", *arguments[4:]])
    assert again.exit_code == 1
    assert "already exists" in one_line_error(again.stderr)


def test_serve_creates_migrates_and_serves(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = clean_environment(PARLEY_DATA_DIR=str(data_dir), LOG_LEVEL="WARNING")
    with parley_serve(tmp_path, env) as server:
        docs = httpx.get(f"{server.url}/docs", timeout=10)
        schema = httpx.get(f"{server.url}/openapi.json", timeout=10)
        ready = httpx.get(f"{server.url}/health/ready", timeout=10)
        registered = httpx.post(
            f"{server.url}/api/auth/register",
            json={"email": "smoke@example.com", "password": PASSWORD},
            timeout=30,
        )
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "swagger" in docs.text.lower()
    assert schema.status_code == 200
    assert "/api/auth/register" in schema.json()["paths"]
    assert ready.json()["checks"]["database"] == "ok"
    assert registered.status_code == 201, registered.text
    assert (data_dir / "parley.db").is_file()
    assert (data_dir / "jwt_secret").is_file()


@pytest.mark.parametrize(
    ("log_format", "arguments"),
    # --reload: the URL is logged by the supervisor process, as with --workers.
    [("console", []), ("json", ["--reload"])],
)
def test_serve_logs_the_url_it_listens_on(
    tmp_path: Path, log_format: str, arguments: list[str]
) -> None:
    env = clean_environment(
        PARLEY_DATA_DIR=str(tmp_path / "data"), LOG_LEVEL="INFO", LOG_FORMAT=log_format
    )
    with parley_serve(tmp_path, env, *arguments) as server:
        output = server.output()
    assert "event loop uvloop, HTTP parser httptools" in output
    line = f"Parley listening on {server.url}"
    assert "Uvicorn running on" not in output  # one line says it, Parley's
    if log_format == "console":
        [listening] = [text for text in output.splitlines() if line in text]
        assert " INFO " in listening
        return
    entries = [json.loads(text) for text in output.splitlines() if text.startswith("{")]
    assert entries, output
    [listening] = [entry for entry in entries if entry["message"].startswith("Parley listening")]
    assert listening["message"] == line
    assert listening["url"] == server.url
    assert listening["level"] == "info"
    # The supervisor's own lines are Parley's JSON too (one line each).
    assert all(text.startswith("{") for text in output.splitlines() if text.strip()), output


def test_serve_refuses_bad_configuration_in_one_line(tmp_path: Path, runner: CliRunner) -> None:
    result = runner.invoke(cli, ["serve", "--port", "1"], env={"ENVIRONMENT": "production"})
    assert result.exit_code == 1
    assert "JWT_SECRET" in one_line_error(result.stderr)


def _idle_connection_survives(url: str, idle_seconds: float) -> bool:
    """Send a request, keep the connection idle, then send another on the same connection."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", "/health/live")
        first = connection.getresponse()
        first.read()
        assert first.status == 200
        assert not first.will_close
        sock = connection.sock
        time.sleep(idle_seconds)
        try:
            connection.request("GET", "/health/live")
            second = connection.getresponse()
            second.read()
        except (http.client.RemoteDisconnected, ConnectionError):  # the server closed it
            return False
        assert connection.sock is sock  # the same connection, not a new one
        return second.status == 200
    finally:
        connection.close()


def test_serve_keeps_idle_connections_for_http_keep_alive_seconds(tmp_path: Path) -> None:
    """uvicorn's 5 s default equals httpx's own idle expiry: a client reusing a connection just
    as the server drops it gets a reset (the benchmark saw one in 2,000 streams)."""
    env = clean_environment(PARLEY_DATA_DIR=str(tmp_path / "data"), LOG_LEVEL="WARNING")
    with parley_serve(tmp_path, env) as server:
        # The default (75 s) outlives uvicorn's own 5 s.
        assert _idle_connection_survives(server.url, 5.5)
    short = {**env, "HTTP_KEEP_ALIVE_SECONDS": "1"}
    with parley_serve(tmp_path, short) as server:
        assert not _idle_connection_survives(server.url, 2.5)


PROXY = "127.0.0.2"  # the test's client connects from here, as a reverse proxy would


def _login_statuses(url: str, forwarded_for: list[str]) -> list[int]:
    """Failed sign-ins (each with another email) sent from `PROXY`, each claiming to be for the
    client `X-Forwarded-For` names; under a limit of one a minute per client address."""
    transport = httpx.HTTPTransport(local_address=PROXY)
    with httpx.Client(transport=transport, base_url=url, timeout=30) as http:
        return [
            http.post(
                "/api/auth/login",
                json={"email": f"nobody-{index}@example.com", "password": "not the password"},
                headers={"X-Forwarded-For": client},
            ).status_code
            for index, client in enumerate(forwarded_for)
        ]


@pytest.mark.parametrize(
    ("arguments", "environment", "forwarded_is_used"),
    [
        pytest.param([], {}, False, id="default: only loopback's 127.0.0.1 is trusted"),
        pytest.param(["--forwarded-allow-ips", PROXY], {}, True, id="flag"),
        pytest.param([], {"FORWARDED_ALLOW_IPS": f"10.9.9.9, {PROXY}"}, True, id="environment"),
        pytest.param(
            ["--forwarded-allow-ips", PROXY, "--no-proxy-headers"], {}, False, id="no-proxy-headers"
        ),
    ],
)
def test_serve_trusts_forwarded_headers_only_from_the_allowed_proxies(
    tmp_path: Path, arguments: list[str], environment: dict[str, str], forwarded_is_used: bool
) -> None:
    """Sign-in limits are per client address: behind a proxy it is the real client's only when
    the proxy is trusted; otherwise every client shares the proxy's address and its limit."""
    env = clean_environment(
        PARLEY_DATA_DIR=str(tmp_path / "data"),
        LOG_LEVEL="WARNING",
        RATE_LIMIT_LOGIN_PER_MINUTE="1",
        **environment,
    )
    with parley_serve(tmp_path, env, *arguments) as server:
        statuses = _login_statuses(server.url, ["203.0.113.1", "203.0.113.2", "203.0.113.1"])
    if forwarded_is_used:
        # Two clients, a limit each: the third attempt is the first client's second.
        assert statuses == [401, 401, 429]
    else:
        # Every attempt is the proxy's.
        assert statuses == [401, 429, 429]
