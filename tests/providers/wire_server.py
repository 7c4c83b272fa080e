"""A local provider server that speaks the real OpenAI and Anthropic wire formats, for adapter tests.

Only the standard library: a `ThreadingHTTPServer` on 127.0.0.1 (port 0) in a background thread.
Tests queue one `Reply` per expected request with `WireServer.script`; each request takes the next
one (a plain text answer when the queue is empty). Every request is recorded (method, path, headers
and JSON body) in `WireServer.requests`.

Endpoints: ``POST /v1/chat/completions`` (OpenAI: JSON, or SSE ``data:`` chunks ending in
``data: [DONE]``) and ``POST /v1/messages`` (Anthropic: JSON, or SSE with ``event:`` lines).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"


@dataclass(frozen=True)
class Reply:
    """How the server answers one request.

    kind: ``ok`` (an answer), ``error`` (an HTTP error status), ``truncated`` (the connection drops
    partway through the body), ``unfinished`` (the stream ends cleanly but without its final
    events: no finish_reason / ``[DONE]``, no ``message_delta`` / ``message_stop``), or
    ``stream_error`` (a stream that starts with HTTP 200, then carries the provider's error event), or
    ``not_json`` (HTTP 200 with a body or an event that is not JSON).
    """

    kind: str = "ok"
    text: str = "Hello from the wire server."
    tool_calls: tuple[tuple[str, str, str], ...] = ()
    """(id, name, raw JSON arguments) of each tool call; raw so tests can send broken JSON."""
    input_tokens: int = 12
    output_tokens: int = 8
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    message: str = ""
    delay_s: float = 0.0
    """Seconds to wait before sending anything (a slow provider)."""
    chunk_chars: int = 5
    """Streamed text and tool arguments are split into pieces of this many characters."""


def text_reply(text: str = "Hello from the wire server.", *, input_tokens: int = 12, output_tokens: int = 8) -> Reply:
    """A plain text answer with the given usage."""
    return Reply(text=text, input_tokens=input_tokens, output_tokens=output_tokens)


def tool_call_reply(
    name: str, arguments: dict[str, Any], *, call_id: str = "call_1", text: str = "", **kw: Any
) -> Reply:
    """An answer that calls one tool (after optional text)."""
    return Reply(text=text, tool_calls=((call_id, name, json.dumps(arguments)),), **kw)


def malformed_tool_args(name: str = "get_weather", raw: str = '{"city": "Par', *, call_id: str = "call_1") -> Reply:
    """A tool call whose arguments are not valid JSON."""
    return Reply(text="", tool_calls=((call_id, name, raw),))


def error_reply(status: int, message: str = "", *, headers: dict[str, str] | None = None) -> Reply:
    """An HTTP error in the provider's error-body format. A 401 echoes the key it was sent."""
    return Reply(kind="error", status=status, message=message, headers=tuple((headers or {}).items()))


def rate_limited(retry_after: str = "7", *, extra_headers: dict[str, str] | None = None) -> Reply:
    """HTTP 429 with a ``Retry-After`` header (seconds or an HTTP date)."""
    return error_reply(429, "Rate limit reached", headers={"Retry-After": retry_after, **(extra_headers or {})})


def truncated(text: str = "This answer will be cut off before its end.") -> Reply:
    """The connection drops partway through the body (no end of the chunked body)."""
    return Reply(kind="truncated", text=text)


def unfinished(text: str = "This stream stops without saying it is done.") -> Reply:
    """The stream ends cleanly, but its final events never come."""
    return Reply(kind="unfinished", text=text)


def stream_error(message: str = "Overloaded") -> Reply:
    """A stream that starts fine (HTTP 200), then reports a server failure in an error event."""
    return Reply(kind="stream_error", message=message)


def not_json() -> Reply:
    """HTTP 200, but the body (or the first stream event) is not JSON."""
    return Reply(kind="not_json")


def slow(delay_s: float, then: Reply | None = None) -> Reply:
    """Wait `delay_s` before answering with `then` (a text answer by default)."""
    return replace(then or Reply(), delay_s=delay_s)


@dataclass
class RecordedRequest:
    """One request as the server received it; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def api_key(self) -> str | None:
        """The key the client sent (``x-api-key``, or the bearer token)."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        auth = self.headers.get("authorization", "")
        return auth.removeprefix("Bearer ") if auth else None


@dataclass
class WireServer:
    """The server; use `start`/`stop` or ``with WireServer() as server``."""

    host: str = "127.0.0.1"
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:PORT`` (the Anthropic SDK's base_url)."""
        assert self._httpd is not None, "server not started"
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    @property
    def openai_base_url(self) -> str:
        """The OpenAI SDK's base_url: the root plus ``/v1``."""
        return self.url + "/v1"

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self._queue.extend(replies)

    def start(self) -> WireServer:
        """Bind a free port and serve in a background thread."""
        self._httpd = _Server((self.host, 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="wire-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections, and wait for every handler thread."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            open_connections = list(self._connections)
        for conn in open_connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        assert self._thread is not None
        self._thread.join(timeout=10)
        self._httpd = None

    def __enter__(self) -> WireServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._queue.popleft() if self._queue else Reply()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> None:
        """Block until `count` requests have arrived; raise `TimeoutError` after `timeout` seconds.

        From async tests: ``await asyncio.to_thread(server.wait_for_requests, 1)``.
        """
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"{len(self.requests)} of {count} requests arrived within {timeout}s")

    def _record(self, request: RecordedRequest) -> None:
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()


class _Server(ThreadingHTTPServer):
    # Non-daemon handler threads, so `server_close` joins them and no test leaks a thread.
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], wire: WireServer):
        self.wire = wire
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (a cancelled request) is expected here, not a failure.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle keep-alive connection never holds `stop` up for long
    server: _Server

    def setup(self) -> None:
        super().setup()
        wire = self.server.wire
        with wire._lock:
            wire._connections.add(self.connection)
            late = wire._stopping.is_set()
        if late:
            # Accepted while `stop` ran, after it dropped the connections it knew about.
            self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        wire = self.server.wire
        with wire._lock:
            wire._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        wire = self.server.wire
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        request = RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        wire._record(request)
        reply = wire._next_reply()
        try:
            if reply.delay_s and wire._stopping.wait(reply.delay_s):
                self.close_connection = True
                return
            self._answer(request, reply)
        except OSError:
            self.close_connection = True

    def _answer(self, request: RecordedRequest, reply: Reply) -> None:
        if request.path == OPENAI_PATH:
            wire_format = "openai"
        elif request.path == ANTHROPIC_PATH:
            wire_format = "anthropic"
        else:
            self._send_json(404, {"error": {"message": f"no route {request.path}"}})
            return
        if reply.kind == "error":
            self._send_json(reply.status, _error_body(wire_format, reply, request), reply.headers)
            return
        body = request.body if isinstance(request.body, dict) else {}
        model = str(body.get("model", "unknown"))
        if reply.kind == "not_json":
            if body.get("stream"):
                self._send_stream(["event: message_start\ndata: {not json\n\n"], "ok")
            else:
                self._send_raw(200, b"{not json")
            return
        if not body.get("stream"):
            payload = _openai_json(model, reply) if wire_format == "openai" else _anthropic_json(model, reply)
            self._send_json(200, payload, truncate=reply.kind == "truncated")
            return
        if wire_format == "openai":
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = _openai_events(model, reply, include_usage)
        else:
            events = _anthropic_events(model, reply)
        self._send_stream(events, reply.kind)

    def _send_json(
        self, status: int, payload: Any, headers: tuple[tuple[str, str], ...] = (), *, truncate: bool = False
    ) -> None:
        self._send_raw(status, json.dumps(payload).encode(), headers, truncate=truncate)

    def _send_raw(
        self, status: int, data: bytes, headers: tuple[tuple[str, str], ...] = (), *, truncate: bool = False
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data) + (50 if truncate else 0)))
        for name, value in headers:
            self.send_header(name, value)
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if truncate else data)
        self.wfile.flush()
        if truncate:
            self.close_connection = True

    def _send_stream(self, events: list[str], kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        if kind == "truncated":
            self.send_header("Connection", "close")
        self.end_headers()
        if kind == "truncated":
            events = events[: max(1, len(events) // 2)]
        for event in events:
            data = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        if kind == "truncated":
            # Half an event, then the connection goes: the chunked body never ends.
            self.wfile.write(b'40\r\ndata: {"choi')
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] if text else []


def _error_body(wire_format: str, reply: Reply, request: RecordedRequest) -> dict[str, Any]:
    message = reply.message
    if not message and reply.status == 401:
        # Like real providers, name the rejected key (unmasked, so tests prove adapters scrub it).
        message = f"Incorrect API key provided: {request.api_key}"
    message = message or f"wire server error {reply.status}"
    if wire_format == "openai":
        return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    kinds = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error", 529: "overloaded_error"}
    kind = kinds.get(reply.status, "api_error" if reply.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _openai_usage(reply: Reply) -> dict[str, int]:
    total = reply.input_tokens + reply.output_tokens
    return {"prompt_tokens": reply.input_tokens, "completion_tokens": reply.output_tokens, "total_tokens": total}


def _openai_json(model: str, reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}} for i, n, a in reply.tool_calls
        ]
    return {
        "id": "chatcmpl-wire",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                "logprobs": None,
            }
        ],
        "usage": _openai_usage(reply),
    }


