"""Durable floor on PostgreSQL: plain asyncio + asyncpg, one committed row per model call.

The PostgreSQL twin of the peers' ``bench_floor_durable.py``: every model call is a durable step
whose output is stored as one row ``(run_id, step, output)`` by ONE writer coroutine on one
connection, and the call counts as done only once that row is committed. The writer takes
everything queued and inserts it with one autocommitted ``INSERT ... SELECT FROM unnest(...)``
(group commit: concurrent calls share a commit; a sequential call waits for its own). Nothing else
is stored, no fencing, no events: the least a durable step can cost on this server. A crashed run is
resumed by loading its rows (checked once per process, as the SQLite floor does).

    python bench/bench_floor_durable_pg.py --mode latency|throughput   # one JSON line (harness format)

The database: ``$LOOMIQ_BENCH_PG_URL``, else ``$PEERS_PG_URL``, else
``postgresql://postgres@127.0.0.1:5432/postgres``, in a fresh schema dropped at exit (``SKIP:`` on
stderr and exit 3 when the server cannot be reached). Server settings in the URL apply (for example
``?synchronous_commit=off``). Needs ``asyncpg`` (the repo's ``.venv``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

t0 = time.perf_counter()
REPO = Path(__file__).resolve().parent.parent
PEERS_DIR = Path(os.environ.get("PEERS_DIR") or REPO.parent / "shared" / "bench-peers").resolve()
sys.path.insert(0, str(PEERS_DIR))
import asyncpg  # noqa: E402
from harness import TASK, Fake, fake_llm, lead_prompt, main, refine_prompt  # noqa: E402

IMPORT_S = time.perf_counter() - t0

PG_URL = os.environ.get("LOOMIQ_BENCH_PG_URL") or os.environ.get("PEERS_PG_URL") or \
    "postgresql://postgres@127.0.0.1:5432/postgres"
SCHEMA = f"floor_{uuid.uuid4().hex[:12]}"
INSERT = "INSERT INTO steps (run_id, step, output) SELECT * FROM unnest($1::text[], $2::int[], $3::text[])"


def _dsn(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    return urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), parts.fragment))


class GroupWriter:
    """One connection; the writer coroutine drains the queue and commits it in one statement."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.pending: list[tuple[tuple[str, int, str], asyncio.Future[None]]] = []
        self.ready = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            batch, self.pending = self.pending, []
            err: BaseException | None = None
            try:
                await self.conn.execute(INSERT, [r[0] for r, _ in batch], [r[1] for r, _ in batch],
                                        [r[2] for r, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every caller of the batch learns why
                err = exc
            for _, fut in batch:
                if not fut.done():
                    if err is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(err)

    async def put(self, run_id: str, step: int, output: str) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(((run_id, step, output), fut))
        self.ready.set()
        await fut


WRITER: GroupWriter | None = None
READER: asyncpg.Connection | None = None


class Run:
    """A run's id plus the outputs it already has (empty unless resumed)."""

    __slots__ = ("id", "done")

    def __init__(self, run_id: str | None = None) -> None:
        self.id = run_id or uuid.uuid4().hex
        self.done: dict[int, str] = {}

    @classmethod
    async def resume(cls, run_id: str) -> Run:
        assert READER is not None
        r = cls(run_id)
        r.done = {s: o for s, o in await READER.fetch("SELECT step, output FROM steps WHERE run_id = $1", run_id)}
        return r


LLM = fake_llm  # swapped for a crashing twin by the resume self-check only


async def step(run: Run, idx: int, prompt: str) -> str:
    """A durable model call: replay the recorded output, or call and commit it."""
    out = run.done.get(idx)
    if out is not None:
        return out
    out = await LLM(prompt)
    assert WRITER is not None
    await WRITER.put(run.id, idx, out)
    return out


async def w1_run(run: Run, task: str) -> str:
    out = None
    for i in range(3):
        out = await step(run, i, refine_prompt(task, out))
    return out  # type: ignore[return-value]


async def w2_run(run: Run, task: str) -> list[str]:
    return list(await asyncio.gather(*(step(run, i, task) for i in range(3))))


async def w3_run(run: Run, task: str) -> str:
    outs = await asyncio.gather(*(step(run, i, task) for i in range(3)))
    return await step(run, 3, lead_prompt(task, list(outs)))


async def w1(task: str) -> str:
    return await w1_run(Run(), task)


async def w2(task: str) -> list[str]:
    return await w2_run(Run(), task)


async def w3(task: str) -> str:
    return await w3_run(Run(), task)


class Crash(Exception):
    pass


async def _resume_check() -> None:
    """W1 dies at its 3rd model call; resuming it must make exactly 1 call."""
    global LLM
    n = 0

    async def crashing(prompt: str) -> str:
        nonlocal n
        n += 1
        if n == 3:
            raise Crash("simulated crash at call 3")
        return await fake_llm(prompt)

    run = Run()
    LLM = crashing
    try:
        await w1_run(run, TASK)
        raise AssertionError("the injected crash did not happen")
    except Crash:
        pass
    finally:
        LLM = fake_llm
    resumed = await Run.resume(run.id)
    assert sorted(resumed.done) == [0, 1], resumed.done
    before = Fake.calls
    out = await w1_run(resumed, TASK)
    assert Fake.calls - before == 1, f"resume made {Fake.calls - before} model calls"
    assert (await Run.resume(run.id)).done.keys() == {0, 1, 2} and out


async def setup() -> None:
    global WRITER, READER
    settings = {"search_path": SCHEMA}
    try:
        admin = await asyncpg.connect(_dsn(PG_URL), timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        print(f"SKIP: PostgreSQL unreachable at {urlsplit(PG_URL).netloc}: {exc}", file=sys.stderr)
        sys.exit(3)
    await admin.execute(f'CREATE SCHEMA "{SCHEMA}"')
    await admin.execute(f'CREATE TABLE "{SCHEMA}".steps (run_id TEXT NOT NULL, step INTEGER NOT NULL, '
                        'output TEXT NOT NULL, PRIMARY KEY (run_id, step))')
    await admin.close()
    WRITER = GroupWriter(await asyncpg.connect(_dsn(PG_URL), server_settings=settings))
    READER = await asyncpg.connect(_dsn(PG_URL), server_settings=settings)
    await _resume_check()


def _drop_schema() -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(_dsn(PG_URL), timeout=5)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        finally:
            await conn.close()

    try:
        asyncio.run(drop())
    except Exception:  # noqa: BLE001 - the server went away: nothing to clean
        pass


if __name__ == "__main__":
    try:
        main("floor-durable-pg: asyncio + asyncpg (one writer connection, group commit)", [], w1, w2, w3,
             import_s=IMPORT_S, setup=setup, durable=True,
             notes=f"asyncpg {asyncpg.__version__}; one row per model call, committed (autocommit INSERT ... unnest) "
                   "by one writer coroutine before the call returns; server settings as in the URL")
    finally:
        _drop_schema()
