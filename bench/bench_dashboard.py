"""The dashboard's server time with 100,000 tasks in the database, and what 50 open dashboards cost the
task throughput of the same server.

    python bench/bench_dashboard.py                  # one JSON line
    DASH_TASKS=20000 python bench/bench_dashboard.py # a smaller database

Setup (untimed): a SQLite database with DASH_TASKS tasks of tenant ``acme`` submitted through the engine, then
spread over the last 7 days (created/started/finished times rewritten in SQL; 90% completed, 5% failed, the
rest queued), so the overview's hour holds about 600 of them. Pages are requested in process (ASGI, the
real app with its lifespan), each DASH_REPS times after one warm-up; the figure is the server's time per
page (p50 and p95), which includes the client's small overhead. The overview's figures and the task list
are read once a second or two per tenant and shared by every dashboard of the tenant (so a repeated
request mostly measures rendering); the first request of each page reads the database.

Throughput: DASH_RUNS tasks submitted at once to the server's embedded workers (offline scripted agents,
zero latency), timed to the last completion, first alone and then while 50 simulated dashboards poll as
the pages do (the overview fragment every 5 s, the task list every 2 s: 35 requests/s).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import httpx2

from loomiq import Orchestrator
from loomiq.api import Settings, create_app
from loomiq.api.auth import issue_token

TASKS = int(os.environ.get("DASH_TASKS", "100000"))
REPS = int(os.environ.get("DASH_REPS", "20"))
RUNS = int(os.environ.get("DASH_RUNS", "400"))
SECRET = "bench-secret-" + "x" * 40
PAGES = ["/ui", "/ui/fragments/overview", "/ui/tasks", "/ui/fragments/tasks", "/ui/tasks/{task}", "/ui/agents",
         "/ui/workflows", "/ui/approvals", "/ui/alerts"]


async def fill(db: Path) -> str:
    orch = Orchestrator.from_config()
    await orch.open_engine(f"sqlite:///{db}")
    last = ""
    try:
        batch = 2000
        for start in range(0, TASKS, batch):
            done = await asyncio.gather(*(orch.submit(f"task {i}", strategy="single", tenant_id="acme")
                                          for i in range(start, min(TASKS, start + batch))))
            last = done[-1].task.id
    finally:
        await orch.aclose()
    now = time.time()
    rng = random.Random(7)
    con = sqlite3.connect(db)
    rows = con.execute("SELECT id FROM tasks").fetchall()
    updates = []
    for (tid,) in rows:
        created = now - rng.uniform(0, 7 * 86400)
        r = rng.random()
        status = "completed" if r < 0.9 else "failed" if r < 0.95 else "queued"
        started = created + 0.01 if status != "queued" else None
        finished = created + rng.uniform(0.2, 5) if status != "queued" else None
        updates.append((status, created, started, finished, rng.uniform(0, 0.01) if finished else 0, tid))
    con.executemany("UPDATE tasks SET status=?, created_at=?, started_at=?, finished_at=?, cost_usd=? WHERE id=?",
                    updates)
    con.commit()
    con.close()
    return last


async def page_times(db: Path, task_id: str) -> dict[str, dict[str, float]]:
    settings = Settings(jwt_secret=SECRET, keys_path=db.with_suffix(".keys"), database_url=f"sqlite:///{db}",
                        embedded_workers=0, rate_per_s=1e6, rate_burst=10**6)
    app = create_app(settings)
    token = issue_token("acme", "admin", settings=settings)
    out = {}
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            login = await client.post("/ui/login", data={"credential": token, "next": "/ui"})
            assert login.status_code == 303, login.text
            for page in PAGES:
                path = page.format(task=task_id)
                t0 = time.perf_counter()
                assert (await client.get(path)).status_code == 200, path
                cold = (time.perf_counter() - t0) * 1000
                times = []
                for _ in range(REPS):
                    t0 = time.perf_counter()
                    response = await client.get(path)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert response.status_code == 200
                times.sort()
                out[page] = {"first_ms": round(cold, 2), "p50_ms": round(statistics.median(times), 2),
                             "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2)}
    return out


async def throughput(db: Path, dashboards: int) -> float:
    settings = Settings(jwt_secret=SECRET, keys_path=db.with_suffix(".keys"), database_url=f"sqlite:///{db}",
                        embedded_workers=8, rate_per_s=1e6, rate_burst=10**6)
    app = create_app(settings, orchestrator=Orchestrator.from_config())
    token = issue_token("acme", "admin", settings=settings)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx2.AsyncClient(transport=transport, base_url="http://t",
                                      headers={"Authorization": f"Bearer {token}"}) as api:
            stop = asyncio.Event()

            async def dashboard(i: int) -> None:
                async with httpx2.AsyncClient(transport=transport, base_url="http://t") as ui:
                    await ui.post("/ui/login", data={"credential": token, "next": "/ui"})
                    await asyncio.sleep(i * 0.04)
                    tick = 0
                    while not stop.is_set():
                        await ui.get("/ui/fragments/tasks")
                        if tick % 5 == 0:
                            await ui.get("/ui/fragments/overview")
                        tick += 2
                        try:
                            await asyncio.wait_for(stop.wait(), 2)
                        except TimeoutError:
                            pass

            pollers = [asyncio.create_task(dashboard(i)) for i in range(dashboards)]
            await asyncio.sleep(2 if dashboards else 0)
            t0 = time.perf_counter()
            ids = [(await api.post("/api/tasks", json={"prompt": f"run {i}", "strategy": "single"})).json()["id"]
                   for i in range(RUNS)]
            orch = app.state.loomiq.orchestrator
            for task_id in ids:
                await orch.wait(task_id, timeout_s=300)
            elapsed = time.perf_counter() - t0
            stop.set()
            await asyncio.gather(*pollers)
    return RUNS / elapsed


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "dash.db"
        t0 = time.perf_counter()
        last = await fill(db)
        fill_s = time.perf_counter() - t0
        pages = await page_times(db, last)
        alone_runs, ui_runs = [], []
        for i in range(3):  # alternating, each on a fresh database
            alone_runs.append(await throughput(Path(tmp) / f"a{i}.db", 0))
            ui_runs.append(await throughput(Path(tmp) / f"u{i}.db", 50))
        alone, with_ui = statistics.median(alone_runs), statistics.median(ui_runs)
    print(json.dumps({
        "bench": "dashboard", "tasks_in_db": TASKS, "fill_s": round(fill_s, 1), "reps": REPS, "pages": pages,
        "max_p50_ms": max(p["p50_ms"] for p in pages.values()),
        "max_first_ms": max(p["first_ms"] for p in pages.values()),
        "throughput_runs_per_s": {"alone": round(alone, 1), "with_50_dashboards": round(with_ui, 1),
                                  "change_pct": round((with_ui - alone) / alone * 100, 1)},
        "machine": f"{os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
    }))


if __name__ == "__main__":
    asyncio.run(main())
