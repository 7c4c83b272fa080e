"""A local web for the web tools' tests: real HTTP on 127.0.0.1 in a thread, speaking the SearxNG,
Brave and Tavily wire formats, and serving pages, redirects, large and slow bodies for `http_fetch`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BRAVE_KEY = "brave-test-key"
TAVILY_KEY = "tvly-test-key"

PAGE = """<!doctype html><html><head><title>A  test &amp; page</title><style>.x{color:red}</style>
<script>var secret = "not text";</script></head><body><nav>Home | About</nav>
<article><h1>Heading</h1><p>First paragraph with <b>bold</b> text.</p><ul><li>one</li><li>two</li></ul></article>
<footer>footer text</footer></body></html>"""


class FakeWeb:
    """The server's state: the requests it saw (method, path, headers), for assertions."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _handler(web: FakeWeb) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, ctype: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _record(self, body: bytes = b"") -> tuple[str, dict[str, list[str]]]:
            parts = urlsplit(self.path)
            web.requests.append({"method": self.command, "path": parts.path, "query": parse_qs(parts.query),
                                 "headers": dict(self.headers), "body": body.decode(errors="replace")})
            return parts.path, parse_qs(parts.query)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path, query = self._record()
            if path == "/searxng/search":
                q = query["q"][0]
                assert query["format"] == ["json"]
                results = [{"title": f"SearxNG {i} for {q}", "url": f"https://example.org/{i}",
                            "content": f"snippet  {i}", "engine": "fake"} for i in range(8)]
                self._send(200, json.dumps({"query": q, "results": results}).encode())
            elif path == "/res/v1/web/search":
                if self.headers.get("X-Subscription-Token") != BRAVE_KEY:
                    self._send(401, b'{"error": "bad token"}')
                    return
                count = int(query.get("count", ["20"])[0])
                results = [{"title": f"Brave {i}", "url": f"https://brave.example/{i}", "description": f"desc {i}"}
                           for i in range(count)]
                self._send(200, json.dumps({"type": "search", "web": {"type": "search", "results": results}}).encode())
            elif path == "/page.html":
                self._send(200, PAGE.encode(), "text/html; charset=utf-8")
            elif path == "/plain":
                self._send(200, "plain text ünïcode".encode(), "text/plain; charset=utf-8")
            elif path == "/redirect":
                self._send(302, b"", headers={"Location": query["to"][0]})
            elif path == "/loop":
                self._send(302, b"", headers={"Location": "/loop"})
            elif path == "/big":
                self._send(200, b"a" * 3_000_000, "text/plain")
            elif path == "/slow":
                time.sleep(3)
                self._send(200, b"slow", "text/plain")
            elif path == "/image":
                self._send(200, b"\x89PNG....", "image/png")
            elif path == "/host":
                self._send(200, self.headers.get("Host", "").encode(), "text/plain")
            else:
                self._send(404, b"not found", "text/plain")

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            path, _ = self._record(body)
            if path == "/tavily/search":
                if self.headers.get("Authorization") != f"Bearer {TAVILY_KEY}":
                    self._send(401, b'{"detail": {"error": "Unauthorized"}}')
                    return
                data = json.loads(body)
                results = [{"title": f"Tavily {i}", "url": f"https://tavily.example/{i}", "content": f"c {i}",
                            "score": 0.9} for i in range(data.get("max_results", 5))]
                self._send(200, json.dumps({"query": data["query"], "results": results, "response_time": 0.1}).encode())
            else:
                self._send(404, b"not found", "text/plain")

    return Handler


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (the fetch timeout tests) is expected, not worth a traceback on stderr.
        pass


@contextmanager
def serve() -> Iterator[FakeWeb]:
    """Run a `FakeWeb` on a free port of 127.0.0.1 for the block."""
    web = FakeWeb()
    server = _Server(("127.0.0.1", 0), _handler(web))
    server.daemon_threads = True
    web.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield web
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
