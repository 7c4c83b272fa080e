"""Helpers of the multi-process engine tests: worker subprocesses whose agents keep a durable ledger,
the checks run over that ledger and the database, and a private PostgreSQL cluster.

Why a ledger of our own. `ScriptedModel.calls` lives in the memory of one process; a worker killed
with SIGKILL takes it along. To prove across processes that no *finished* agent call is paid twice,
the worker subprocesses of these tests run `python -m tests.engine._procs` (the `main` below): an
`Orchestrator` of four agents ``a0``..``a3`` on `LedgerModel` (a `ChatModel` that wraps a
`ScriptedModel` and appends one JSON line per call to a shared file opened with ``O_APPEND``), and a
`Worker`, exactly as ``python -m loomiq.engine.worker`` would run them. A `loomiq.yaml` of scripted
agents could not do this: the scripted model has no file-backed ledger, and the ledger must know the
task and the lease epoch a call ran under, which no model sees. So the entry module wraps two seams
of the engine instance it opened (never the engine's code): `TaskEngine.execute_claim`, to put the
claim's task id and epoch in a context variable the model reads (asyncio copies it into the
strategy's child tasks), and `Store.put_step`, to log whether each journal write committed or was
refused (fencing).

Ledger lines (``ev``): ``start`` (a call began), ``done`` (it returned, before its journal write),
``commit`` / ``refused`` (the journal write committed / was refused: `LeaseLost`). Each carries
task, epoch, agent, pid and time. A ``done`` line whose result never committed (its worker died, or
lost its lease, in between) may be followed by another ``done`` for the same step under a later
epoch; a ``done`` after the step's committed epoch never may.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loomiq import Agent, AgentConfig, ModelRequest, Orchestrator, RetryPolicy, ScriptedModel, ScriptedReply
from loomiq.engine import EngineConfig, LeaseLost, TaskEngine, Worker
from loomiq.models import ModelResponse, StreamPart

REPO = Path(__file__).resolve().parents[2]
AGENTS = ("a0", "a1", "a2", "a3")
"""The agents of every worker here; a consensus over all four has ``a3`` lead (the last one named)."""
STALL_MARK = "[stall]"
"""A prompt containing this makes a worker started with ``--stall-s`` block its event loop (a
synchronous sleep: the process is stuck, not awaiting) at the end of its first call of agent ``a0``
(``--stall-agent``), after the answer came and before it is journalled (ledger line ``stall``)."""

CURRENT: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar("loomiq_test_claim", default=None)
"""(task id, lease epoch) of the run the current asyncio task belongs to (set per claim)."""


# -- the ledger -----------------------------------------------------------------------------------


class Ledger:
    """Appends one JSON line per record to a file shared by processes (``O_APPEND``: each ``write``
    lands whole at the end, whatever the other processes write)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.pid = os.getpid()

    def write(self, ev: str, **fields: Any) -> None:
        line = json.dumps({"ev": ev, "pid": self.pid, "t": time.time(), **fields}, separators=(",", ":"))
        os.write(self._fd, (line + "\n").encode())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_ledger(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete line of the ledger (a line cut short by SIGKILL, if any, is dropped)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.endswith("\n"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
    return out


def _first(path: Path, predicate: Any) -> dict[str, Any] | None:
    try:
        return next((line for line in read_ledger(path) if predicate(line)), None)
    except FileNotFoundError:
        return None


async def wait_ledger(path: Path, predicate: Any, timeout_s: float = 30.0) -> dict[str, Any]:
    """The first ledger line for which `predicate(line)` is true, once it is written."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = _first(path, predicate)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no such ledger line within {timeout_s}s")
        await asyncio.sleep(0.02)


def prompt_hash(request: ModelRequest) -> str:
    return hashlib.blake2s(request.prompt_text().encode(), digest_size=6).hexdigest()


class LedgerModel:
    """A `ChatModel` over a `ScriptedModel` (deterministic replies, random latency in
    [`latency`]) that records every call in the ledger, with the claim it ran under."""

    provider = "scripted"
    offline = True

    def __init__(self, agent_id: str, ledger: Ledger, latency: tuple[float, float], stall_s: float = 0.0,
                 stall_agent: str = "a0",
                 seed: int | None = None) -> None:
        self.agent_id = agent_id
        self.model_name = "ledger"
        self.ledger = ledger
        self.stall_s = stall_s
        self.stall_agent = stall_agent
        self._rng = random.Random(seed)
        lo, hi = latency

        def reply(request: ModelRequest, index: int) -> ScriptedReply:
            # The text depends on the prompt only: a step run again answers the same.
            return ScriptedReply(f"{agent_id} answers {prompt_hash(request)}", latency_s=self._rng.uniform(lo, hi))

        self.inner = ScriptedModel(replies=reply, model_name="ledger")

    def _claim(self) -> tuple[str | None, int | None]:
        claim = CURRENT.get()
        return (claim[0], claim[1]) if claim is not None else (None, None)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        final: ModelResponse | None = None
        async for part in self.stream(request):
            if isinstance(part, ModelResponse):
                final = part
        assert final is not None
        return final

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamPart]:
        task, epoch = self._claim()
        h = prompt_hash(request)
        self.ledger.write("start", task=task, epoch=epoch, agent=self.agent_id, h=h)
        async for part in self.inner.stream(request):
            if isinstance(part, ModelResponse):
                if self.stall_s and self.agent_id == self.stall_agent and STALL_MARK in request.prompt_text():
                    # The answer is in, and the process gets stuck (as in a long GC pause) before it can
                    # journal it: nothing awaits between this sleep and the journal write, so once the
                    # process runs again its first act is that (late) write.
                    stall, self.stall_s = self.stall_s, 0.0
                    self.ledger.write("stall", task=task, epoch=epoch, agent=self.agent_id, h=h)
                    time.sleep(stall)  # noqa: ASYNC251 - on purpose: the whole process is stuck
                self.ledger.write("done", task=task, epoch=epoch, agent=self.agent_id, h=h)
            yield part

    async def aclose(self) -> None:
        return None


def ledger_agents(ledger: Ledger, latency: tuple[float, float], stall_s: float = 0.0,
                  stall_agent: str = "a0") -> list[Agent]:
    """Agents a0..a3 on `LedgerModel`s; no retries, generous concurrency."""
    return [
        Agent(AgentConfig(a, "scripted", "ledger", retry=RetryPolicy(max_attempts=1), max_concurrency=256),
              LedgerModel(a, ledger, latency, stall_s, stall_agent))  # type: ignore[arg-type]
        for a in AGENTS
    ]


def submit_agents() -> list[Agent]:
    """Agents with the workers' ids, for the test process that only submits and inspects."""
    return [
        Agent(AgentConfig(a, "scripted", "ledger", retry=RetryPolicy(max_attempts=1), max_concurrency=256),
              ScriptedModel(replies=[f"{a} (test process)"]))
        for a in AGENTS
    ]


def instrument(engine: TaskEngine, ledger: Ledger, freeze_in_tx_s: float = 0.0) -> None:
    """Wrap this engine instance's seams: claims set `CURRENT`; journal writes log commit/refused.

    With `freeze_in_tx_s` (PostgreSQL only), the first write batch that journals rows of a task whose
    prompt has `STALL_MARK` gets stuck for that long *inside its transaction*, right after it locked
    the task's row (ledger line ``freeze``): a process frozen mid-transaction, for the test to SIGSTOP.
    This wraps a private method of the store (`_write_rows`); it is the only way to stop a process
    at that point deterministically.
    """
    execute_claim = engine.execute_claim
    marked: set[str] = set()

    async def traced(claim: Any, holder: Any, **options: Any) -> Any:
        CURRENT.set((claim.task.id, claim.epoch))
        if STALL_MARK in claim.task.request.prompt:
            marked.add(claim.task.id)
        return await execute_claim(claim, holder, **options)

    engine.execute_claim = traced  # type: ignore[method-assign]
    store = engine.store
    put_step = store.put_step

    def logged_put_step(tenant: str, task_id: str, epoch: int, step: Any) -> Any:
        fut = put_step(tenant, task_id, epoch, step)  # queued now, in order

        async def outcome() -> None:
            try:
                await fut
            except LeaseLost:
                ledger.write("refused", task=task_id, epoch=epoch, agent=step.agent, key=step.key)
                raise
            ledger.write("commit", task=task_id, epoch=epoch, agent=step.agent, key=step.key)

        return outcome()

    store.put_step = logged_put_step  # type: ignore[method-assign]

    if freeze_in_tx_s:
        write_rows = store._write_rows  # type: ignore[attr-defined]
        if not asyncio.iscoroutinefunction(write_rows):
            raise SystemExit("--freeze-in-tx-s needs the PostgreSQL store")
        frozen = False

        async def freezing(conn: Any, batch: Any, seg: Any, results: Any, notify: Any, alone: bool) -> Any:
            nonlocal frozen
            hit = [batch[i].task_id for i in seg.rows if batch[i].task_id in marked]
            if not hit or frozen:
                return await write_rows(conn, batch, seg, results, notify, alone)
            frozen = True
            # A segment written alone is autocommitted; open the transaction it would be part of in a
            # batch that also carries another operation, so that its row locks are held while frozen.
            if alone:
                await conn.execute("BEGIN")
            out = await write_rows(conn, batch, seg, results, notify, False)
            ledger.write("freeze", task=hit[0])
            time.sleep(freeze_in_tx_s)  # noqa: ASYNC251 - on purpose: stuck inside the transaction
            if alone:
                await conn.execute(store._commit_sql(notify))  # type: ignore[attr-defined]
            return out

        store._write_rows = freezing  # type: ignore[attr-defined]


# -- the worker subprocess ------------------------------------------------------------------------


async def _worker_main(args: argparse.Namespace) -> int:
    ledger = Ledger(args.ledger)
    orch = Orchestrator(ledger_agents(ledger, (args.latency_min, args.latency_max), args.stall_s, args.stall_agent))
    config = EngineConfig(lease_s=args.lease_s, renew_s=args.renew_s, aging_s=60.0, delta_flush_s=0.02)
    try:
        engine = await orch.open_engine(args.database_url, config=config)
        instrument(engine, ledger, args.freeze_in_tx_s)
        worker = Worker(engine, concurrency=args.concurrency, worker_id=args.worker_id, drain_s=args.drain_s)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.request_stop)
        runner = loop.create_task(worker.run())
        driver = None
        if args.workflows:  # drive workflow runs too, as `loomiq worker` does
            from loomiq.engine import WorkflowRuns

            driver = loop.create_task(WorkflowRuns(engine, poll_s=0.1).serve())
        print(json.dumps({"event": "worker_ready", "worker_id": worker.id, "pid": os.getpid()}), flush=True)
        await runner
        if driver is not None:
            driver.cancel()
        print(json.dumps({"event": "worker_stopped", "worker_id": worker.id, "claimed": worker.claimed}), flush=True)
    finally:
        await orch.aclose()
        ledger.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.engine._procs")
    p.add_argument("--database-url", required=True)
    p.add_argument("--ledger", required=True)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--lease-s", type=float, default=2.0)
    p.add_argument("--renew-s", type=float, default=0.5)
    p.add_argument("--drain-s", type=float, default=30.0)
    p.add_argument("--latency-min", type=float, default=0.005)
    p.add_argument("--latency-max", type=float, default=0.020)
    p.add_argument("--stall-s", type=float, default=0.0)
    p.add_argument("--stall-agent", default="a0", help="the agent whose first [stall] call stalls")
    p.add_argument("--freeze-in-tx-s", type=float, default=0.0)
    p.add_argument("--worker-id", default=None)
    p.add_argument("--workflows", type=int, default=0, help="1: also drive workflow runs")
    return asyncio.run(_worker_main(p.parse_args(argv)))


@dataclass
class WorkerProc:
    """A worker subprocess (`main` above). Its stdout and stderr go to files in `logs`."""

    url: str
    ledger: Path
    logs: Path
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    pid: int = 0
    worker_id: str = ""

    @property
    def out(self) -> Path:
        return self.logs / f"{self.name}.out"

    @property
    def err(self) -> Path:
        return self.logs / f"{self.name}.err"

    def _spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            return subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO, env=env)

    async def start(self, ready_timeout_s: float = 30.0) -> WorkerProc:
        """Start the process and wait for its ready line."""
        args = [sys.executable, "-m", "tests.engine._procs", "--database-url", self.url, "--ledger", str(self.ledger)]
        for key, value in self.options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        self.proc = self._spawn(args)
        deadline = time.monotonic() + ready_timeout_s
        while True:
            for line in self.out.read_text().splitlines():
                data = json.loads(line)
                if data.get("event") == "worker_ready":
                    self.pid, self.worker_id = data["pid"], data["worker_id"]
                    return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker {self.name} did not start (rc {self.proc.poll()}):\n"
                                     f"{self.err.read_text()[-3000:]}")
            await asyncio.sleep(0.02)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout_s: float = 60.0) -> int:
        """Wait for the process to exit; its exit code (negative: killed by that signal)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {self.name} did not exit within {timeout_s}s")
            await asyncio.sleep(0.02)
        return self.proc.returncode

    async def kill(self) -> int:
        """SIGKILL (a crash: nothing more is written) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        return await self.wait()

    async def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (graceful: finish or hand back), then reap; SIGKILL if it does not exit in time."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
            self.proc.terminate()
        try:
            return await self.wait(timeout_s)
        except AssertionError:
            await self.kill()
            raise

    def stopped_line(self) -> dict[str, Any] | None:
        for line in self.out.read_text().splitlines():
            data = json.loads(line)
            if data.get("event") == "worker_stopped":
                return data
        return None

    def stderr_tail(self, n: int = 3000) -> str:
        return self.err.read_text(errors="replace")[-n:]


