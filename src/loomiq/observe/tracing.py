"""OpenTelemetry traces following the GenAI semantic conventions, on only when an exporter is configured.

`tracing()` sets the tracer up once per process: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set, spans go to that OTLP/HTTP endpoint through a batching processor
(``OTEL_SERVICE_NAME`` names the service, default ``loomiq``); otherwise nothing is imported and `span` hands
back one shared no-op context manager, so an instrumented hot path pays a global read and a call.

Spans (``docs/operations.md`` lists their attributes):

- ``run_task {strategy}``: a durable task on the worker that runs it, a child of the span that submitted
  it (the API request or the library call): the submitter's trace context travels in the task record
  (`trace_carrier` at submission, `context` from it on the worker);
- ``invoke_workflow {name}``: a workflow run;
- ``invoke_agent {agent}``: one agent answering one step (failovers are siblings);
- ``chat {model}``: one model call (each retry its own);
- ``execute_tool {tool}``: one tool call.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any, Literal

SpanKind = Literal["internal", "client", "server", "producer", "consumer"]

_tracer: Any = None
_provider: Any = None
_configured = False
_NULL = contextlib.nullcontext(None)


def _endpoint() -> str | None:
    return (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or None)


def tracing(service_name: str | None = None, *, exporter: Any = None, set_global: bool = True) -> bool:
    """Set up tracing for this process if an OTLP endpoint is configured (or `exporter` is given, as tests
    do); True when spans are recorded. Idempotent: the first configuration wins until `shutdown`."""
    global _tracer, _configured, _provider
    if _configured:
        return _tracer is not None
    _configured = True
    if exporter is None and _endpoint() is None:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=Resource.create({
        "service.name": service_name or os.environ.get("OTEL_SERVICE_NAME") or "loomiq",
    }))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    _provider = provider
    _tracer = provider.get_tracer("loomiq")
    if set_global:
        # FastAPI's own HTTP spans use the global provider: with ours there, a task's spans are children of the
        # request that submitted it.
        from opentelemetry import trace

        trace.set_tracer_provider(provider)
    return True


def shutdown() -> None:
    """Flush and stop the exporter (at process end; tests call it between cases)."""
    global _tracer, _configured, _provider
    if _provider is not None:
        _provider.shutdown()
    _provider = None
    _tracer = None
    _configured = False


def enabled() -> bool:
    """Whether spans are recorded in this process."""
    return _tracer is not None


def _kind(kind: SpanKind) -> Any:
    from opentelemetry.trace import SpanKind as OtelKind

    return {"internal": OtelKind.INTERNAL, "client": OtelKind.CLIENT, "server": OtelKind.SERVER,
            "producer": OtelKind.PRODUCER, "consumer": OtelKind.CONSUMER}[kind]


def span(name: str, attributes: Mapping[str, Any] | None = None, *, kind: SpanKind = "internal",
         parent: Mapping[str, str] | None = None) -> contextlib.AbstractContextManager[Any]:
    """A span named `name` around a block (a shared no-op when tracing is off). `parent`: a trace carrier
    (from `trace_carrier`) whose span becomes this one's parent, for work resumed in another process.
    An exception leaving the block marks the span as an error."""
    if _tracer is None:
        return _NULL
    return start_span(name, attributes, kind=kind, parent=parent)


@contextlib.contextmanager
def start_span(name: str, attributes: Mapping[str, Any] | None = None, *, kind: SpanKind = "internal",
               parent: Mapping[str, str] | None = None) -> Iterator[Any]:
    """`span` when tracing is on (callers use `span`)."""
    from opentelemetry.propagate import extract

    ctx = extract(dict(parent)) if parent else None
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    with _tracer.start_as_current_span(name, context=ctx, kind=_kind(kind), attributes=attrs,
                                       record_exception=True, set_status_on_exception=True) as current:
        yield current


def trace_carrier() -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent``, ``tracestate``) to store with a task;
    empty when tracing is off or no span is current."""
    if _tracer is None:
        return {}
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits (for log lines), or None."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
