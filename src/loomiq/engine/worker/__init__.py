"""`Worker`: claims ready tasks and runs them durably; also ``python -m loomiq.engine.worker``.

In a program::

    orch = Orchestrator.from_config()
    engine = await orch.open_engine()
    worker = Worker(engine, concurrency=8)
    task = asyncio.create_task(worker.run())
    ...
    await worker.stop()          # graceful: finish, or hand back what does not finish in drain_s

Stopping. `stop()` (what SIGTERM does in the subprocess) stops claiming, lets the runs in hand finish
for up to `drain_s`, then hands the rest back: their leases are released, so another worker claims
them at once and resumes them from their journals. Cancelling the asyncio task running `run()`
instead behaves like a crash (kill -9): nothing more is written, and the leases expire
(`EngineConfig.lease_s`) before another worker reclaims the tasks.

Claims. A worker claims as many tasks as it has free slots (`concurrency`), expired leases first,
then queued tasks in priority order with aging. It is woken at once by work made in its own process
(a submission, a completed dependency, a retry), by NOTIFY on PostgreSQL, and otherwise looks every
`Store.claim_poll_s` with a cheap read before it takes the write lock.

Subprocess::

    python -m loomiq.engine.worker --concurrency 8 [--database-url URL] [--config loomiq.yaml]
        [--drain-s 30] [--lease-s 10] [--renew-s 3] [--worker-id ID]

(the package's ``__main__`` module, which calls `main`) prints one JSON line ``{"event":
"worker_ready", ...}`` once it claims, and exits 0 after SIGTERM or SIGINT once its tasks are
finished or handed back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from ...runtime.options import count, non_negative_seconds, positive_seconds
from .. import _ops
from .._ops import Claim
from ..engine import EngineConfig, TaskEngine
from ..errors import EngineClosed
from ..task import WorkerID

logger = logging.getLogger("loomiq.engine")


class Worker:
    """Runs tasks from the engine's store, up to `concurrency` at a time (see the module docstring).

    Args:
        engine: the engine (its runner's agents run the tasks).
        concurrency: the most tasks this worker runs at once.
        worker_id: its lease-holder id (default: host, pid and a random suffix).
        drain_s: how long `stop()` lets runs in hand finish before handing them back.
        heartbeat_s: how often the worker's heartbeat row is updated.
    """

    def __init__(
        self,
        engine: TaskEngine,
        *,
        concurrency: int = 4,
        worker_id: str | None = None,
        drain_s: float = 30.0,
        heartbeat_s: float | None = None,
    ) -> None:
        count("concurrency", concurrency, minimum=1, maximum=100_000)
        non_negative_seconds("drain_s", drain_s)
        if heartbeat_s is not None:
            positive_seconds("heartbeat_s", heartbeat_s)
        self.engine = engine
        self.concurrency = concurrency
        self.id = WorkerID(worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
        self.drain_s = drain_s
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else engine.config.renew_s
        self.claimed = 0
        """Claims made so far (resumptions included)."""
        self._runs: dict[asyncio.Task[object], str] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._crashed = False
        self._stopped = asyncio.Event()
        self._running = False
        self.registered = asyncio.Event()
        """Set once `run` has written this worker's row: the database takes its writes (a read-only or
        corrupt one makes `run` raise instead). Report the worker ready only then (`until_registered`)."""

    async def until_registered(self, runner: asyncio.Task[None]) -> None:
        """Wait until `runner` (the task of `run`) has registered this worker; raises what `run` raised
        when it ended first (a database that refuses writes)."""
        ready = asyncio.ensure_future(self.registered.wait())
        try:
            await asyncio.wait({runner, ready}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if not self.registered.is_set():
            await runner  # (it ended without registering: its error, if any, is raised here)

    @property
    def running(self) -> list[str]:
        """Ids of the tasks this worker runs now."""
        return list(self._runs.values())

    async def run(self) -> None:
        """Claim and run tasks until `stop()`; cancelling this coroutine is a crash (see module docs)."""
        engine, store = self.engine, self.engine.store
        d = store.dialect
        self._running = True
        self._stopped.clear()
        store.hub.work_listeners.add(self._wake.set)
        try:
            await store.run_op(_ops.register_worker(
                d, self.id, socket.gethostname(), os.getpid(), self.concurrency, time.time()
            ))
            self.registered.set()
            next_beat = time.monotonic() + self.heartbeat_s
            while not self._stopping:
                self._wake.clear()
                free = self.concurrency - len(self._runs)
                try:
                    if free > 0:
                        now = time.time()
                        claims: list[Claim] = []
                        if await store.has_claimable(now):
                            cfg = engine.config
                            out = await store.run_op(_ops.claim(d, self.id, free, now, cfg.lease_s, cfg.max_running),
                                                     fence="*")
                            claims = out.value
                        for c in claims:
                            self._start(c)
                        if claims and len(claims) == free:
                            continue  # there may be more: claim again once slots free up
                    if time.monotonic() >= next_beat:
                        next_beat = time.monotonic() + self.heartbeat_s
                        await store.run_op(_ops.heartbeat(d, self.id, len(self._runs), time.time()))
                except EngineClosed:
                    raise
                except Exception:  # noqa: BLE001 - a database hiccup: keep the runs, try again next poll
                    logger.exception("worker %s: claiming failed; retrying", self.id)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(store.claim_poll_s):
                        await self._wake.wait()
        except asyncio.CancelledError:
            # A crash: stop every run without writing anything more (and start none: a task an end
            # claims meanwhile is left to its lease, as after a crash).
            self._crashed = True
            runs = list(self._runs)
            for t in runs:
                engine.stop_run(self._runs[t], "crash")
            await asyncio.gather(*runs, return_exceptions=True)
            raise
        finally:
            store.hub.work_listeners.discard(self._wake.set)
            self._running = False
            if not self._stopping:
                self._stopped.set()
        await self._drain()

    def _start(self, claim: Claim) -> None:
        self.claimed += 1
        t = asyncio.get_running_loop().create_task(
            self.engine.execute_claim(claim, self.id, next_claims=self), name=f"loomiq-task-{claim.task.id}"
        )
        self._runs[t] = claim.task.id
        t.add_done_callback(self._finished)

    def wants_next(self) -> bool:
        """A run's end claims the next task for this worker unless it is stopping (`NextClaims`)."""
        return not self._stopping

    def adopt(self, claims: list[Claim]) -> None:
        """Run the tasks a run's end claimed for this worker, in the slot that run frees (`NextClaims`)."""
        if self._crashed:
            return
        ending = asyncio.current_task()
        if ending is not None:
            self._runs.pop(ending, None)  # its end has committed: its slot is the new run's
        for c in claims:
            self._start(c)

    def _finished(self, t: asyncio.Task[object]) -> None:
        self._runs.pop(t, None)
        if not t.cancelled():
            t.exception()  # retrieved here; execute_claim records failures itself
        self._wake.set()

    async def _drain(self) -> None:
        engine = self.engine
        try:
            # (A run ending meanwhile may hand its slot a task its end claimed: wait for that one too.)
            deadline = time.monotonic() + self.drain_s
            while self._runs and (left := deadline - time.monotonic()) > 0:
                await asyncio.wait(list(self._runs), timeout=left)
            pending = list(self._runs)
            for t in pending:
                engine.stop_run(self._runs.get(t, ""), "hand_back")
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            await engine.store.run_op(_ops.heartbeat(engine.store.dialect, self.id, 0, time.time(), "stopped"))
        finally:
            self._stopped.set()

    def request_stop(self) -> None:
        """Ask `run()` to stop (safe from a signal handler); `stop()` also waits for it."""
        self._stopping = True
        self._wake.set()

    async def stop(self, drain_s: float | None = None) -> None:
        """Stop claiming; let runs in hand finish for `drain_s` (default: the worker's), hand back the
        rest; return once `run()` has ended."""
        if drain_s is not None:
            self.drain_s = drain_s
        self.request_stop()
        if self._running or not self._stopped.is_set():
            await self._stopped.wait()