@contextlib.asynccontextmanager
async def worker_pool(url: str, tmp: Path, **options: Any) -> AsyncIterator[WorkerFactory]:
    """``start = ...; w = await start("w1", concurrency=2)``: worker subprocesses sharing one ledger
    (``tmp / "ledger.jsonl"``); whatever is still running at the end is killed."""
    factory = WorkerFactory(url, tmp, options)
    try:
        yield factory
    finally:
        for w in factory.started:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGCONT)
                await w.kill()


@dataclass
class WorkerFactory:
    url: str
    tmp: Path
    defaults: Mapping[str, Any]
    started: list[WorkerProc] = field(default_factory=list)

    @property
    def ledger(self) -> Path:
        return self.tmp / "ledger.jsonl"

    async def __call__(self, name: str, **options: Any) -> WorkerProc:
        logs = self.tmp / "logs"
        logs.mkdir(exist_ok=True)
        n = sum(1 for w in self.started if w.name.split("#")[0] == name)
        w = WorkerProc(self.url, self.ledger, logs, f"{name}#{n}", {**self.defaults, **options})
        self.started.append(w)
        return await w.start()


# -- checks ---------------------------------------------------------------------------------------


def pid_of(worker_id: str) -> int:
    """The pid in a ``host:pid:suffix`` worker id."""
    return int(worker_id.split(":")[-2])


