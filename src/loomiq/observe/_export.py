"""Off the hot path: turning recorded spans into OpenTelemetry SDK spans and exporting them.

`tracing` records a finished span as one plain tuple (`Record`) and hands batches of them here: to a separate
export process (``python -m loomiq.observe._export``, fed through a pipe with `marshal`-encoded batches, the
production path, so that building SDK objects and encoding OTLP protobuf take neither the GIL nor the event loop
of the process doing the work) or to a thread of the same process when an exporter object is given
(`tracing(exporter=...)`, as tests do). Either way `readable` builds the SDK's `ReadableSpan` with the
``gen_ai.*`` attributes of its template, and the SDK's exporter sends them.

A record: ``(name, template, args, extra, kind, trace_id, span_id, parent_id, start_ns, end_ns, status,
description, events, scope)``. ``template`` names how ``args`` become attributes (`TEMPLATES`); None: ``args``
is the attribute dict itself. ``kind`` is the SDK's `SpanKind` value, ``status`` its `StatusCode` value,
``events`` None or a list of ``(name, time_ns, attributes)``, ``scope`` None (loomiq) or the instrumentation
scope's name (FastAPI's own spans, passed through).
"""

from __future__ import annotations

import contextlib
import marshal
import os
import struct
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Record = tuple[Any, ...]

NICE = 10
"""How much lower the export process's scheduling priority is than that of the process it serves."""

HEADER = struct.Struct("<I")
"""Each batch on the pipe: its length (4 bytes, little-endian), then ``marshal.dumps(list of records)``."""


def _invoke_agent(a: tuple[Any, ...]) -> dict[str, Any]:
    return {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.id": a[0], "gen_ai.agent.name": a[1],
            "gen_ai.provider.name": a[2], "gen_ai.request.model": a[3], "loomiq.step": a[4]}


def _chat(a: tuple[Any, ...]) -> dict[str, Any]:
    return {"gen_ai.operation.name": "chat", "gen_ai.provider.name": a[0], "gen_ai.request.model": a[1],
            "gen_ai.agent.id": a[2]}


def _execute_tool(a: tuple[Any, ...]) -> dict[str, Any]:
    attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": a[0], "gen_ai.tool.call.id": a[1],
             "gen_ai.tool.type": "function"}
    if a[2]:
        attrs["gen_ai.tool.description"] = a[2]
    return attrs


def _invoke_workflow(a: tuple[Any, ...]) -> dict[str, Any]:
    return {"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": a[0],
            "loomiq.workflow_run_id": a[1]}


TEMPLATES: dict[str, Callable[[tuple[Any, ...]], dict[str, Any]]] = {
    "invoke_agent": _invoke_agent, "chat": _chat, "execute_tool": _execute_tool, "invoke_workflow": _invoke_workflow,
}
"""How the GenAI spans' few arguments become their ``gen_ai.*`` attributes (built here, not on the hot path)."""


def attributes(template: str | None, args: Any, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """A record's attributes: its template's over its args (or the args themselves), then `extra`; None values
    left out."""
    attrs = TEMPLATES[template](args) if template is not None else dict(args or {})
    if extra:
        attrs.update(extra)
    return {k: v for k, v in attrs.items() if v is not None}


def encodable(batch: list[Record]) -> bytes:
    """`batch` encoded for the pipe; an attribute value marshal cannot carry is sent as its ``str``."""
    try:
        return marshal.dumps(batch)
    except ValueError:
        def clean(value: Any) -> Any:
            if isinstance(value, str | bool | int | float) or value is None:
                return value
            if isinstance(value, list | tuple):
                return [clean(v) for v in value]
            return str(value)

        fixed = []
        for record in batch:
            r = list(record)
            r[2] = {k: clean(v) for k, v in r[2].items()} if isinstance(r[2], Mapping) else tuple(clean(v)
                                                                                              for v in r[2])
            r[3] = {k: clean(v) for k, v in r[3].items()} if r[3] else r[3]
            r[12] = [(n, t, {k: clean(v) for k, v in a.items()}) for n, t, a in r[12]] if r[12] else r[12]
            fixed.append(tuple(r))
        return marshal.dumps(fixed)


class Converter:
    """Builds SDK `ReadableSpan`s from records, for one service (resource) name."""

    def __init__(self, service_name: str) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        self.resource = Resource.create({"service.name": service_name})
        self._scopes: dict[str | None, Any] = {None: InstrumentationScope("loomiq")}
        self._scope_type = InstrumentationScope

    def readable(self, batch: Iterable[Record]) -> list[Any]:
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        sampled = TraceFlags(TraceFlags.SAMPLED)
        out = []
        for (name, template, args, extra, kind, trace_id, span_id, parent_id, start, end, status, description,
             events, scope) in batch:
            if scope not in self._scopes:
                self._scopes[scope] = self._scope_type(scope)
            code = StatusCode(status)
            out.append(ReadableSpan(
                name=name,
                context=SpanContext(trace_id, span_id, is_remote=False, trace_flags=sampled),
                parent=SpanContext(trace_id, parent_id, is_remote=False, trace_flags=sampled) if parent_id else None,
                resource=self.resource,
                attributes=attributes(template, args, extra),
                events=[Event(n, a, timestamp=t) for n, t, a in events] if events else (),
                kind=SpanKind(kind),
                status=Status(code, description if code is StatusCode.ERROR else None),
                start_time=start,
                end_time=end,
                instrumentation_scope=self._scopes[scope],
            ))
        return out


def _read_exact(stream: Any, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        part = stream.read(n - len(data))
        if not part:
            return None
        data += part
    return data


def main() -> None:
    """The export process: reads batches from stdin until it closes, exports each by OTLP/HTTP (the SDK's
    exporter, configured by the ``OTEL_EXPORTER_OTLP_*`` environment), then flushes and exits."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # Background work: below the process it serves, so that handing it a batch (which wakes it) does not
    # preempt that process on a busy machine; it still gets a share of the CPU when the machine is saturated.
    with contextlib.suppress(OSError):
        os.nice(NICE)
    service = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OTEL_SERVICE_NAME") or "loomiq"
    converter = Converter(service)
    exporter = OTLPSpanExporter()
    stdin = sys.stdin.buffer
    try:
        while True:
            header = _read_exact(stdin, HEADER.size)
            if header is None:
                break
            body = _read_exact(stdin, HEADER.unpack(header)[0])
            if body is None:
                break
            batch = marshal.loads(body)
            for start in range(0, len(batch), 512):  # OTLP's usual batch bound
                exporter.export(converter.readable(batch[start:start + 512]))
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated


if __name__ == "__main__":
    main()
