"""OpenTelemetry traces following the GenAI semantic conventions, on only when an exporter is configured.

`tracing()` sets the tracer up once per process: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set, spans go to that OTLP/HTTP endpoint (``OTEL_SERVICE_NAME`` names
the service, default ``loomiq``); otherwise nothing is imported and `span` hands back one shared no-op context
manager, so an instrumented hot path pays a global read and a call.

Recording is cheap and export happens elsewhere. A loomiq span is a small `Span` object: opening it draws a
span id, reads its parent from a context variable and notes the time; closing it appends one tuple (name,
a template and its few arguments, ids, times, status) to a buffer. The ``gen_ai.*`` attribute dicts, the SDK's
span objects and the OTLP protobuf are built off the hot path: batches of tuples (every 256 spans or half a
second) go down a pipe to an export process (`loomiq.observe._export`), which holds neither this process's GIL
nor its event loop and exports them with the SDK's OTLP exporter (its ``OTEL_EXPORTER_OTLP_*`` settings apply).
A batch the pipe cannot take at once waits; past 8 MiB waiting, new batches are dropped (and counted) rather
than slowing the work down. Given an exporter object (`tracing(exporter=...)`), a thread of this process
exports instead.

Sampling follows ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` as the SDK reads them (default
``parentbased_always_on``; ``traceidratio`` decides on the trace id's low 64 bits, as the SDK does): an unsampled
span still carries its ids (so a carrier says "not sampled") but records nothing.

Spans (``docs/operations.md`` lists their attributes):

- ``run_task {strategy}``: a durable task on the worker that runs it, a child of the span that submitted
  it (the API request or the library call): the submitter's trace context travels in the task record
  (`trace_carrier` at submission, W3C ``traceparent``, parsed on the worker);
- ``invoke_workflow {name}``: a workflow run;
- ``invoke_agent {agent}``: one agent answering one step (failovers are siblings);
- ``chat {model}``: one model call (each retry its own);
- ``execute_tool {tool}``: one tool call.

The HTTP server spans FastAPI opens itself go through an SDK tracer provider set as the global one; its spans
reach the same export process, and a loomiq span opened inside one (with no loomiq span around it) is its child.
The reverse does not hold: a loomiq span is not the OpenTelemetry API's current span, so a third-party
instrumentation inside it starts from the enclosing HTTP span, if any.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import random
import select
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from ._export import HEADER, Converter, Record, encodable

SpanKind = Literal["internal", "client", "server", "producer", "consumer"]

_KINDS: dict[str, int] = {"internal": 0, "server": 1, "client": 2, "producer": 3, "consumer": 4}
"""The SDK's `SpanKind` values."""

_log = logging.getLogger("loomiq.observe")

_tracer: Any = None
"""The recording pipeline (`_Pipeline`) when tracing is on, else None."""
_provider: Any = None
_configured = False
_otel_current: Callable[[], tuple[int, int, bool] | None] | None = None
"""Reads the OpenTelemetry API's current span (FastAPI's request span) as a parent, when one may exist."""
_NULL = contextlib.nullcontext(None)
_CURRENT: ContextVar[Span | None] = ContextVar("loomiq_span", default=None)
_getrandbits = random.getrandbits  # the module's generator, which Python reseeds in a forked child
_time_ns = time.time_ns
_MASK64 = (1 << 64) - 1


def _endpoint() -> str | None:
    return (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or None)


# -- sampling ----------------------------------------------------------------------------------------------

class _Sampler:
    """``OTEL_TRACES_SAMPLER`` as the SDK reads it: whether a root is sampled, whether children follow."""

    def __init__(self) -> None:
        name = (os.environ.get("OTEL_TRACES_SAMPLER") or "parentbased_always_on").strip().lower()
        arg = os.environ.get("OTEL_TRACES_SAMPLER_ARG")
        try:
            rate = min(1.0, max(0.0, float(arg))) if arg else 1.0
        except ValueError:
            rate = 1.0
        self.parent_based = name.startswith("parentbased_")
        base = name.removeprefix("parentbased_")
        if base not in ("always_on", "always_off", "traceidratio"):
            _log.warning("OTEL_TRACES_SAMPLER=%s is not one loomiq knows: sampling every trace", name)
            base = "always_on"
        self.bound = {"always_on": 1 << 64, "always_off": 0}.get(base, round(rate * (1 << 64)))

    def sampled(self, trace_id: int, parent_sampled: bool | None) -> bool:
        if parent_sampled is not None and self.parent_based:
            return parent_sampled
        return (trace_id & _MASK64) < self.bound


