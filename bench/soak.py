"""Soak: does the service's memory level off under sustained load? ``python bench/soak.py``.

Starts the real service as subprocesses on a free loopback port, in a fresh temporary directory:

* ``--mode serve``: ``loomiq serve --no-auth`` (API and embedded worker in one process);
* ``--mode split``: ``loomiq serve --no-auth`` with ``LOOMIQ_API_WORKERS=0`` plus ``loomiq worker``
  (``--concurrency``) on the same database;

on SQLite (``--db sqlite``, a file in the temporary directory) or PostgreSQL (``--db postgres``,
``--pg-url``, default ``$LOOMIQ_SOAK_PG_URL`` or ``postgresql://postgres@127.0.0.1:5432/test``, in a
schema of its own that is dropped afterwards). No loomiq.yaml: the built-in offline scripted agents.

Scenarios:

* ``tasks`` (default): ``POST /api/tasks`` with ``strategy: parallel`` at ``--rate`` per second for
  ``--duration`` seconds (open loop: request i is due at t0 + i/rate; accept latency is measured from
  the due time). Every ``--sample-s`` seconds the resident memory (VmRSS, /proc) of each service
  process is sampled with the number of tasks accepted and finished so far. After ``--warmup``
  seconds, RSS is fitted against tasks finished by least squares: the slope, in KB per task, is
  the figure (a per-task leak is a positive slope; a one-off growth is not; the second half's slope,
  reported beside it, tells a warm-up tail, such as SQLite's page caches filling, from a leak). Accept latency p50/p99
  per ``--window-s`` window shows whether the service slows down over time.
* ``sse`` / ``ws``: ``--clients`` clients follow tasks that stay running (a scripted agent that
  answers after an hour) over ``GET /api/tasks/{id}/events`` or the WebSocket
  ``/api/tasks/{id}/ws``, read the replayed events, and disconnect abruptly; ``--cycles`` times. RSS
  is sampled after each cycle and fitted against the connections made (KB per connection).

Prints one JSON object. Used by ``tests/test_soak.py`` (short runs asserting the slope).

    python bench/soak.py --mode serve --db sqlite --rate 150 --duration 300
    python bench/soak.py --mode split --db postgres --rate 150 --duration 300
    python bench/soak.py --scenario sse --clients 1000 --cycles 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from api_load import Client, Conn, now, summary  # noqa: E402

NS = 1_000_000_000
COMPRESSION: str | None = os.environ.get("SOAK_WS_COMPRESSION", "deflate") or None
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
HANG_CONFIG = """agents:
  - id: hang
    provider: scripted
    model: scripted
    max_concurrency: 1000
    scripted:
      latency_s: 3600
      replies: ["done."]
