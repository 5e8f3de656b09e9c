"""Structured logs: JSON lines (or readable console lines) that carry the trace and request ids.

Uvicorn's and the libraries' loggers go through the same handler, so every line of a request can be
found by its trace id, in the logs and in the tracing backend alike.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from parley.settings import Settings

request_id_var: ContextVar[str | None] = ContextVar("parley_request_id", default=None)

# LogRecord attributes that are not extra fields given by the caller.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "trace_id", "span_id", "request_id", "taskName", "color_message"}
)


class ContextFilter(logging.Filter):
    """Adds `trace_id`, `span_id` and `request_id` from the current context to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else None
        record.span_id = format(context.span_id, "016x") if context.is_valid else None
        record.request_id = request_id_var.get()
        return True


class ListeningFilter(logging.Filter):
    """Turns uvicorn's start-up line ("Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to
    quit)", from the server or, with workers, from their supervisor) into Parley's own:
    "Parley listening on http://127.0.0.1:8000", with the URL as the `url` field."""

    _PREFIX = "Uvicorn running on "
    _SUFFIX = " (Press CTRL+C to quit)"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error" and str(record.msg).startswith(self._PREFIX):
            url = record.getMessage().removeprefix(self._PREFIX).removesuffix(self._SUFFIX)
            record.msg, record.args = "Parley listening on %s", (url,)
            record.url = url
            record.__dict__.pop("color_message", None)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("trace_id", "span_id", "request_id"):
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    """A readable line for development, with the trace id and the caller's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        time = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        extras = " ".join(
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
        )
        trace_id = getattr(record, "trace_id", None)
        line = f"{time} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line += f"  {extras}"
        if trace_id:
            line += f"  trace_id={trace_id}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


HTTP_CLIENT_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2")


def configure_logging(settings: Settings) -> None:
    """Send every logger's records through one handler in the configured format and level."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.addFilter(ListeningFilter())
    handler.setFormatter(
        JsonFormatter() if settings.effective_log_format == "json" else ConsoleFormatter()
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_parley", False):
            root.removeHandler(existing)
    handler._parley = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Parley logs each request itself, with its trace id; uvicorn's access line would repeat it.
    logging.getLogger("uvicorn.access").disabled = True
    # The HTTP clients log every provider call at INFO ("HTTP Request: POST <provider URL> 200"):
    # a second line per request, naming the provider's URL, that costs a formatted record on
    # every /v1 call and model step. Their warnings stay; LOG_LEVEL=DEBUG shows it all.
    chatty = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    for name in HTTP_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(chatty)
    # Alembic says at INFO how it sets itself up and each migration it runs: `parley serve` logs
    # the migrations it applied in a line each of its own.
    logging.getLogger("alembic").setLevel(chatty)
