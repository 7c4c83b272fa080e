"""Observability below every other layer: structured logs with run correlation ids, and traces.

`logs` configures structlog for the service and the worker (JSON or text lines, secrets redacted) and binds
the ids of the run in hand to every line logged inside it; `tracing` opens OpenTelemetry spans following the
GenAI semantic conventions when an exporter is configured, and costs one attribute read when not. Nothing
here imports the rest of loomiq, so every layer may use it.
"""

from __future__ import annotations

from .logs import LogFormat, bind_ids, configure_logging, current_ids, redact
from .tracing import SpanKind, current_trace_id, enabled, shutdown, span, start_span, trace_carrier, tracing

__all__ = [
    "LogFormat",
    "SpanKind",
    "bind_ids",
    "configure_logging",
    "current_ids",
    "current_trace_id",
    "enabled",
    "redact",
    "shutdown",
    "span",
    "start_span",
    "trace_carrier",
    "tracing",
]