async def _main(args: argparse.Namespace) -> int:
    from ...agents import AgentRegistry
    from ...config import load_agents, load_tools
    from ...strategies import StrategyRunner
    from ..store import database_url
    from ..workflow_runs import WorkflowRuns

    where = Path(args.config) if args.config else None
    registry = AgentRegistry(load_agents(where))
    tools = load_tools(where)  # the built-ins' settings and MCP servers of loomiq.yaml
    tools.set_default("knowledge", "database_url", database_url(args.database_url))  # the tasks' database
    limit = {} if args.max_running is None else {"max_running": args.max_running}  # else $LOOMIQ_MAX_RUNNING
    config = EngineConfig(lease_s=args.lease_s, renew_s=args.renew_s, aging_s=args.aging_s, **limit)
    strategies = StrategyRunner(registry, tools)
    engine = await TaskEngine.open(strategies, args.database_url, config=config)
    try:
        await engine.load_tenant_agents(where)  # the agents registered over the API
        worker = Worker(engine, concurrency=args.concurrency, worker_id=args.worker_id, drain_s=args.drain_s)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.request_stop)
        runner = loop.create_task(worker.run())
        # Workflow runs are driven by every live worker (their node tasks' ends, deadlines, retries).
        driver = loop.create_task(WorkflowRuns(engine).serve(), name="loomiq-workflow-driver")
        await worker.until_registered(runner)
        print(json.dumps({"event": "worker_ready", "worker_id": worker.id, "pid": os.getpid(),
                          "concurrency": worker.concurrency}), flush=True)
        try:
            await runner
        finally:
            driver.cancel()
            await asyncio.gather(driver, return_exceptions=True)
    finally:
        await engine.close()
        await asyncio.gather(*(a.model.aclose() for a in registry))
        await strategies.tools.aclose()
        await tools.aclose_tools()
    print(json.dumps({"event": "worker_stopped", "worker_id": worker.id, "claimed": worker.claimed}), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m loomiq.engine.worker`` (and of the CLI's ``loomiq worker``)."""
    p = argparse.ArgumentParser(prog="loomiq worker", description="Run durable loomiq tasks.")
    p.add_argument("--concurrency", type=int, default=4, help="tasks run at once (default 4)")
    p.add_argument("--database-url", default=None, help="default: $LOOMIQ_DATABASE_URL or sqlite:///loomiq.db")
    p.add_argument("--config", default=None, help="loomiq.yaml (default: $LOOMIQ_CONFIG or ./loomiq.yaml)")
    p.add_argument("--worker-id", default=None)
    p.add_argument("--drain-s", type=float, default=30.0, help="on SIGTERM, wait this long before handing back")
    p.add_argument("--lease-s", type=float, default=10.0)
    p.add_argument("--renew-s", type=float, default=3.0)
    p.add_argument("--aging-s", type=float, default=60.0)
    p.add_argument("--max-running", type=int, default=None,
                   help="the most tasks running at once on the whole database (default: $LOOMIQ_MAX_RUNNING)")
    args = p.parse_args(argv)
    return asyncio.run(_main(args))
