"""OpenTelemetry for Parley: the tracer provider, the current trace id, and the `traced` decorator.

A process has one tracer provider (OpenTelemetry allows one global). Spans are exported over
OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; otherwise each request's server span is still
created, so every response carries a real trace id. `traced` wraps sync and async functions in a
span that records their arguments (secrets redacted) and their errors, while spans are exported.
"""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any, ParamSpec, TypeVar, overload

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Span, Status, StatusCode
from pydantic import BaseModel, SecretStr

from parley.core.errors import ParleyError
from parley.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")

TRACER_NAME = "parley"
_SECRET_MARKERS = ("password", "secret", "token", "api_key", "apikey", "authorization", "cookie")
_SECRET_VALUE_PREFIXES = ("pk_", "eyJ")
_MAX_ATTRIBUTE_CHARS = 256
_REDACTED = "[redacted]"

_provider: TracerProvider | None = None
# Whether spans go anywhere (an exporter or a processor was added). Until then `traced` makes no
# spans of its own: the request's server span alone carries the trace id, and a span per call
# that nobody receives is CPU spent for nothing (bench/findings.md).
_exporting = False


def configure_tracing(settings: Settings) -> TracerProvider:
    """Install the process's tracer provider once; later calls return the same provider.

    Args:
        settings: `OTEL_SERVICE_NAME` names the service; `OTEL_EXPORTER_OTLP_ENDPOINT`, when set,
            adds a batching OTLP/HTTP exporter sending to `<endpoint>/v1/traces`.
    """
    global _provider, _exporting
    if _provider is None:
        provider = TracerProvider(
            resource=Resource.create({"service.name": settings.otel_service_name})
        )
        if settings.otel_exporter_otlp_endpoint:
            # Imported only when configured (an optional integration; see `parley.engines`).
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
            _exporting = True
        trace.set_tracer_provider(provider)
        _provider = provider
    return _provider


def add_span_processor(settings: Settings, processor: SpanProcessor) -> None:
    """Send the process's spans to `processor` too (tests, or another exporter); from then on
    `traced` functions make spans."""
    global _exporting
    configure_tracing(settings).add_span_processor(processor)
    _exporting = True


def exporting() -> bool:
    """Whether spans go anywhere (see `_exporting`)."""
    return _exporting


_ids = RandomIdGenerator()


def server_span(name: str, carrier: dict[str, str], attributes: dict[str, str]) -> trace.Span:
    """A request's server span, not yet current: in the trace the request's `traceparent` names
    (else a new one). While no span is exported it is a non-recording span that only carries the
    ids, which costs a tenth of a recorded one that nobody receives."""
    context = propagate.extract(carrier)
    if _exporting:
        return get_tracer().start_span(
            name,
            context=context,
            kind=trace.SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
    parent = trace.get_current_span(context).get_span_context()
    trace_id = parent.trace_id if parent.is_valid else _ids.generate_trace_id()
    return trace.NonRecordingSpan(
        trace.SpanContext(trace_id, _ids.generate_span_id(), is_remote=False)
    )


@functools.cache
def get_tracer() -> trace.Tracer:
    """Parley's tracer (made once: OpenTelemetry builds a new one on every `get_tracer` call, and
    the one made before a provider is installed is a proxy that follows it)."""
    return trace.get_tracer(TRACER_NAME)


def format_trace_id(trace_id: int) -> str:
    """A trace id as 32 lowercase hex digits."""
    return format(trace_id, "032x")


def current_trace_id() -> str:
    """The current span's trace id, or 32 zeros outside any span."""
    return format_trace_id(trace.get_current_span().get_span_context().trace_id)


def _looks_secret(name: str) -> bool:
    lowered = name.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def _attribute_value(value: Any) -> str | int | float | bool:
    if isinstance(value, SecretStr):
        return _REDACTED
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        if value.startswith(_SECRET_VALUE_PREFIXES):
            return _REDACTED
        return value[:_MAX_ATTRIBUTE_CHARS]
    if isinstance(value, uuid.UUID | datetime):
        return str(value)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, BaseModel):
        return type(value).__name__
    return type(value).__name__


def record_arguments(
    span: Span, signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Put a call's arguments on `span` as `code.arg.<name>`, never a secret's value.

    Pydantic models are expanded one level, with their secret-looking fields redacted too.
    """
    try:
        bound = signature.bind_partial(*args, **kwargs)
    except TypeError:
        return
    for name, value in bound.arguments.items():
        if name in ("self", "cls"):
            continue
        key = f"code.arg.{name}"
        if _looks_secret(name):
            span.set_attribute(key, _REDACTED)
        elif isinstance(value, BaseModel):
            for field, field_value in value:
                field_key = f"{key}.{field}"
                redact = _looks_secret(field) or isinstance(field_value, SecretStr)
                span.set_attribute(
                    field_key, _REDACTED if redact else _attribute_value(field_value)
                )
        else:
            span.set_attribute(key, _attribute_value(value))


def _record_error(span: Span, exc: BaseException) -> None:
    if isinstance(exc, ParleyError) and exc.status_code < 500:
        # An expected refusal (not found, invalid input): worth seeing, not an error of ours.
        span.set_attribute("parley.error.code", exc.code)
        return
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


@overload
def traced(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def traced(
    *, name: str | None = None, skip_input: bool = False
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def traced(
    func: Callable[P, R] | None = None, /, *, name: str | None = None, skip_input: bool = False
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Run a function, sync or async, inside a span named after it.

    Only while spans are exported (`OTEL_EXPORTER_OTLP_ENDPOINT`, or `add_span_processor`);
    otherwise the call runs as it is. The span's own start and end time the call; its attributes
    carry the arguments (unless
    `skip_input=True`; parameters whose names look secret are always redacted), and an exception
    is recorded on it before it propagates.

    Usage: `@traced` or `@traced(name="auth.login", skip_input=True)`.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        span_name = name or f"{fn.__module__.removeprefix('parley.')}.{fn.__qualname__}"
        signature = inspect.signature(fn)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                if not _exporting:
                    return await fn(*args, **kwargs)
                with get_tracer().start_as_current_span(
                    span_name, record_exception=False, set_status_on_exception=False
                ) as span:
                    if not skip_input:
                        record_arguments(span, signature, args, kwargs)
                    try:
                        return await fn(*args, **kwargs)
                    except BaseException as exc:
                        _record_error(span, exc)
                        raise

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if not _exporting:
                return fn(*args, **kwargs)
            with get_tracer().start_as_current_span(
                span_name, record_exception=False, set_status_on_exception=False
            ) as span:
                if not skip_input:
                    record_arguments(span, signature, args, kwargs)
                try:
                    return fn(*args, **kwargs)
                except BaseException as exc:
                    _record_error(span, exc)
                    raise

        return sync_wrapper

    if func is not None:
        return decorate(func)
    return decorate