"""


class FreshClient(Client):
    """`api_load.Client` that never reuses a connection idle for over `max_idle_s`: the server closes
    keep-alive connections idle for 5 s, and a request sent on one as it closes is reset."""

    max_idle_s = 2.0

    async def request(self, method: str, path: str, payload: Any = None) -> Any:
        t = time.monotonic()
        stale = [c for c in self.idle if t - getattr(c, "idle_since", t) > self.max_idle_s]
        for c in stale:
            self.idle.remove(c)
            c.close()
        response = await super().request(method, path, payload)
        if self.idle:
            self.idle[-1].idle_since = time.monotonic()  # type: ignore[attr-defined]
        return response


def rss_kb(pid: int) -> int:
    """Resident memory of a process in KB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def slope(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope of ys over xs, and the standard error of that slope."""
    n = len(xs)
    if n < 3:
        return 0.0, math.inf
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, math.inf
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    a = my - b * mx
    resid = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return b, math.sqrt(resid / (n - 2) / sxx)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loomiq_exe() -> list[str]:
    exe = Path(sys.executable).parent / "loomiq"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "loomiq.cli"]


@contextlib.contextmanager
def service(args: argparse.Namespace, config: str | None = None) -> Iterator[tuple[str, dict[str, int]]]:
    """The service's URL and its processes' pids ({"api": pid} or {"api": pid, "worker": pid})."""
    root = Path(tempfile.mkdtemp(prefix="loomiq-soak-"))
    schema = None
    if args.db == "postgres":
        schema = f"soak_{secrets.token_hex(4)}"
        db = f"{args.pg_url}{'&' if '?' in args.pg_url else '?'}schema={schema}"
    else:
        db = f"sqlite:///{root / 'soak.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOMIQ_")}
    env.update({
        "LOOMIQ_DATABASE_URL": db,
        "LOOMIQ_RATE_PER_S": "1000000",
        "LOOMIQ_RATE_BURST": "1000000",
        "LOOMIQ_RUN_TIMEOUT_S": "7200",
    })
    if config is not None:
        (root / "loomiq.yaml").write_text(config)
        env["LOOMIQ_CONFIG"] = str(root / "loomiq.yaml")
    if args.probe:
        # bench/soak_probe/sitecustomize.py: each service process writes where its memory is.
        Path(args.probe).mkdir(parents=True, exist_ok=True)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "soak_probe"), env.get("PYTHONPATH")]))
        env["LOOMIQ_SOAK_PROBE"] = str(Path(args.probe).resolve())
        env["LOOMIQ_SOAK_PROBE_S"] = str(args.probe_s)
        if args.probe_tracemalloc:
            env["LOOMIQ_SOAK_PROBE_TRACEMALLOC"] = str(args.probe_tracemalloc)
        if args.probe_trim:
            env["LOOMIQ_SOAK_PROBE_TRIM"] = "1"
        if args.probe_garbage:
            env["LOOMIQ_SOAK_PROBE_GARBAGE"] = "1"
    if args.malloc_arena_max:
        env["MALLOC_ARENA_MAX"] = str(args.malloc_arena_max)
    if args.mode == "split":
        env["LOOMIQ_API_WORKERS"] = "0"
    elif args.api_workers:
        env["LOOMIQ_API_WORKERS"] = str(args.api_workers)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = []
    try:
        log = open(root / "api.log", "wb")  # noqa: SIM115
        logs.append(log)
        procs["api"] = subprocess.Popen(
            [*loomiq_exe(), "serve", "--no-auth", "--port", str(port), "--log-level", "warning"],
            cwd=root, env={**env, "LOOMIQ_SOAK_PROBE_ROLE": "api"}, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if procs["api"].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {(root / 'api.log').read_text()[-2000:]}")
            time.sleep(0.2)
        if args.mode == "split":
            log = open(root / "worker.log", "wb")  # noqa: SIM115
            logs.append(log)
            procs["worker"] = subprocess.Popen(
                [*loomiq_exe(), "worker", "--concurrency", str(args.concurrency), "--database", db],
                cwd=root, env={**env, "LOOMIQ_SOAK_PROBE_ROLE": "worker"}, stdout=log, stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 60
            while b"ready" not in (root / "worker.log").read_bytes():
                if procs["worker"].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start: {(root / 'worker.log').read_text()[-2000:]}")
                time.sleep(0.2)
        yield url, {name: p.pid for name, p in procs.items()}
        args.log_tail = (root / "api.log").read_text(errors="replace")[-1500:]
        if args.db == "sqlite":
            args.files_kb = {f.name: f.stat().st_size // 1024 for f in root.glob("soak.db*")}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
        if schema is not None:
            _drop_schema(args.pg_url, schema)
        shutil.rmtree(root, ignore_errors=True)


def _drop_schema(pg_url: str, schema: str) -> None:
    async def drop() -> None:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(pg_url.split("?")[0])
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    with contextlib.suppress(Exception):
        asyncio.run(drop())


def fit(samples: list[dict[str, Any]], x_key: str, names: list[str], start: float) -> dict[str, Any]:
    """RSS slope per name over samples taken at or after `start` seconds."""
    used = [s for s in samples if s["t"] >= start]
    out: dict[str, Any] = {}
    for name in names:
        xs = [float(s[x_key]) for s in used]
        ys = [float(s["rss_kb"][name]) for s in used]
        b, se = slope(xs, ys)
        half = len(xs) // 2
        late, _ = slope(xs[half:], ys[half:])  # the second half alone: is what is left a warm-up tail?
        out[name] = {
            "kb_per_unit": round(b, 4),
            "stderr": round(se, 4) if math.isfinite(se) else None,
            "kb_per_unit_second_half": round(late, 4),
            "mb_per_100k": round(b * 100_000 / 1024, 2),
            "rss_mb_first": round(ys[0] / 1024, 1) if ys else None,
            "rss_mb_last": round(ys[-1] / 1024, 1) if ys else None,
            "rss_mb_max": round(max(ys) / 1024, 1) if ys else None,
            "samples": len(ys),
            "x_range": [xs[0], xs[-1]] if xs else None,
        }
    return out


PROBE_FIGURES = {
    "rss": ("rss", "VmRSS"),
    "malloc_in_use": ("malloc", "uordblks"),
    "malloc_free": ("malloc", "fordblks"),
    "malloc_mmapped": ("malloc", "hblkhd"),
    "pymalloc_in_use": ("pymalloc", "used"),
    "sqlite_in_use": ("sqlite", "used"),
    "tracemalloc": ("py", "traced"),
}
"""What `probe_fit` reports of each probe line (`bench/soak_probe/sitecustomize.py`), in KB."""


def probe_figures(row: dict[str, Any]) -> dict[str, float]:
    """The figures of one probe line, plus ``in_use`` (glibc malloc's bytes in use, in its heaps and
    mmapped, plus pymalloc's used blocks: memory held, whatever the allocators keep free beside it) and
    ``in_use_outside_sqlite`` (that less SQLite's own, whose page caches and statements have a
    configured bound), and ``rss_outside_sqlite``: RSS less SQLite's own."""
    out: dict[str, float] = {}
    for name, (group, key) in PROBE_FIGURES.items():
        part = row.get(group)
        if isinstance(part, dict) and isinstance(part.get(key), int | float):
            out[name] = float(part[key])
    if "malloc_in_use" in out and "pymalloc_in_use" in out:
        out["in_use"] = out["malloc_in_use"] + out.get("malloc_mmapped", 0.0) + out["pymalloc_in_use"]
        out["in_use_outside_sqlite"] = out["in_use"] - out.get("sqlite_in_use", 0.0)
    if "rss" in out:
        out["rss_outside_sqlite"] = out["rss"] - out.get("sqlite_in_use", 0.0)
    return out


def probe_fit(folder: str, pids: dict[str, int], samples: list[dict[str, Any]], start: float) -> dict[str, Any]:
    """Each probed process's figures fitted against the tasks finished (interpolated at each probe
    line's wall time from the driver's samples), over the lines after `start` seconds of load."""
    timeline = [(s["wall"], float(s["finished"])) for s in samples if s["t"] >= start]
    out: dict[str, Any] = {}
    if len(timeline) < 2:
        return out
    for name, pid in pids.items():
        path = Path(folder) / f"{name}-{pid}.jsonl"
        if not path.exists():
            continue
        points: dict[str, tuple[list[float], list[float]]] = {}
        for line in path.read_text().splitlines():
            row = json.loads(line)
            w = row.get("wall", 0.0)
            if not timeline[0][0] <= w <= timeline[-1][0]:
                continue
            k = next(i for i in range(1, len(timeline)) if timeline[i][0] >= w)
            (w0, f0), (w1, f1) = timeline[k - 1], timeline[k]
            done = f0 + (f1 - f0) * ((w - w0) / (w1 - w0) if w1 > w0 else 0.0)
            for fig, value in probe_figures(row).items():
                xs, ys = points.setdefault(fig, ([], []))
                xs.append(done)
                ys.append(value)
        figs = {}
        for fig, (xs, ys) in points.items():
            b, _ = slope(xs, ys)
            half = len(xs) // 2
            late, _ = slope(xs[half:], ys[half:])
            figs[fig] = {"kb_per_task": round(b, 4), "kb_per_task_second_half": round(late, 4),
                         "mb_first": round(ys[0] / 1024, 1), "mb_last": round(ys[-1] / 1024, 1),
                         "mb_max": round(max(ys) / 1024, 1), "samples": len(xs)}
        out[name] = figs
    return out


async def finished_count(client: Client) -> int:
    stats = (await client.request("GET", "/api/stats")).json()
    by = stats.get("by_status", {})
    return sum(v for k, v in by.items() if k in ("completed", "failed", "cancelled", "timed_out"))


async def scenario_tasks(args: argparse.Namespace, url: str, pids: dict[str, int]) -> dict[str, Any]:
    client = FreshClient(url, None, args.max_conns)
    interval_ns = int(NS / args.rate)
    total = int(round(args.rate * args.duration))
    accepted = [0]
    errors: list[str] = []
    latencies: list[tuple[int, int]] = []  # (due offset ns, latency ns)
    samples: list[dict[str, Any]] = []
    pending: set[asyncio.Task[None]] = set()
    body = {"prompt": "", "strategy": "parallel"}

    async def one(i: int, due: int) -> None:
        try:
            response = await client.request("POST", "/api/tasks", {**body, "prompt": f"soak task {i}: next?"})
        except Exception as exc:
            errors.append(repr(exc)[:200])
            return
        if response.status != 202:
            if len(errors) < 1000:
                errors.append(f"{response.status}: {bytes(response.body[:200]).decode(errors='replace')}")
            return
        accepted[0] += 1
        latencies.append((due - start, now() - due))

    stop = asyncio.Event()

    last_scrape = [0.0]

    async def sampler() -> None:
        while not stop.is_set():
            if args.scrape_s and time.monotonic() - last_scrape[0] >= args.scrape_s:
                # As Prometheus would: a scrape also counts the finished steps the metrics queue (up to
                # 10,000 StepResults, ~6 MB, kept until the next collection: a sawtooth without scrapes).
                last_scrape[0] = time.monotonic()
                with contextlib.suppress(Exception):
                    await client.request("GET", "/metrics")
            with contextlib.suppress(Exception):
                done = await finished_count(client)
                samples.append({
                    "t": round((now() - start) / NS, 2),
                    "wall": round(time.time(), 2),
                    "accepted": accepted[0],
                    "finished": done,
                    "rss_kb": {name: rss_kb(pid) for name, pid in pids.items()},
                    "load": round(os.getloadavg()[0], 2),
                })
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), args.sample_s)

    start = now() + 50_000_000
    sampling = asyncio.create_task(sampler())
    for i in range(total):
        due = start + i * interval_ns
        delay = due - now()
        if delay > 0:
            await asyncio.sleep(delay / NS)
        task = asyncio.create_task(one(i, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=30)
    # Let the workers finish the backlog (sampled too: a leak shows as growth while they do).
    deadline = time.monotonic() + args.drain
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if await finished_count(client) >= accepted[0]:
                break
        await asyncio.sleep(0.5)
    stop.set()
    await sampling
    finished = samples[-1]["finished"] if samples else 0
    client.close()
    windows = []
    w_ns = int(args.window_s * NS)
    for w in range(math.ceil(args.duration / args.window_s)):
        lat = [v for t, v in latencies if w * w_ns <= t < (w + 1) * w_ns]
        s = summary(lat)
        windows.append({"from_s": w * args.window_s, "count": s.get("count", 0),
                        "p50_ms": s.get("p50"), "p99_ms": s.get("p99")})
    return {
        "sent": total,
        "accepted": accepted[0],
        "finished": finished,
        "errors": len(errors),
        "error_samples": errors[:5],
        "accept_latency_ms": summary([v for _, v in latencies]),
        "accept_latency_windows": windows,
        "load_avg_1m": {"min": min((s["load"] for s in samples), default=None),
                        "max": max((s["load"] for s in samples), default=None)},
        "slope_kb_per_task": {k: v for k, v in fit(samples, "finished", list(pids), args.warmup).items()},
        "probe": probe_fit(args.probe, pids, samples, args.warmup) if args.probe else None,
        "samples": samples if args.keep_samples else samples[:: max(1, len(samples) // 40)],
    }


async def _sse_once(url: str, task_id: str) -> None:
    """Open the task's event stream, wait for the first event, and drop the connection."""
    host, port = url.split("//")[1].split(":")
    loop = asyncio.get_running_loop()
    conn = await Conn.open(loop, host, int(port), b"")
    got: asyncio.Future[int] = loop.create_future()

    def on_event(seq: int, kind: str, t: int) -> None:
        if not got.done():
            got.set_result(seq)

    response = conn.send("GET", f"/api/tasks/{task_id}/events", extra=b"Accept: text/event-stream\r\n",
                         on_event=on_event)
    response.done.add_done_callback(lambda f: f.cancelled() or f.exception())  # dropped on purpose
    try:
        await asyncio.wait_for(got, 30)
    finally:
        conn.close()  # abruptly, mid-stream


async def _ws_once(url: str, task_id: str) -> None:
    import websockets

    ws_url = url.replace("http://", "ws://") + f"/api/tasks/{task_id}/ws"
    ws = await websockets.connect(ws_url, open_timeout=30, compression=COMPRESSION)
    try:
        await asyncio.wait_for(ws.recv(), 30)
    finally:
        # Abruptly: no closing handshake, as a client whose network went away.
        ws.transport.abort()


async def scenario_streams(args: argparse.Namespace, url: str, pids: dict[str, int]) -> dict[str, Any]:
    client = FreshClient(url, None)
    ids = []
    for i in range(args.stream_tasks):
        r = await client.request("POST", "/api/tasks", {"prompt": f"held {i}", "strategy": "single",
                                                         "agents": ["hang"]})
        assert r.status == 202, bytes(r.body).decode()
        ids.append(r.json()["id"])
    once = _sse_once if args.scenario == "sse" else _ws_once
    samples = []
    errors: list[str] = []
    made = 0
    gate = asyncio.Semaphore(args.parallel)

    async def guarded(task_id: str) -> None:
        async with gate:
            try:
                await once(url, task_id)
            except Exception as exc:
                errors.append(repr(exc)[:200])

    t0 = now()
    for cycle in range(args.cycles):
        await asyncio.gather(*(guarded(ids[k % len(ids)]) for k in range(args.clients)))
        made += args.clients
        await asyncio.sleep(args.settle_s)
        samples.append({"t": round((now() - t0) / NS, 2), "cycle": cycle, "connections": made,
                        "rss_kb": {name: rss_kb(pid) for name, pid in pids.items()},
                        "fds": {name: len(os.listdir(f"/proc/{pid}/fd")) for name, pid in pids.items()}})
    client.close()
    warm = samples[min(len(samples) - 1, args.warmup_cycles)]["t"] if samples else 0
    return {
        "clients": args.clients,
        "cycles": args.cycles,
        "connections": made,
        "errors": len(errors),
        "error_samples": errors[:5],
        "slope_kb_per_connection": fit(samples, "connections", list(pids), warm),
        "samples": samples,
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", choices=["tasks", "sse", "ws"], default="tasks")
    p.add_argument("--mode", choices=["serve", "split"], default="serve")
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--pg-url", default=os.environ.get("LOOMIQ_SOAK_PG_URL", DEFAULT_PG))
    p.add_argument("--rate", type=float, default=150.0, help="tasks: POSTs per second")
    p.add_argument("--duration", type=float, default=120.0, help="tasks: seconds of load")
    p.add_argument("--warmup", type=float, default=30.0, help="tasks: seconds left out of the fit")
    p.add_argument("--drain", type=float, default=60.0, help="tasks: seconds to wait for the backlog")
    p.add_argument("--sample-s", type=float, default=1.0)
    p.add_argument("--window-s", type=float, default=30.0, help="tasks: latency window")
    p.add_argument("--max-conns", type=int, default=64)
    p.add_argument("--concurrency", type=int, default=8, help="split: the worker's --concurrency")
    p.add_argument("--api-workers", type=int, default=0, help="serve: LOOMIQ_API_WORKERS (0: default)")
    p.add_argument("--keep-samples", action="store_true")
    p.add_argument("--scrape-s", type=float, default=0.0,
                   help="tasks: GET /metrics every so many seconds, as Prometheus would (0: never)")
    p.add_argument("--probe", default="", help="folder: each process writes where its memory is "
                   "(bench/soak_probe/sitecustomize.py; read with bench/soak_probe/report.py)")
    p.add_argument("--probe-s", type=float, default=10.0, help="probe: seconds between samples")
    p.add_argument("--probe-tracemalloc", type=int, default=0, help="probe: tracemalloc frames (0: off)")
    p.add_argument("--probe-trim", action="store_true", help="probe: malloc_trim(0) before each sample")
    p.add_argument("--probe-garbage", action="store_true",
                   help="probe: a full collection at each sample, reporting what was garbage in cycles")
    p.add_argument("--malloc-arena-max", type=int, default=0, help="MALLOC_ARENA_MAX of the service (0: unset)")
    p.add_argument("--clients", type=int, default=1000, help="sse/ws: clients per cycle")
    p.add_argument("--cycles", type=int, default=20, help="sse/ws: connect/disconnect cycles")
    p.add_argument("--parallel", type=int, default=200, help="sse/ws: connections open at once")
    p.add_argument("--stream-tasks", type=int, default=10, help="sse/ws: running tasks followed")
    p.add_argument("--warmup-cycles", type=int, default=3, help="sse/ws: cycles left out of the fit")
    p.add_argument("--settle-s", type=float, default=0.5, help="sse/ws: pause after a cycle before sampling")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = HANG_CONFIG if args.scenario in ("sse", "ws") else None
    if config is not None and not args.api_workers:
        args.api_workers = args.stream_tasks  # every followed task runs (its stream is live)
    with service(args, config) as (url, pids):
        go = scenario_tasks if args.scenario == "tasks" else scenario_streams
        result = asyncio.run(go(args, url, pids))
    result["server_log_tail"] = getattr(args, "log_tail", "")
    if hasattr(args, "log_tail"):
        del args.log_tail
    files = getattr(args, "files_kb", None)
    if files is not None:
        del args.files_kb
        result["sqlite_files_kb"] = files
    return {
        "bench": "soak",
        "scenario": args.scenario,
        "mode": args.mode,
        "db": args.db,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "params": {k: v for k, v in vars(args).items() if k not in ("pg_url", "keep_samples")},
        **result,
    }


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(run(parse(argv))), flush=True)


if __name__ == "__main__":
    main()
