"""What MCP costs in loomiq, both ways. One JSON line per mode.

    python bench/bench_mcp.py --mode client   # a tool call through an MCP server over stdio
    python bench/bench_mcp.py --mode server   # run_task through /mcp against POST /api/tasks

``client``: an agent's tool call (`ToolLoop.call` on the `McpTool`, exactly the agents' path) to
``echo`` of a minimal stdio server (bench/mcp_echo_server.py, no SDK, which reports its own time
per call). Added cost = the call's latency seen by loomiq minus the server's own time: the pipe,
the SDK's client session, and loomiq (validation, footprint, timeout, record). Beside it, the same
call through the bare SDK `Client.call_tool` on the same server (the floor loomiq builds on), in
alternating blocks. Target: added cost p50 under 1 ms.

``server``: the real service on 127.0.0.1 (uvicorn in this process, SQLite task database, one
scripted agent with zero latency, strategy ``single``), no auth (loopback). One run through MCP is
a ``tools/call run_task`` on an open session (submit, follow the task's events, answer); one run
through the API is ``POST /api/tasks`` then its SSE ``/events`` until ``task_finished`` (submit and
follow, the same work). Alternating blocks; target: MCP p50 at most 2 ms above the API's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from loomiq.tools import ToolLoop, ToolRegistry
from loomiq.tools.mcp import McpServerSpec, McpToolSource

ECHO = str(Path(__file__).with_name("mcp_echo_server.py"))
CLIENT_TARGET_MS = 1.0
SERVER_TARGET_MS = 2.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def client_mode(calls: int, block: int) -> dict[str, Any]:
    registry = ToolRegistry(builtins=False)
    registry.add_source(McpToolSource(McpServerSpec("bench", sys.executable, (ECHO,), timeout_s=30)))
    await registry.prepare(["bench"])
    loop = ToolLoop(registry.select(["bench"]))
    params = StdioServerParameters(command=sys.executable, args=[ECHO])
    loomiq_added: list[float] = []
    loomiq_total: list[float] = []
    sdk_added: list[float] = []
    server_own: list[float] = []
    async with Client(params, mode="legacy", cache=None) as bare:
        for _ in range(20):  # warm both paths
            await loop.call("bench__echo", {"text": "x"})
            await bare.call_tool("echo", {"text": "x"})
        done = 0
        while done < calls:
            for _ in range(block):
                started = time.perf_counter_ns()
                record = await loop.call("bench__echo", {"text": "hello"})
                elapsed = time.perf_counter_ns() - started
                assert record.error is None, record.content
                own = record.data["server_ns"]
                loomiq_total.append(elapsed / 1e6)
                loomiq_added.append((elapsed - own) / 1e6)
                server_own.append(own / 1e6)
            for _ in range(block):
                started = time.perf_counter_ns()
                result = await bare.call_tool("echo", {"text": "hello"})
                elapsed = time.perf_counter_ns() - started
                sdk_added.append((elapsed - result.structured_content["server_ns"]) / 1e6)
            done += block
    await registry.aclose()
    p50 = statistics.median(loomiq_added)
    return {
        "mode": "client", "calls": calls,
        "added_ms": {"p50": round(p50, 3), "p90": round(pct(loomiq_added, 0.9), 3),
                     "p99": round(pct(loomiq_added, 0.99), 3)},
        "total_ms_p50": round(statistics.median(loomiq_total), 3),
        "server_own_ms_p50": round(statistics.median(server_own), 4),
        "sdk_client_added_ms_p50": round(statistics.median(sdk_added), 3),
        "loomiq_over_sdk_ms_p50": round(p50 - statistics.median(sdk_added), 3),
        "target_ms": CLIENT_TARGET_MS, "meets_target": p50 < CLIENT_TARGET_MS,
    }


def start_service(tmp: Path) -> tuple[str, Any, threading.Thread]:
    from loomiq.api import Settings, create_app
    from loomiq.api.server import build_server

    config = tmp / "loomiq.yaml"
    config.write_text("agents:\n  - {id: solo, provider: scripted, model: scripted}\n", encoding="utf-8")
    settings = Settings(auth_disabled=True, keys_path=tmp / "keys.db", config_path=config,
                        database_url=f"sqlite:///{tmp}/tasks.db", rate_per_s=1e6, rate_burst=1_000_000,
                        sse_ping_s=0, embedded_workers=4)
    server = build_server("127.0.0.1", 0, settings=settings, app=create_app(settings), log_level="error",
                          gc_tuning=False)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}", server, thread


async def api_run(http: httpx2.AsyncClient, base: str) -> None:
    response = await http.post(f"{base}/api/tasks", json={"prompt": "Ping?", "strategy": "single"})
    task_id = response.json()["id"]
    async with http.stream("GET", f"{base}/api/tasks/{task_id}/events") as events:
        async for line in events.aiter_lines():
            if line.startswith("data:") and '"task_finished"' in line:
                return


async def server_mode(runs: int, block: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        base, server, thread = start_service(Path(tmp))
        mcp_ms: list[float] = []
        api_ms: list[float] = []
        try:
            async with httpx2.AsyncClient(timeout=30) as http, \
                    httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=None)) as mcp_http, \
                    Client(streamable_http_client(f"{base}/mcp", http_client=mcp_http), mode="legacy",
                           cache=None) as mcp:
                for _ in range(10):
                    await api_run(http, base)
                    await mcp.call_tool("run_task", {"prompt": "Ping?", "strategy": "single"})
                done = 0
                while done < runs:
                    for _ in range(block):
                        started = time.perf_counter()
                        result = await mcp.call_tool("run_task", {"prompt": "Ping?", "strategy": "single"})
                        mcp_ms.append((time.perf_counter() - started) * 1000)
                        assert not result.is_error and result.structured_content["status"] == "completed"
                    for _ in range(block):
                        started = time.perf_counter()
                        await api_run(http, base)
                        api_ms.append((time.perf_counter() - started) * 1000)
                    done += block
        finally:
            server.should_exit = True
            thread.join(timeout=20)
    diff = statistics.median(mcp_ms) - statistics.median(api_ms)
    return {
        "mode": "server", "runs": runs,
        "mcp_run_task_ms": {"p50": round(statistics.median(mcp_ms), 3), "p90": round(pct(mcp_ms, 0.9), 3)},
        "api_submit_and_follow_ms": {"p50": round(statistics.median(api_ms), 3), "p90": round(pct(api_ms, 0.9), 3)},
        "mcp_minus_api_ms_p50": round(diff, 3),
        "target_ms": SERVER_TARGET_MS, "meets_target": diff <= SERVER_TARGET_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("client", "server"), required=True)
    parser.add_argument("--n", type=int, default=None, help="calls (client: 2000) or runs (server: 200)")
    parser.add_argument("--block", type=int, default=50)
    args = parser.parse_args()
    if args.mode == "client":
        out = asyncio.run(client_mode(args.n or 2000, args.block))
    else:
        out = asyncio.run(server_mode(args.n or 200, min(args.block, 20)))
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    out.update({"python": platform.python_version(), "cpus": __import__("os").cpu_count(), "load_1m": float(load),
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
