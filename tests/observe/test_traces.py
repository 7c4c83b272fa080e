"""Traces: a real `loomiq serve` exports OTLP/HTTP to a local collector stand-in; one trace per task runs from
the HTTP request that submitted it through the worker's run to each agent and model call, with GenAI
attributes; with no endpoint configured nothing is set up."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from loomiq.observe import span, tracing


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class Collector:
    """Accepts OTLP/HTTP protobuf trace exports on 127.0.0.1 and keeps the spans."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.services: set[str] = set()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for rs in request.resource_spans:
                    attrs = {a.key: _value(a.value) for a in rs.resource.attributes}
                    collector.services.add(attrs.get("service.name", ""))
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            collector.spans.append({
                                "name": s.name, "trace": s.trace_id.hex(), "id": s.span_id.hex(),
                                "parent": s.parent_span_id.hex() or None, "kind": s.kind,
                                "attrs": {a.key: _value(a.value) for a in s.attributes},
                            })
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.server.shutdown()
    c.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_one_trace_per_task_from_the_request_to_every_model_call(collector: Collector, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "LOOMIQ_CONFIG"}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, LOOMIQ_ALLOW_MODEL_REQUESTS="0", NO_COLOR="1")
    server = subprocess.Popen([sys.executable, "-m", "loomiq.cli", "serve", "--no-auth", "--port", str(port)],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"{base}/api/ready").status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        accepted = httpx2.post(f"{base}/api/tasks", json={"prompt": "Should we shard?", "strategy": "sequential"})
        assert accepted.status_code == 202, accepted.text
        task_id = accepted.json()["id"]
        while httpx2.get(f"{base}/api/tasks/{task_id}").json()["status"] != "completed":
            assert time.monotonic() < deadline + 30
            time.sleep(0.1)
        steps = len(httpx2.get(f"{base}/api/tasks/{task_id}").json()["result"]["steps"])
        spans: dict[str, Any] = {}
        while time.monotonic() < deadline + 45:
            run = [s for s in collector.spans if s["name"].startswith("run_task")
                   and s["attrs"].get("loomiq.task_id") == task_id]
            if run:
                trace_spans = [s for s in collector.spans if s["trace"] == run[0]["trace"]]
                if sum(s["name"].startswith("chat ") for s in trace_spans) >= steps:
                    spans = {s["id"]: s for s in trace_spans}
                    break
            time.sleep(0.2)
        assert spans, f"no complete trace received: {[s['name'] for s in collector.spans]}"
    finally:
        server.terminate()
        server.communicate(timeout=30)

    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in spans.values():
        by_name.setdefault(s["name"].split(" ")[0], []).append(s)
    (run,) = by_name["run_task"]
    # run_task descends from the HTTP request that submitted the task (FastAPI's server span, same trace)
    ancestors = []
    parent = spans.get(run["parent"])
    while parent is not None:
        ancestors.append(parent["name"])
        parent = spans.get(parent["parent"])
    assert any("POST" in name and "/api/tasks" in name for name in ancestors), ancestors
    agents = by_name["invoke_agent"]
    assert len(agents) == steps and all(a["parent"] == run["id"] for a in agents)
    chats = by_name["chat"]
    assert len(chats) == steps and {c["parent"] for c in chats} == {a["id"] for a in agents}
    for a in agents:
        assert a["attrs"]["gen_ai.operation.name"] == "invoke_agent" and a["attrs"]["gen_ai.agent.id"]
    for c in chats:
        assert c["attrs"]["gen_ai.operation.name"] == "chat" and c["attrs"]["gen_ai.provider.name"] == "scripted"
        assert c["attrs"]["gen_ai.usage.output_tokens"] > 0 and c["attrs"]["gen_ai.response.finish_reasons"]
    assert "loomiq-api" in collector.services


def test_without_an_endpoint_nothing_is_traced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    code = ("import sys; from loomiq.observe import tracing, span, enabled; "
            "assert tracing('x') is False and not enabled(); "
            "assert span('a') is span('b'); "
            "assert 'opentelemetry.sdk' not in sys.modules, 'the SDK was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})
    assert span("x").__class__.__name__ == "nullcontext" or tracing  # in this process tracing may be on
