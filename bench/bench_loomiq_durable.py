"""loomiq's durable engine on the peer benchmark (shared/bench-peers), and the engine's own figures.

Harness modes (one JSON line, the harness's format, ``"durable": true``): W1/W2/W3 as in
`bench_loomiq.py`, but every run is a durable task (``Orchestrator.run(..., durable=True)``, i.e.
`TaskEngine.run`): submitted already claimed by this process, each agent call journalled (the call
returns once its row committed, group commit), the events logged, the end recorded.

    python bench/bench_loomiq_durable.py --mode latency      # (a) L=0 and (b) L=50 ms
    python bench/bench_loomiq_durable.py --mode throughput   # (c) 1,000 concurrent durable W2 runs

Engine modes (one JSON line each, ``"framework"`` and ``"mode"`` as above, figures of their own):

    --mode submit     Orchestrator.submit latency (p50/p90 over --runs sequential submissions), and
                      submit -> first event seen by `Orchestrator.events` in the same process, and
                      submit -> task_started with a `Worker` running in the same process
    --mode scaleout   a batch of --batch W2 tasks (L=--lat-ms, default 500) on 1 and then 4 worker
                      processes (each --concurrency 5, default), wall time and speed-up
    --mode worker     (used by scaleout) one worker process
    --mode chain      --chains chains of --length single-agent tasks (L=0), each `after` the previous one,
                      submitted while an in-process `Worker` runs them: finish-to-finish time per link
                      made ready by its parent's end, time and process CPU per chain

Variants: ``--variant sqlite`` (default: a fresh file in a temporary directory, WAL,
synchronous=NORMAL) or ``--variant postgres`` (``$LOOMIQ_BENCH_PG_URL``, else ``$PEERS_PG_URL``,
else ``postgresql://postgres@127.0.0.1:5432/postgres``, in a fresh schema dropped at exit; prints
``SKIP:`` on stderr and exits 3 when the server is unreachable, as the peers' durable scripts do).

Setup (untimed, once per process, harness modes): the resume self-check the durable peers do. A W1
run "dies" at its third model call (`TaskEngine.stop_run(..., "crash")`: nothing more is written,
as after kill -9); a `Worker` on another engine claims it once its lease expires and must finish it
with exactly one model call (the two journalled ones replay). Then one `Orchestrator` with four agents
(``a1``..``a3``, ``lead``) on `HarnessModel` (`_workloads.py`'s, as in `bench_loomiq.py`),
``max_concurrency`` raised as there, and the engine opened on the database with its default settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

from _workloads import (
    ANSWER,
    IMPORT_S,
    MAX_CONCURRENCY,
    TASK,
    W1_AGENTS,
    W2_AGENTS,
    Fake,
    build_orchestrator,
    fake_llm,
    harness,
    observe_engine,
    workloads,
)

t0 = time.perf_counter()
from loomiq.engine import EngineConfig, LeaseLost, Worker  # noqa: E402

IMPORT_S += time.perf_counter() - t0  # loomiq, then its engine


def _opt(flag: str, default: str) -> str:
    if flag in sys.argv:
        i = sys.argv.index(flag)
        val = sys.argv[i + 1]
        del sys.argv[i : i + 2]
        return val
    return default


VARIANT = _opt("--variant", "sqlite")
assert VARIANT in ("sqlite", "postgres"), VARIANT
MODE = sys.argv[sys.argv.index("--mode") + 1] if "--mode" in sys.argv else "latency"
PG_URL = os.environ.get("LOOMIQ_BENCH_PG_URL") or os.environ.get("PEERS_PG_URL") or \
    "postgresql://postgres@127.0.0.1:5432/postgres"
FRAMEWORK = f"loomiq durable ({'sqlite' if VARIANT == 'sqlite' else 'postgres'})"


ORCH = build_orchestrator()


# -- the database ---------------------------------------------------------------------------------

_TMPDIR: str | None = None
_SCHEMA: str | None = None


def database_url() -> str:
    """A fresh database for this process (created lazily; removed at exit)."""
    global _TMPDIR, _SCHEMA
    if VARIANT == "sqlite":
        if _TMPDIR is None:
            _TMPDIR = tempfile.mkdtemp(prefix="loomiq-bench-durable-")
        return f"sqlite:///{_TMPDIR}/engine.db"
    if _SCHEMA is None:
        _SCHEMA = f"bench_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={_SCHEMA}"


async def check_postgres() -> None:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        sys.stderr.write(f"SKIP: Postgres not reachable at {PG_URL}: {exc}\n")
        sys.exit(3)
    await conn.close()


async def drop_database() -> None:
    if _TMPDIR is not None:
        shutil.rmtree(_TMPDIR, ignore_errors=True)
    if _SCHEMA is not None:
        import asyncpg

        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{_SCHEMA}" CASCADE')
        finally:
            await conn.close()


w1, w2, w3 = workloads(ORCH, "loomiq durable run", durable=True)


# -- the resume self-check ------------------------------------------------------------------------


async def resume_check(url: str) -> dict[str, Any]:
    """W1 dies at its 3rd model call; a worker resumes it and must make exactly 1 model call."""
    from loomiq.engine.task import new_task_id

    quick = EngineConfig(lease_s=0.3, renew_s=0.1)
    tid = new_task_id()
    n = 0

    async def crashing(prompt: str) -> str:
        nonlocal n
        n += 1
        if n == 3:
            engine.stop_run(tid, "crash")  # as kill -9: nothing more is written for this run
            await asyncio.sleep(3600)
        return await fake_llm(prompt)

    crashed = build_orchestrator(crashing)
    engine = await crashed.open_engine(url, config=quick)
    try:
        run = asyncio.create_task(engine.run(TASK, strategy="sequential", agents=W1_AGENTS, task_id=tid))
        try:
            await run
            raise AssertionError("the injected crash did not happen")
        except LeaseLost:
            pass
    finally:
        await crashed.aclose()
    resumer = build_orchestrator()
    engine = await resumer.open_engine(url, config=quick)
    try:
        journalled = await engine.store.journal(tid)
        assert len(journalled) == 2, journalled  # the two finished calls
        before = Fake.calls
        worker = Worker(engine, concurrency=1)
        runner = asyncio.create_task(worker.run())
        task = await engine.wait(tid, timeout_s=30)
        await worker.stop()
        await runner
        calls = Fake.calls - before
        assert task.status == "completed" and ANSWER in task.output, task
        assert calls == 1, f"the resumed run made {calls} model calls"
        statuses = [a.status for a in await engine.attempts(tid)]
        assert statuses == ["lost", "completed"], statuses
        assert len(await engine.store.journal(tid)) == 3
    finally:
        await resumer.aclose()
    return {"resumed_calls": calls, "attempts": statuses}


async def setup() -> None:
    if VARIANT == "postgres":
        await check_postgres()
    url = database_url()
    await resume_check(url)
    await ORCH.open_engine(url)
    observe_engine(ORCH)


async def teardown() -> None:
    await ORCH.aclose()
    await drop_database()


# -- engine modes ---------------------------------------------------------------------------------


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_us": round(statistics.median(samples) * 1e6, 1),
        "p90_us": round(_pct(samples, 0.9) * 1e6, 1),
        "p99_us": round(_pct(samples, 0.99) * 1e6, 1),
        "mean_us": round(statistics.fmean(samples) * 1e6, 1),
        "n": len(samples),
    }


async def submit_mode(runs: int) -> dict[str, Any]:
    if VARIANT == "postgres":
        await check_postgres()
    url = database_url()
    engine = await ORCH.open_engine(url)
    submit = ORCH.submit
    try:
        # With a worker in this process: submit -> task_started (picked up) and -> task_finished, L=0.
        Fake.latency = 0.0
        worker = Worker(engine, concurrency=16)
        runner = asyncio.create_task(worker.run())
        picked, done = [], []
        try:
            for i in range(runs + 20):
                t = time.perf_counter()
                tid = (await submit(TASK, strategy="parallel", agents=W2_AGENTS)).id
                stream = ORCH.events(tid)
                started_at = None
                async for event in stream:
                    if event.type == "task_started" and started_at is None:
                        started_at = time.perf_counter()
                    if event.type == "task_finished":
                        break
                finished_at = time.perf_counter()
                await stream.aclose()  # type: ignore[attr-defined]
                if i >= 20 and started_at is not None:
                    picked.append(started_at - t)
                    done.append(finished_at - t)
        finally:
            await worker.stop()
            await runner

        # No worker: submissions only (they stay queued).
        for _ in range(50):  # warm-up
            await submit(TASK, strategy="parallel", agents=W2_AGENTS)
        lat = []
        for _ in range(runs):
            t = time.perf_counter()
            await submit(TASK, strategy="parallel", agents=W2_AGENTS)
            lat.append(time.perf_counter() - t)

        first = []
        for _ in range(runs):
            t = time.perf_counter()
            tid = (await submit(TASK, strategy="parallel", agents=W2_AGENTS)).id
            stream = ORCH.events(tid)
            event = await anext(stream)
            first.append(time.perf_counter() - t)
            await stream.aclose()  # type: ignore[attr-defined]
            assert event.type == "task_queued", event
    finally:
        await ORCH.aclose()
        await drop_database()
    return {
        "submit": _summary(lat),
        "submit_to_first_event": _summary(first),
        "submit_to_task_started_with_worker": _summary(picked),
        "submit_to_task_finished_with_worker_w2_l0": _summary(done),
    }


async def worker_mode(url: str, concurrency: int, latency_ms: float) -> None:
    Fake.latency = latency_ms / 1000.0
    engine = await ORCH.open_engine(url)
    worker = Worker(engine, concurrency=concurrency)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    runner = loop.create_task(worker.run())
    print(json.dumps({"event": "worker_ready", "pid": os.getpid()}), flush=True)
    try:
        await runner
    finally:
        await ORCH.aclose()
    print(json.dumps({"event": "worker_stopped", "claimed": worker.claimed, "calls": Fake.calls}), flush=True)


async def _batch(url: str, workers: int, batch: int, concurrency: int, latency_ms: float) -> dict[str, Any]:
    procs = []
    claimed = []
    try:
        for _ in range(workers):
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--mode", "worker", "--variant", VARIANT, "--database", url,
                "--concurrency", str(concurrency), "--lat-ms", str(latency_ms),
                stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
            ))
        for p in procs:
            assert p.stdout is not None
            line = await asyncio.wait_for(p.stdout.readline(), 60)
            assert json.loads(line)["event"] == "worker_ready", line
        t = time.perf_counter()
        ids = [s.id for s in await asyncio.gather(*(ORCH.submit(f"{TASK} #{i}", strategy="parallel",
                                                                 agents=W2_AGENTS) for i in range(batch)))]
        submitted = time.perf_counter() - t
        for tid in ids:
            task = await ORCH.wait(tid, timeout_s=600)
            assert task.status == "completed", task
        wall = time.perf_counter() - t
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            out, _ = await asyncio.wait_for(p.communicate(), 60)
            with contextlib.suppress(ValueError, IndexError, KeyError):
                claimed.append(json.loads(out.decode().strip().splitlines()[-1])["claimed"])
    ideal = -(-batch // (workers * concurrency)) * latency_ms / 1000.0
    return {"workers": workers, "tasks": batch, "wall_s": round(wall, 3), "submit_s": round(submitted, 3),
            "ideal_s": ideal, "ratio_to_ideal": round(wall / ideal, 3), "claimed_per_worker": claimed}


async def scaleout_mode(batch: int, concurrency: int, latency_ms: float, counts: list[int]) -> dict[str, Any]:
    if VARIANT == "postgres":
        await check_postgres()
    url = database_url()
    await ORCH.open_engine(url)
    try:
        runs = [await _batch(url, n, batch, concurrency, latency_ms) for n in counts]
    finally:
        await ORCH.aclose()
        await drop_database()
    out: dict[str, Any] = {"runs": runs, "concurrency_per_worker": concurrency, "latency_ms": latency_ms}
    if len(runs) >= 2:
        out["speedup"] = round(runs[0]["wall_s"] / runs[-1]["wall_s"], 3)
    return out


async def chain_mode(chains: int, length: int) -> dict[str, Any]:
    """Chains of `length` single-agent tasks (L=0), each `after` the previous one, submitted one after
    the other while one in-process `Worker` (concurrency 4) runs them (as `bench_workflow_durable.py`'s
    chain): per link whose child was submitted before its parent ended (a dependent made ready by the
    parent's end), the parent's ``finished_at`` to the child's (the engine's own timestamps); per
    chain, the first submission to the tail's end, and the process's CPU time over that."""
    if VARIANT == "postgres":
        await check_postgres()
    url = database_url()
    engine = await ORCH.open_engine(url)
    Fake.latency = 0.0
    links: list[float] = []
    walls: list[float] = []
    cpus: list[float] = []
    try:
        worker = Worker(engine, concurrency=4)
        runner = asyncio.create_task(worker.run())
        try:
            for i in range(chains + 3):  # the first three warm up
                ids: list[str] = []
                previous: list[str] = []
                t, cpu = time.perf_counter(), time.process_time()
                for k in range(length):
                    ids.append((await engine.submit(f"{TASK} link {k}", strategy="single", agents=["a1"],
                                                    after=previous)).task.id)
                    previous = [ids[-1]]
                tail = await engine.wait(ids[-1], timeout_s=60)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - t
                assert tail.status == "completed", tail
                tasks = [await engine.get_task(t) for t in ids]
                if i >= 3:
                    links.extend(b.finished_at - a.finished_at for a, b in zip(tasks, tasks[1:], strict=False)
                                 if b.created_at < a.finished_at)
                    walls.append(wall)
                    cpus.append(cpu)
        finally:
            await worker.stop()
            await runner
    finally:
        await ORCH.aclose()
        await drop_database()
    return {"length": length, "chains": chains, "link": _summary(links),
            "chain_ms_p50": round(statistics.median(walls) * 1000, 2),
            "cpu_ms_per_chain_p50": round(statistics.median(cpus) * 1000, 2)}


def _versions() -> dict[str, str | None]:
    from importlib.metadata import version

    out: dict[str, str | None] = {}
    for p in ("loomiq", "asyncpg"):
        try:
            out[p] = version(p)
        except Exception:  # noqa: BLE001
            out[p] = None
    import sqlite3

    out["sqlite"] = sqlite3.sqlite_version
    return out


def engine_main() -> None:
    runs = int(_opt("--runs", "1000"))
    batch = int(_opt("--batch", "200"))
    concurrency = int(_opt("--concurrency", "5"))
    latency_ms = float(_opt("--lat-ms", "500"))
    url = _opt("--database", "")
    workers = [int(x) for x in _opt("--workers", "1,4").split(",")]
    for flag in ("--lat-runs", "--conc", "--warmup"):  # run.sh passes the harness's knobs to every mode
        _opt(flag, "")
    if MODE == "worker":
        asyncio.run(worker_mode(url, concurrency, latency_ms))
        return
    if MODE == "submit":
        figures = asyncio.run(submit_mode(runs))
    elif MODE == "chain":
        figures = asyncio.run(chain_mode(int(_opt("--chains", "20")), int(_opt("--length", "10"))))
    else:
        figures = asyncio.run(scaleout_mode(batch, concurrency, latency_ms, workers))
    line = {"framework": FRAMEWORK, "mode": MODE, "durable": True, "python": sys.version.split()[0],
            "versions": _versions(), "import_s": round(IMPORT_S, 4), MODE: figures}
    print(json.dumps(line))


if __name__ == "__main__":
    if MODE in ("submit", "scaleout", "worker", "chain"):
        engine_main()
    else:
        harness.main(
            FRAMEWORK,
            ["loomiq"],
            w1,
            w2,
            w3,
            import_s=IMPORT_S,
            setup=setup,
            teardown=teardown,
            durable=True,
            notes=(
                "Orchestrator.run(strategy=sequential|parallel|consensus, durable=True) = TaskEngine.run: "
                "submitted claimed, every agent call journalled (group commit) before it returns, events logged; "
                f"{VARIANT}{' (WAL, synchronous=NORMAL)' if VARIANT == 'sqlite' else ''}, engine defaults; "
                f"4 agents, max_concurrency={MAX_CONCURRENCY} per agent"
            ),
        )
