"""Logs: JSON lines (or readable console lines) that carry the trace id and request id of the
request they belong to, through the handler `configure_logging` installs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from parley.core.logging import configure_logging
from parley.settings import Settings
from tests.fixtures.apps import running_app
from tests.fixtures.settings import make_settings


def parley_handler() -> logging.StreamHandler[Any]:
    handlers = [h for h in logging.getLogger().handlers if getattr(h, "_parley", False)]
    assert len(handlers) == 1, "configure_logging must install exactly one handler"
    handler = handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    return handler


@pytest.fixture
def restore_logging(settings: Settings) -> Iterator[None]:
    """Tests here reconfigure the process's logging; put the session's configuration back."""
    yield
    configure_logging(settings)


def json_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


@pytest.mark.usefixtures("restore_logging")
async def test_json_lines_carry_trace_and_request_ids(database_url: str, tmp_path: Path) -> None:
    buffer = io.StringIO()
    json_settings = make_settings(database_url, tmp_path, log_format="json", log_level="info")
    route_logger = logging.getLogger("parley.test.route")

    async def noisy() -> dict[str, bool]:
        route_logger.warning("inside the route", extra={"widget_count": 3})
        return {"ok": True}

    async with running_app(json_settings) as (application, http):
        application.add_api_route("/api/test-noisy", noisy, methods=["GET"])
        parley_handler().setStream(buffer)
        response = await http.get("/api/test-noisy", headers={"X-Request-Id": "req-json-1"})
        logging.getLogger("parley.test.outside").warning("outside any request")

    assert response.status_code == 200
    trace_id = response.headers["x-trace-id"]
    entries = json_lines(buffer)  # every line is one JSON object, or this fails

    route_entry = next(e for e in entries if e["message"] == "inside the route")
    assert route_entry["trace_id"] == trace_id
    assert route_entry["request_id"] == "req-json-1"
    assert route_entry["level"] == "warning"
    assert route_entry["logger"] == "parley.test.route"
    assert route_entry["widget_count"] == 3
    assert len(route_entry["span_id"]) == 16

    access = next(e for e in entries if e["logger"] == "parley.request")
    assert access["message"] == "GET /api/test-noisy 200"
    assert access["status"] == 200
    assert isinstance(access["duration_ms"], int | float)
    assert access["trace_id"] == trace_id
    assert access["request_id"] == "req-json-1"
    assert access["time"].endswith("+00:00")

    outside = next(e for e in entries if e["message"] == "outside any request")
    assert "trace_id" not in outside
    assert "request_id" not in outside


@pytest.mark.usefixtures("restore_logging")
async def test_json_log_of_an_unhandled_error_has_the_traceback(
    database_url: str, tmp_path: Path
) -> None:
    buffer = io.StringIO()
    json_settings = make_settings(database_url, tmp_path, log_format="json")

    async def explode() -> None:
        raise LookupError("the details operators need")

    async with running_app(json_settings) as (application, http):
        application.add_api_route("/api/test-explode", explode, methods=["GET"])
        parley_handler().setStream(buffer)
        response = await http.get("/api/test-explode")

    assert response.status_code == 500
    entry = next(e for e in json_lines(buffer) if e["message"] == "unhandled error")
    assert entry["level"] == "error"
    assert entry["trace_id"] == response.headers["x-trace-id"]
    assert "LookupError: the details operators need" in entry["exception"]


@pytest.mark.usefixtures("restore_logging")
async def test_console_lines_are_readable(database_url: str, tmp_path: Path) -> None:
    buffer = io.StringIO()
    console_settings = make_settings(database_url, tmp_path, log_format="console", log_level="INFO")
    async with running_app(console_settings) as (_, http):
        parley_handler().setStream(buffer)
        response = await http.get("/health/live")

    trace_id = response.headers["x-trace-id"]
    lines = [line for line in buffer.getvalue().splitlines() if "parley.request" in line]
    assert len(lines) == 1
    line = lines[0]
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
    assert " INFO " in line
    assert "parley.request: GET /health/live 200" in line
    assert "status=200" in line
    assert line.endswith(f"trace_id={trace_id}")


def test_log_format_defaults_follow_the_environment(database_url: str, tmp_path: Path) -> None:
    development = make_settings(database_url, tmp_path)
    production = make_settings(database_url, tmp_path, environment="production")
    assert development.effective_log_format == "console"
    assert production.effective_log_format == "json"
    forced = make_settings(database_url, tmp_path, environment="production", log_format="console")
    assert forced.effective_log_format == "console"


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_keeps_one_handler_and_sets_the_level(
    database_url: str, tmp_path: Path
) -> None:
    configure_logging(make_settings(database_url, tmp_path, log_level="debug"))
    configure_logging(make_settings(database_url, tmp_path, log_level="error"))
    parley_handler()  # still exactly one
    assert logging.getLogger().level == logging.ERROR
    # uvicorn's access line would repeat Parley's own request line.
    assert logging.getLogger("uvicorn.access").disabled


@pytest.mark.usefixtures("restore_logging")
def test_provider_calls_are_logged_only_at_debug(database_url: str, tmp_path: Path) -> None:
    """The HTTP clients' INFO line per provider call (with the provider's URL) is left out,
    their warnings kept; LOG_LEVEL=DEBUG shows everything."""
    configure_logging(make_settings(database_url, tmp_path, log_level="info"))
    client_log = logging.getLogger("httpx2")
    assert not client_log.isEnabledFor(logging.INFO)
    assert client_log.isEnabledFor(logging.WARNING)
    assert logging.getLogger("parley.request").isEnabledFor(logging.INFO)
    configure_logging(make_settings(database_url, tmp_path, log_level="debug"))
    assert client_log.isEnabledFor(logging.DEBUG)