async def event_epochs(engine: TaskEngine, task_id: str) -> list[tuple[int, int, str]]:
    """(seq, epoch, type) of every logged event of the task, in order (the epoch is not in `TaskEvent`)."""
    from loomiq.engine._ops import Stmt

    rows = await engine.store.fetch(Stmt("SELECT seq, epoch, type FROM events WHERE task_id = ? ORDER BY seq",
                                         (task_id,), "all"))
    return [(int(s), int(e), t) for s, e, t in rows]


async def step_rows(engine: TaskEngine) -> dict[tuple[str, str], tuple[int, str]]:
    """(task id, agent) -> (epoch, step key) of every journalled step (read from the steps table)."""
    from loomiq.engine._ops import Stmt

    rows = await engine.store.fetch(Stmt("SELECT task_id, step_key, epoch, result FROM steps", (), "all"),
                                    blocking=True)
    out: dict[tuple[str, str], tuple[int, str]] = {}
    for task_id, key, epoch, result in rows:
        agent = json.loads(result)[1]
        assert (task_id, agent) not in out, f"task {task_id}: agent {agent} has two journalled steps"
        out[(task_id, agent)] = (int(epoch), key)
    return out


@dataclass
class Report:
    """What `check_durable_run` found (for the test's assertions and its printed summary)."""

    tasks: int = 0
    attempts: Counter[str] = field(default_factory=Counter)
    lost_by_live_workers: int = 0
    """Attempts lost by a worker that was not killed (its lease expired while it was alive)."""
    repeated_in_flight: int = 0
    """Finished calls made again because their result had not committed when their holder went away."""
    restarted_calls: int = 0
    """Calls that never finished (their holder went away first), started again by a later holder."""
    max_attempts: int = 0
    problems: list[str] = field(default_factory=list)


