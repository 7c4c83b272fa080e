"""What 50 open dashboards cost a real `loomiq serve`: task throughput with 0 and with 50 dashboards, the
dashboards polling from OTHER processes exactly as the pages do.

    python bench/bench_dashboard_procs.py          # one JSON line; DASH_RUNS=1000 DASH_REPS=4 DASH_PROCS=5

Setup (untimed): `loomiq serve` in a subprocess on a fresh SQLite database (JWT auth, rate limit raised so the
bench's own requests are never refused, LOOMIQ_API_WORKERS=8, the built-in offline agents: zero latency), then
DASH_PRE tasks so the lists are not empty.

A dashboard is one signed-in browser session (its own cookie) on one page, doing what the page's htmx and
app.js do (src/loomiq/api/ui/templates, static/app.js): it loads the page and its three static files, then
- overview (20 of 50): ``/ui/fragments/overview`` every 5 s;
- tasks (20): ``/ui/fragments/tasks`` every 2 s;
- agents (5): ``/ui/fragments/agents`` every 5 s;
- a task's page (5): the newest task's page, its SSE stream ``/ui/tasks/{id}/stream`` held open and read, and
  ``/ui/fragments/tasks/{id}`` every 2 s until the task ends; then it moves to the newest task (read from the
  task list fragment, as a user clicking the first row).
The 50 are spread over DASH_PROCS poller processes (asyncio, one HTTP client per dashboard), started 2 s before
a timed batch and stopped after it.

Timed: DASH_RUNS tasks POSTed to ``/api/tasks`` by this process (8 at a time), to the moment the server lists
none queued or running (polled every 50 ms); runs/s. The settings 0 and 50 alternate, DASH_REPS times each, on
the same server. Also reported: the server's CPU seconds per batch (from /proc) and the pollers' requests and CPU;
and first, with no task running, the server's CPU (percent of one core over DASH_IDLE_S=10 s, twice) with 0 and
with 50 dashboards: what the dashboards alone cost it, free of the run-queue effects of a shared machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2

RUNS = int(os.environ.get("DASH_RUNS", "1000"))
REPS = int(os.environ.get("DASH_REPS", "4"))
PROCS = int(os.environ.get("DASH_PROCS", "5"))
DASHBOARDS = int(os.environ.get("DASH_N", "50"))
PRE = int(os.environ.get("DASH_PRE", "100"))
IDLE_S = float(os.environ.get("DASH_IDLE_S", "10"))
SECRET = "bench-dashboard-secret-" + "y" * 40
MIX = (("overview", 20), ("tasks", 20), ("agents", 5), ("task", 5))
"""Pages of the 50 dashboards (scaled to DASH_N)."""
TASK_LINK = re.compile(r'href="/ui/tasks/([A-Za-z0-9_.-]+)"')


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the pollers (run as `python bench_dashboard_procs.py --poll BASE TOKEN PAGES`) -------------------------

async def _dashboard(base: str, token: str, page: str, offset: float, stop: asyncio.Event,
                     counts: dict[str, int]) -> None:
    async with httpx2.AsyncClient(base_url=base, timeout=30) as ui:
        login = await ui.post("/ui/login", data={"credential": token, "next": "/ui"})
        assert login.status_code == 303, login.text

        async def get(path: str) -> httpx2.Response:
            response = await ui.get(path, headers={"HX-Request": "true"} if "/fragments/" in path else None)
            counts["requests"] += 1
            if response.status_code != 200:
                counts["errors"] += 1
            return response

        async def wait(seconds: float) -> bool:
            try:
                await asyncio.wait_for(stop.wait(), seconds)
            except TimeoutError:
                return False
            return True

        async def load(path: str) -> None:
            await get(path)
            await get("/ui/static/htmx.min.js")
            await get("/ui/static/app.js")
            await get("/ui/static/app.css")

        await asyncio.sleep(offset)
        if page in ("overview", "tasks", "agents"):
            path, fragment, every = {"overview": ("/ui", "/ui/fragments/overview", 5.0),
                                     "tasks": ("/ui/tasks", "/ui/fragments/tasks", 2.0),
                                     "agents": ("/ui/agents", "/ui/fragments/agents", 5.0)}[page]
            await load(path)
            while not await wait(every):
                await get(fragment)
            return
        while not stop.is_set():  # a task's page: follow the newest task
            rows = await get("/ui/fragments/tasks")
            found = TASK_LINK.search(rows.text)
            if found is None:
                if await wait(2.0):
                    return
                continue
            task_id = found.group(1)
            await load(f"/ui/tasks/{task_id}")
            streamed = asyncio.create_task(_stream(ui, f"/ui/tasks/{task_id}/stream", counts))
            try:
                while not await wait(2.0):
                    detail = await get(f"/ui/fragments/tasks/{task_id}")
                    if streamed.done() or 'hx-trigger="every 2s"' not in detail.text:
                        break
            finally:
                streamed.cancel()
                await asyncio.gather(streamed, return_exceptions=True)
            if not stop.is_set() and await wait(1.0):
                return


async def _stream(ui: httpx2.AsyncClient, path: str, counts: dict[str, int]) -> None:
    async with ui.stream("GET", path) as response:
        counts["streams"] += 1
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                counts["sse_events"] += 1
                if line.endswith("task_finished"):
                    return


async def _poll(base: str, token: str, pages: list[str], first: int) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    counts = {"requests": 0, "errors": 0, "streams": 0, "sse_events": 0}
    await asyncio.gather(*(_dashboard(base, token, page, (first + i) * 0.04, stop, counts)
                           for i, page in enumerate(pages)))
    print(json.dumps(counts), flush=True)


# -- the bench ------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pages(n: int) -> list[str]:
    pages = []
    for page, count in MIX:
        pages += [page] * round(count * n / 50)
    return pages[:n]


async def _idle(api: httpx2.AsyncClient) -> None:
    while True:
        page = (await api.get("/api/tasks", params={"status": ["queued", "running", "waiting"], "limit": 1})).json()
        if not page["tasks"]:
            return
        await asyncio.sleep(0.05)


async def _batch(api: httpx2.AsyncClient, runs: int) -> float:
    t0 = time.perf_counter()
    todo = iter(range(runs))

    async def submitter() -> None:
        for i in todo:
            accepted = await api.post("/api/tasks", json={"prompt": f"run {i}", "strategy": "single"})
            assert accepted.status_code == 202, accepted.text

    await asyncio.gather(*(submitter() for _ in range(8)))
    await _idle(api)
    return time.perf_counter() - t0


def _start_pollers(base: str, token: str, n: int) -> list[subprocess.Popen[str]]:
    pages = _pages(n)
    per = -(-len(pages) // PROCS) if pages else 0
    procs = []
    for p in range(PROCS):
        mine = pages[p * per:(p + 1) * per]
        if mine:
            procs.append(subprocess.Popen([sys.executable, __file__, "--poll", base, token, ",".join(mine),
                                           str(p * per)], stdout=subprocess.PIPE, text=True))
    return procs


def _start_server(port: int, cwd: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "loomiq.cli", "serve", "--port", str(port)], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def main() -> None:
    from loomiq.api import Settings
    from loomiq.api.auth import issue_token

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("OTEL_")
               and k != "LOOMIQ_CONFIG"}
        env.update(LOOMIQ_JWT_SECRET=SECRET, LOOMIQ_DATABASE_URL=f"sqlite:///{tmp}/dash.db", LOOMIQ_RATE_PER_S="1e6",
                   LOOMIQ_RATE_BURST="1000000", LOOMIQ_API_WORKERS="8", LOOMIQ_ALLOW_MODEL_REQUESTS="0", NO_COLOR="1")
        server = _start_server(port, tmp, env)
        token = issue_token("acme", "admin", settings=Settings(jwt_secret=SECRET))
        results: dict[int, list[float]] = {0: [], DASHBOARDS: []}
        server_cpu: dict[int, list[float]] = {0: [], DASHBOARDS: []}
        poller_stats: list[dict[str, Any]] = []
        idle_cpu: dict[int, list[float]] = {0: [], DASHBOARDS: []}
        try:
            async with httpx2.AsyncClient(base_url=base, timeout=60,
                                          headers={"Authorization": f"Bearer {token}"}) as api:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if (await api.get("/api/ready")).status_code == 200:
                            break
                    except httpx2.HTTPError:
                        pass
                    assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
                    await asyncio.sleep(0.2)
                await _batch(api, PRE)  # warm-up, and rows for the lists
                for _ in range(2):  # what the dashboards alone cost the server: its CPU with no task running
                    for n in (0, DASHBOARDS):
                        pollers = _start_pollers(base, token, n)
                        await asyncio.sleep(2 + 0.04 * n)
                        c0, t0 = _cpu_s(server.pid), time.perf_counter()
                        await asyncio.sleep(IDLE_S)
                        idle_cpu[n].append((_cpu_s(server.pid) - c0) / (time.perf_counter() - t0) * 100)
                        for p in pollers:
                            p.send_signal(signal.SIGTERM)
                        for p in pollers:
                            p.communicate(timeout=60)
                for rep in range(REPS):
                    for n in ((0, DASHBOARDS) if rep % 2 == 0 else (DASHBOARDS, 0)):
                        pollers = _start_pollers(base, token, n)
                        if pollers:
                            await asyncio.sleep(2 + 0.04 * n)  # all signed in and polling
                        c0, p0 = _cpu_s(server.pid), sum(_cpu_s(p.pid) for p in pollers)
                        elapsed = await _batch(api, RUNS)
                        c1, p1 = _cpu_s(server.pid), sum(_cpu_s(p.pid) for p in pollers)
                        results[n].append(RUNS / elapsed)
                        server_cpu[n].append(c1 - c0)
                        counts = {"requests": 0, "errors": 0, "streams": 0, "sse_events": 0}
                        for p in pollers:
                            p.send_signal(signal.SIGTERM)
                        for p in pollers:
                            out, _ = p.communicate(timeout=60)
                            for key, value in json.loads(out.strip().splitlines()[-1]).items():
                                counts[key] += value
                        if pollers:
                            poller_stats.append({**counts, "seconds": round(elapsed, 2),
                                                 "poller_cpu_s": round(p1 - p0, 2)})
        finally:
            server.terminate()
            server.wait(30)
    alone, with_ui = statistics.median(results[0]), statistics.median(results[DASHBOARDS])
    print(json.dumps({
        "bench": "dashboard_procs", "runs_per_batch": RUNS, "reps": REPS, "dashboards": DASHBOARDS,
        "poller_processes": PROCS, "pages": dict(MIX),
        "runs_per_s": {"0": [round(x, 1) for x in results[0]], str(DASHBOARDS): [round(x, 1) for x in
                                                                                   results[DASHBOARDS]]},
        "median_runs_per_s": {"0": round(alone, 1), str(DASHBOARDS): round(with_ui, 1)},
        "change_pct": round((with_ui / alone - 1) * 100, 1),
        "server_cpu_s_per_batch": {"0": [round(x, 2) for x in server_cpu[0]],
                                   str(DASHBOARDS): [round(x, 2) for x in server_cpu[DASHBOARDS]]},
        "pollers": poller_stats,
        "idle_server_cpu_pct_of_a_core": {"0": [round(x, 1) for x in idle_cpu[0]],
                                          str(DASHBOARDS): [round(x, 1) for x in idle_cpu[DASHBOARDS]]},
        "machine": f"{os.cpu_count()} cores", "load": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--poll":
        asyncio.run(_poll(sys.argv[2], sys.argv[3], sys.argv[4].split(","), int(sys.argv[5])))
    else:
        asyncio.run(main())