_sampler = _Sampler()


# -- spans -------------------------------------------------------------------------------------------------

def _parse_traceparent(carrier: Mapping[str, str]) -> tuple[int, int, bool] | None:
    value = carrier.get("traceparent") or ""
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or parts[0] == "ff":
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3][:2], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, bool(flags & 1)


class Span:
    """One span being recorded: a context manager (entering makes it the current span), and what `as` gives.
    `set_attribute` / `set_attributes` add attributes; nothing else is built until export."""

    __slots__ = ("_parent", "_token", "args", "extra", "kind", "name", "parent_id", "sampled", "span_id", "start",
                 "template", "trace_id")
    trace_id: int
    span_id: int
    start: int
    _token: Token[Span | None]

    def __init__(self, name: str, template: str | None, args: Any, kind: int = 0,
                 parent: tuple[int, int, bool] | None = None) -> None:
        self.name = name
        self.template = template
        self.args = args
        self.kind = kind
        self.extra: dict[str, Any] | None = None
        self._parent = parent
        self.parent_id = 0
        self.sampled = False

    def set_attribute(self, key: str, value: Any) -> None:
        if self.extra is None:
            self.extra = {}
        self.extra[key] = value

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        if self.extra is None:
            self.extra = attributes
        else:
            self.extra.update(attributes)

    def is_recording(self) -> bool:
        return self.sampled

    def __enter__(self) -> Span:
        # The hot path: kept to a few attribute reads, two random draws and a context-variable set.
        sampler = _sampler
        current = _CURRENT.get()
        if current is not None and self._parent is None:
            self.trace_id = trace_id = current.trace_id
            self.parent_id = current.span_id
            self.sampled = current.sampled if sampler.parent_based else (trace_id & _MASK64) < sampler.bound
        else:
            parent = self._parent
            if parent is None and _otel_current is not None:
                parent = _otel_current()
            if parent is None:
                self.trace_id = trace_id = _getrandbits(128) or 1
                self.sampled = (trace_id & _MASK64) < sampler.bound
            else:
                self.trace_id, self.parent_id = parent[0], parent[1]
                self.sampled = parent[2] if sampler.parent_based else (parent[0] & _MASK64) < sampler.bound
        self.span_id = _getrandbits(64) or 1
        self._token = _CURRENT.set(self)
        self.start = _time_ns()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        end = _time_ns()
        _CURRENT.reset(self._token)
        pipeline = _tracer
        if not self.sampled or pipeline is None:
            return
        status, description, events = 0, None, None
        if exc is not None and not isinstance(exc, GeneratorExit):
            status, description = 2, f"{type(exc).__name__}: {exc}"
            events = [("exception", end, {
                "exception.type": type(exc).__qualname__, "exception.message": str(exc),
                "exception.stacktrace": "".join(traceback.format_exception(type(exc), exc, tb)),
            })]
        buffer = pipeline.buffer
        buffer.append((self.name, self.template, self.args, self.extra, self.kind, self.trace_id, self.span_id,
                       self.parent_id, self.start, end, status, description, events, None))
        if len(buffer) >= pipeline.BATCH:
            pipeline.flush()


# -- the pipeline ------------------------------------------------------------------------------------------