async def check_durable_run(engine: TaskEngine, task_ids: Iterable[str], ledger: Iterable[Mapping[str, Any]],
                            killed_pids: set[int], calls_per_task: int = 4) -> Report:
    """Every task completed exactly once, with sensible attempts and a gap-free log; no finished call
    was repeated after its result committed (the ledger against the journal's epochs)."""
    rep = Report()
    ids = list(task_ids)
    rep.tasks = len(ids)
    steps = await step_rows(engine)
    done: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    begun: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    for line in ledger:
        if line.get("task") is None:
            continue
        if line["ev"] == "done":
            done[(line["task"], line["agent"])].append(line)
        elif line["ev"] == "start":
            begun[(line["task"], line["agent"])][line["epoch"]] += 1
    for tid in ids:
        task = await engine.get_task(tid)
        attempts = await engine.attempts(tid)
        events = await engine.store.read_events(tid, 0, 100_000)
        if task.status != "completed":
            rep.problems.append(f"{tid}: {task.status} ({task.error})")
            continue
        statuses = [a.status for a in attempts]
        rep.attempts.update(statuses)
        rep.max_attempts = max(rep.max_attempts, len(attempts))
        if statuses.count("completed") != 1 or statuses[-1] != "completed":
            rep.problems.append(f"{tid}: attempts {statuses}")
        if any(s not in ("lost", "handed_back") for s in statuses[:-1]):
            rep.problems.append(f"{tid}: attempts {statuses}")
        if task.attempts != len(attempts) or [a.epoch for a in attempts] != sorted({a.epoch for a in attempts}):
            rows = [(a.attempt, a.epoch) for a in attempts]
            rep.problems.append(f"{tid}: attempts counter {task.attempts}, rows {rows}")
        for a in attempts[:-1]:
            if a.status == "lost" and pid_of(a.worker_id) not in killed_pids:
                rep.lost_by_live_workers += 1
        seqs = [e.seq for e in events]
        if seqs != list(range(1, len(seqs) + 1)):
            rep.problems.append(f"{tid}: event log has gaps or duplicates: {seqs}")
        if [e.type for e in events].count("task_finished") != 1 or events[-1].type != "task_finished":
            rep.problems.append(f"{tid}: {[e.type for e in events].count('task_finished')} task_finished events")
        by_epoch = {a.epoch: a for a in attempts}
        agents = [a for (t, a) in steps if t == tid]
        if len(agents) != calls_per_task:
            rep.problems.append(f"{tid}: {len(agents)} journalled steps, expected {calls_per_task}")
        for agent in agents:
            committed, key = steps[(tid, agent)]
            calls = done.get((tid, agent), [])
            per_epoch = Counter(c["epoch"] for c in calls)
            rep.restarted_calls += sum(n for e, n in begun.get((tid, agent), Counter()).items()
                                       if e < committed and e not in per_epoch)
            if per_epoch.get(committed) != 1:
                rep.problems.append(f"{tid} {key}: {per_epoch.get(committed, 0)} finished calls under the "
                                    f"committed epoch {committed}")
            for epoch, n in per_epoch.items():
                if n > 1:
                    rep.problems.append(f"{tid} {key}: {n} finished calls under epoch {epoch} (one run called twice)")
                if epoch > committed:
                    rep.problems.append(f"{tid} {key}: a finished call under epoch {epoch} after its result "
                                        f"committed under epoch {committed} (not replayed)")
                elif epoch < committed:
                    rep.repeated_in_flight += n
                    holder = by_epoch.get(epoch)
                    if holder is None or holder.status == "completed":
                        rep.problems.append(f"{tid} {key}: a call under epoch {epoch} was repeated although "
                                            f"that attempt {'completed' if holder else 'does not exist'}")
    return rep


# -- a private PostgreSQL cluster -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` with ``initdb`` and ``pg_ctl``, or None."""
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return None
    found = sorted((d / "bin" for d in root.iterdir() if (d / "bin" / "initdb").exists()
                    and (d / "bin" / "pg_ctl").exists()), key=lambda p: int(p.parent.name) if p.parent.name.isdigit()
                   else 0)
    return found[-1] if found else None


class PrivateCluster:
    """A throwaway PostgreSQL cluster on a free port (trust auth, 127.0.0.1 only), in a temporary
    directory. Run as the ``postgres`` user when this process is root (initdb refuses root)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="loomiq-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.dir)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")
        return proc

    def init(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off "
                "-c max_connections=200 -c full_page_writes=off")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w",
                  "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