def _openai_events(model: str, reply: Reply, include_usage: bool) -> list[str]:
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        data = {"id": "chatcmpl-wire", "object": "chat.completion.chunk", "created": created, "model": model}
        return f"data: {json.dumps({**data, 'choices': choices, **extra})}\n\n"

    def delta(d: dict[str, Any], finish: str | None = None) -> str:
        return chunk([{"index": 0, "delta": d, "finish_reason": finish, "logprobs": None}])

    events = [delta({"role": "assistant", "content": ""})]
    events += [delta({"content": piece}) for piece in _pieces(reply.text, reply.chunk_chars)]
    for index, (call_id, name, arguments) in enumerate(reply.tool_calls):
        head = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        events.append(delta({"tool_calls": [head]}))
        events += [
            delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            for piece in _pieces(arguments, reply.chunk_chars)
        ]
    if reply.kind == "unfinished":
        return events
    if reply.kind == "stream_error":
        return [*events, f"data: {json.dumps({'error': {'message': reply.message, 'type': 'server_error'}})}\n\n"]
    events.append(delta({}, "tool_calls" if reply.tool_calls else "stop"))
    if include_usage:
        events.append(chunk([], usage=_openai_usage(reply)))
    events.append("data: [DONE]\n\n")
    return events


def _anthropic_json(model: str, reply: Reply) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    for call_id, name, arguments in reply.tool_calls:
        try:
            tool_input: Any = json.loads(arguments)
        except ValueError:
            tool_input = arguments  # a broken provider: `input` is not an object
        content.append({"type": "tool_use", "id": call_id, "name": name, "input": tool_input})
    return {
        "id": "msg_wire",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def _anthropic_events(model: str, reply: Reply) -> list[str]:
    def event(name: str, data: dict[str, Any]) -> str:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

    start = {
        "id": "msg_wire",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
    }
    events = [event("message_start", {"message": start}), event("ping", {})]
    index = 0
    if reply.text:
        events.append(event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}))
        events += [
            event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": piece}})
            for piece in _pieces(reply.text, reply.chunk_chars)
        ]
        events.append(event("content_block_stop", {"index": index}))
        index += 1
    for call_id, name, arguments in reply.tool_calls:
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        events.append(event("content_block_start", {"index": index, "content_block": block}))
        events += [
            event("content_block_delta", {"index": index, "delta": {"type": "input_json_delta", "partial_json": p}})
            for p in _pieces(arguments, reply.chunk_chars)
        ]
        events.append(event("content_block_stop", {"index": index}))
        index += 1
    if reply.kind == "unfinished":
        return events
    if reply.kind == "stream_error":
        return [*events, event("error", {"error": {"type": "overloaded_error", "message": reply.message}})]
    stop = "tool_use" if reply.tool_calls else "end_turn"
    events.append(
        event(
            "message_delta",
            {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": reply.output_tokens}},
        )
    )
    events.append(event("message_stop", {}))
    return events
