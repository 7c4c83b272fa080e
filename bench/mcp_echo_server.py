"""A minimal stdio MCP server for bench_mcp.py: JSON-RPC lines in, lines out, no SDK. Its one tool,
``echo``, returns its argument and the server's own time for the call (from the request line read to
just before the response is written), so the benchmark can take it out of what it measures."""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    out = sys.stdout
    for line in sys.stdin:
        started = time.perf_counter_ns()
        message = json.loads(line)
        method, ident = message.get("method"), message.get("id")
        if ident is None:
            continue  # a notification (initialized)
        if method == "initialize":
            result = {"protocolVersion": message["params"]["protocolVersion"], "capabilities": {"tools": {}},
                      "serverInfo": {"name": "bench-echo", "version": "1"}}
        elif method == "tools/list":
            result = {"tools": [{"name": "echo", "description": "Echo a text.", "annotations": {"readOnlyHint": True},
                                 "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                                                 "required": ["text"]}}]}
        elif method == "tools/call":
            text = message["params"]["arguments"]["text"]
            server_ns = time.perf_counter_ns() - started
            result = {"content": [{"type": "text", "text": text}], "structuredContent": {"server_ns": server_ns}}
        else:
            out.write(json.dumps({"jsonrpc": "2.0", "id": ident, "error": {"code": -32601, "message": method}}) + "\n")
            out.flush()
            continue
        out.write(json.dumps({"jsonrpc": "2.0", "id": ident, "result": result}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
