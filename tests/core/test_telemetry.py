"""Tracing: the `traced` decorator (names, arguments, secrets, errors), the request span behind
`X-Trace-Id`, and OTLP/HTTP export to a collector when `OTEL_EXPORTER_OTLP_ENDPOINT` is set."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel, SecretStr

from parley.core.errors import InternalError, NotFound
from parley.core.telemetry import add_span_processor, traced
from parley.settings import Settings
from tests.fakes.otlp_collector import otlp_collector
from tests.fixtures.servers import clean_environment, parley_serve

JWT_LIKE = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
API_KEY_LIKE = "pk_live_abcdef0123456789"


@pytest.fixture(scope="module")
def exporter_for_module(settings: Settings) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    add_span_processor(settings, SimpleSpanProcessor(exporter))
    yield exporter
    exporter.clear()
    exporter.shutdown()  # the processor stays on the global provider; it now drops spans


@pytest.fixture
def spans(exporter_for_module: InMemorySpanExporter) -> InMemorySpanExporter:
    exporter_for_module.clear()
    return exporter_for_module


def only_span(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [span for span in exporter.get_finished_spans() if span.name == name]
    assert len(found) == 1, [span.name for span in exporter.get_finished_spans()]
    return found[0]


def all_attribute_values(span: ReadableSpan) -> list[str]:
    return [str(value) for value in (span.attributes or {}).values()]


# -- functions under trace ------------------------------------------------------------------


class Credentials(BaseModel):
    username: str
    password: str
    key: SecretStr


@traced
def add(left: int, right: int, *, label: str = "sum") -> int:
    return left + right


@traced(name="telemetry.login")
async def login(email: str, password: str, token: str, secret: str, api_key: str) -> str:
    return email


@traced(name="telemetry.opaque")
def opaque(header: str, bearer: str, key: SecretStr, form: Credentials) -> None:
    return None


@traced(name="telemetry.skip", skip_input=True)
async def skipped(email: str, note: str) -> str:
    return note


@traced(name="telemetry.fails")
async def fails(reason: str) -> None:
    raise RuntimeError(reason)


@traced(name="telemetry.fails_sync")
def fails_sync() -> None:
    raise ValueError("bad")


@traced(name="telemetry.not_found")
def refuses() -> None:
    raise NotFound()


@traced(name="telemetry.internal")
async def breaks() -> None:
    raise InternalError()


def test_sync_function_span_records_arguments(spans: InMemorySpanExporter) -> None:
    assert add(2, 3, label="five") == 5
    span = only_span(spans, "tests.core.test_telemetry.add")
    assert span.attributes is not None
    assert span.attributes["code.arg.left"] == 2
    assert span.attributes["code.arg.right"] == 3
    assert span.attributes["code.arg.label"] == "five"
    assert span.status.status_code is StatusCode.UNSET


async def test_async_function_span_redacts_secret_parameters(spans: InMemorySpanExporter) -> None:
    result = await login(
        "ada@example.com",
        password="hunter2-pass",
        token="tok-123",
        secret="s3cr3t-value",
        api_key="plain-api-key",
    )
    assert result == "ada@example.com"
    span = only_span(spans, "telemetry.login")
    assert span.attributes is not None
    assert span.attributes["code.arg.email"] == "ada@example.com"
    for name in ("password", "token", "secret", "api_key"):
        assert span.attributes[f"code.arg.{name}"] == "[redacted]"
    values = all_attribute_values(span)
    for secret in ("hunter2-pass", "tok-123", "s3cr3t-value", "plain-api-key"):
        assert all(secret not in value for value in values)


def test_secret_looking_values_are_never_recorded(spans: InMemorySpanExporter) -> None:
    form = Credentials(username="ada", password="model-password", key=SecretStr("model-key"))
    opaque(JWT_LIKE, API_KEY_LIKE, SecretStr("wrapped-secret"), form)
    span = only_span(spans, "telemetry.opaque")
    assert span.attributes is not None
    assert span.attributes["code.arg.header"] == "[redacted]"
    assert span.attributes["code.arg.bearer"] == "[redacted]"
    assert span.attributes["code.arg.key"] == "[redacted]"
    assert span.attributes["code.arg.form.username"] == "ada"
    values = all_attribute_values(span)
    for secret in (JWT_LIKE, API_KEY_LIKE, "wrapped-secret", "model-password", "model-key"):
        assert all(secret not in value for value in values)


async def test_skip_input_records_no_arguments(spans: InMemorySpanExporter) -> None:
    assert await skipped("ada@example.com", note="private") == "private"
    span = only_span(spans, "telemetry.skip")
    assert not [key for key in (span.attributes or {}) if key.startswith("code.arg")]


async def test_exception_is_recorded_and_reraised(spans: InMemorySpanExporter) -> None:
    with pytest.raises(RuntimeError, match="disk on fire"):
        await fails("disk on fire")
    span = only_span(spans, "telemetry.fails")
    assert span.status.status_code is StatusCode.ERROR
    events = [event for event in span.events if event.name == "exception"]
    assert len(events) == 1
    assert events[0].attributes is not None
    assert events[0].attributes["exception.type"] == "RuntimeError"


def test_sync_exception_is_recorded_and_reraised(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ValueError, match="bad"):
        fails_sync()
    span = only_span(spans, "telemetry.fails_sync")
    assert span.status.status_code is StatusCode.ERROR


def test_client_error_is_not_marked_as_an_error(spans: InMemorySpanExporter) -> None:
    with pytest.raises(NotFound):
        refuses()
    span = only_span(spans, "telemetry.not_found")
    assert span.status.status_code is StatusCode.UNSET
    assert not [event for event in span.events if event.name == "exception"]
    assert span.attributes is not None
    assert span.attributes["parley.error.code"] == "not_found"


async def test_server_side_parley_error_is_marked_as_an_error(
    spans: InMemorySpanExporter,
) -> None:
    with pytest.raises(InternalError):
        await breaks()
    assert only_span(spans, "telemetry.internal").status.status_code is StatusCode.ERROR


def test_traced_keeps_the_function_identity() -> None:
    assert add.__name__ == "add"
    assert login.__qualname__ == "login"


# -- the request span -----------------------------------------------------------------------


async def test_request_span_is_the_trace_in_x_trace_id(
    spans: InMemorySpanExporter, client: httpx.AsyncClient
) -> None:
    response = await client.get("/health/live")
    server_spans = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(server_spans) == 1
    span = server_spans[0]
    assert span.name == "GET /health/live"
    assert span.context is not None
    assert format(span.context.trace_id, "032x") == response.headers["x-trace-id"]
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/health/live"
    assert span.attributes["http.response.status_code"] == 200
    # One trace per request: no span of the request lives in a trace of its own.
    trace_ids = {
        format(s.context.trace_id, "032x") for s in spans.get_finished_spans() if s.context
    }
    assert trace_ids == {response.headers["x-trace-id"]}


async def test_route_spans_join_the_request_trace(
    spans: InMemorySpanExporter, client: httpx.AsyncClient
) -> None:
    parent_trace = uuid.uuid4().hex
    parent_span = uuid.uuid4().hex[:16]
    response = await client.post(
        "/api/auth/login",
        json={"email": "nobody@example.com", "password": "wrong password"},
        headers={"traceparent": f"00-{parent_trace}-{parent_span}-01"},
    )
    assert response.status_code == 401
    assert response.headers["x-trace-id"] == parent_trace
    server = only_span(spans, "POST /api/auth/login")
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == parent_span
    login_span = only_span(spans, "accounts.login")
    assert login_span.context is not None
    assert format(login_span.context.trace_id, "032x") == parent_trace
    assert "wrong password" not in all_attribute_values(login_span)


# -- OTLP export ----------------------------------------------------------------------------


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    with otlp_collector() as endpoint_and_received:
        yield endpoint_and_received


def test_spans_are_exported_over_otlp_http(
    collector: tuple[str, list[tuple[str, str, bytes]]], tmp_path: Path
) -> None:
    endpoint, received = collector
    trace_id = uuid.uuid4().hex
    env = clean_environment(
        PARLEY_DATA_DIR=str(tmp_path / "data"),
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_SERVICE_NAME="parley-otlp-test",
    )
    with parley_serve(tmp_path, env) as server:
        response = httpx.get(
            f"{server.url}/health/live",
            headers={"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"},
            timeout=10,
        )
        assert response.headers["x-trace-id"] == trace_id
    # Stopping the server flushes the batch exporter.
    traces = [(ctype, body) for path, ctype, body in received if path == "/v1/traces"]
    assert traces, f"no POST /v1/traces; got {[path for path, _, _ in received]}"
    assert all(ctype == "application/x-protobuf" for ctype, _ in traces)
    exported: dict[str, str] = {}
    for _, body in traces:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = {
                attribute.key: attribute.value.string_value
                for attribute in resource_spans.resource.attributes
            }["service.name"]
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    exported[span.trace_id.hex()] = f"{service}: {span.name}"
    assert exported.get(trace_id) == "parley-otlp-test: GET /health/live", exported


UNEXPORTED = """
from opentelemetry import trace
from parley.core.telemetry import add_span_processor, configure_tracing, get_tracer, traced
from parley.settings import Settings
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

settings = Settings(_env_file=None, jwt_secret="x" * 40)
configure_tracing(settings)

@traced
def inner():
    return trace.get_current_span()

with get_tracer().start_as_current_span("request") as outer:
    unexported = inner() is outer
exporter = InMemorySpanExporter()
add_span_processor(settings, SimpleSpanProcessor(exporter))
with get_tracer().start_as_current_span("request") as outer:
    exported = inner() is not outer
print(unexported, exported, [span.name for span in exporter.get_finished_spans()])
"""


def test_traced_makes_spans_only_while_they_are_exported() -> None:
    """With no exporter, a traced call runs inside its caller's span (the request's, which
    carries the trace id); once a processor is added it gets a span of its own."""
    result = subprocess.run(
        [sys.executable, "-c", UNEXPORTED],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=clean_environment(),
    )
    assert result.stdout.split(" ", 2)[:2] == ["True", "True"], result.stdout
    assert "'__main__.inner', 'request'" in result.stdout, result.stdout