class _ProcessSink:
    """Sends batches down a pipe to the export process (started here)."""

    LIMIT = 8 << 20

    def __init__(self, service_name: str) -> None:
        script = Path(__file__).with_name("_export.py")
        self.process = subprocess.Popen([sys.executable, str(script), service_name], stdin=subprocess.PIPE,
                                        close_fds=True)
        assert self.process.stdin is not None
        self.fd = self.process.stdin.fileno()
        os.set_blocking(self.fd, False)
        self.pending = bytearray()
        self.dropped = 0

    def send(self, batch: list[Record]) -> None:
        self.drain()
        if len(self.pending) > self.LIMIT:
            if not self.dropped:
                _log.warning("the trace export process is not keeping up: dropping spans")
            self.dropped += len(batch)
            return
        body = encodable(batch)
        self.pending += HEADER.pack(len(body))
        self.pending += body
        self.drain()

    def drain(self) -> None:
        while self.pending:
            try:
                n = os.write(self.fd, self.pending)
            except BlockingIOError:
                return
            except OSError:  # the export process is gone
                self.dropped += 1
                self.pending.clear()
                return
            del self.pending[:n]

    def close(self, timeout: float = 10.0) -> None:
        """Hand over what is pending and let the export process finish, within `timeout` seconds in all (an
        unreachable endpoint must not hold the process's exit); then it is killed."""
        deadline = time.monotonic() + timeout
        while self.pending and (left := deadline - time.monotonic()) > 0:
            self.drain()
            if self.pending:
                with contextlib.suppress(OSError, ValueError):
                    select.select([], [self.fd], [], left)
        self.pending.clear()
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class _ThreadSink:
    """Exports batches with `exporter` from a thread of this process (when an exporter object is given)."""

    def __init__(self, exporter: Any, service_name: str) -> None:
        import queue

        self.exporter = exporter
        self.converter = Converter(service_name)
        self.queue: queue.SimpleQueue[list[Record] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="loomiq-trace-export", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (batch := self.queue.get()) is not None:
            try:
                self.exporter.export(self.converter.readable(batch))
            except Exception:  # noqa: BLE001 - an exporter failure loses these spans, never the process
                _log.warning("exporting %d spans failed", len(batch), exc_info=True)

    def send(self, batch: list[Record]) -> None:
        self.queue.put(batch)

    def drain(self) -> None:
        return None

    def close(self, timeout: float = 10.0) -> None:
        self.queue.put(None)
        self.thread.join(timeout)
        self.exporter.shutdown()


class _Pipeline:
    """Buffers records and hands them to the sink every `BATCH` spans or `INTERVAL_S` seconds."""

    BATCH = 256
    INTERVAL_S = 0.5

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.buffer: list[Record] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.timer = threading.Thread(target=self._tick, name="loomiq-trace-flush", daemon=True)
        self.timer.start()

    def add(self, record: Record) -> None:
        buffer = self.buffer
        buffer.append(record)
        if len(buffer) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            batch, self.buffer = self.buffer, []
            if batch:
                self.sink.send(batch)
            else:
                self.sink.drain()

    def _tick(self) -> None:
        while not self.stopped.wait(self.INTERVAL_S):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the timer must keep running
                _log.warning("flushing spans failed", exc_info=True)

    def close(self) -> None:
        self.stopped.set()
        self.flush()
        self.sink.close()


class _SdkBridge:
    """A span processor for the SDK tracer provider that FastAPI's own spans use: each finished span becomes a
    record on the same pipeline as loomiq's (the other hooks do nothing)."""

    def __init__(self, pipeline: _Pipeline) -> None:
        self.pipeline = pipeline

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    def _on_ending(self, span: Any) -> None:
        return None

    def on_end(self, span: Any) -> None:
        ctx = span.get_span_context() if hasattr(span, "get_span_context") else span.context
        if ctx is None or not ctx.trace_flags.sampled:
            return
        parent = span.parent
        events = [(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events] or None
        scope = span.instrumentation_scope.name if span.instrumentation_scope is not None else "unknown"
        self.pipeline.add((span.name, None, dict(span.attributes or {}), None, span.kind.value, ctx.trace_id,
                           ctx.span_id, parent.span_id if parent is not None else 0, span.start_time, span.end_time,
                           span.status.status_code.value, span.status.description, events, scope))

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.pipeline.flush()
        return True


def _otel_reader() -> Callable[[], tuple[int, int, bool] | None]:
    from opentelemetry import context as otel_context
    from opentelemetry import trace

    # The API's context lives in a context variable; reading it directly spares two calls on every root span
    # (the public function where the runtime context is another one).
    variable = getattr(getattr(otel_context, "_RUNTIME_CONTEXT", None), "_current_context", None)
    get_current = variable.get if isinstance(variable, ContextVar) else otel_context.get_current

    def read() -> tuple[int, int, bool] | None:
        context = get_current()
        if not context:  # the usual case off the HTTP request path: nothing is current
            return None
        ctx = trace.get_current_span(context).get_span_context()
        if not ctx.is_valid:
            return None
        return ctx.trace_id, ctx.span_id, bool(ctx.trace_flags.sampled)

    return read


def tracing(service_name: str | None = None, *, exporter: Any = None, set_global: bool = True) -> bool:
    """Set up tracing for this process if an OTLP endpoint is configured (or `exporter` is given, as tests
    do); True when spans are recorded. Idempotent: the first configuration wins until `shutdown`.
    `set_global`: also set an SDK tracer provider as OpenTelemetry's global one (FastAPI's HTTP spans use it),
    feeding the same export, so that a task's spans are children of the request that submitted it."""
    global _tracer, _configured, _provider, _otel_current, _sampler
    if _configured:
        return _tracer is not None
    _configured = True
    if exporter is None and _endpoint() is None:
        return False
    service = service_name or os.environ.get("OTEL_SERVICE_NAME") or "loomiq"
    sink = _ThreadSink(exporter, service) if exporter is not None else _ProcessSink(service)
    _sampler = _Sampler()
    pipeline = _Pipeline(sink)
    _tracer = pipeline
    atexit.unregister(shutdown)  # once, however many times tracing is set up again
    atexit.register(shutdown)
    if set_global:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(_SdkBridge(pipeline))  # type: ignore[arg-type]  # the SpanProcessor protocol
        _provider = provider
        trace.set_tracer_provider(provider)
        _otel_current = _otel_reader()
    return True


def shutdown() -> None:
    """Flush and stop the export (at process end; tests call it between cases)."""
    global _tracer, _configured, _provider, _otel_current
    pipeline, _tracer = _tracer, None
    if pipeline is not None:
        pipeline.close()
    _provider = None
    _otel_current = None
    _configured = False


def enabled() -> bool:
    """Whether spans are recorded in this process."""
    return _tracer is not None


def span(name: str, attributes: Mapping[str, Any] | None = None, *, kind: SpanKind = "internal",
         parent: Mapping[str, str] | None = None) -> contextlib.AbstractContextManager[Any]:
    """A span named `name` around a block (a shared no-op when tracing is off). `parent`: a trace carrier
    (from `trace_carrier`) whose span becomes this one's parent, for work resumed in another process.
    An exception leaving the block marks the span as an error."""
    if _tracer is None:
        return _NULL
    return start_span(name, attributes, kind=kind, parent=parent)


def start_span(name: str, attributes: Mapping[str, Any] | None = None, *, kind: SpanKind = "internal",
               parent: Mapping[str, str] | None = None, template: str | None = None, args: Any = None) -> Span:
    """`span` when tracing is on (callers use `span`). `template` and `args`: attributes built at export
    (`loomiq.observe._export.TEMPLATES`) instead of `attributes`."""
    return Span(name, template, args if template is not None else dict(attributes or {}), _KINDS[kind],
                _parse_traceparent(parent) if parent else None)


def trace_carrier() -> dict[str, str]:
    """The current trace context as a W3C ``traceparent`` header to store with a task; empty when tracing is
    off or no span is current."""
    if _tracer is None:
        return {}
    current = _CURRENT.get()
    if current is not None:
        return {"traceparent": f"00-{current.trace_id:032x}-{current.span_id:016x}-{'01' if current.sampled else '00'}"}
    if _otel_current is not None:
        from opentelemetry.propagate import inject

        carrier: dict[str, str] = {}
        inject(carrier)
        return carrier
    return {}


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits (for log lines), or None."""
    if _tracer is None:
        return None
    current = _CURRENT.get()
    if current is not None:
        return format(current.trace_id, "032x")
    found = _otel_current() if _otel_current is not None else None
    return format(found[0], "032x") if found else None
