"""Durable tool calls: a worker killed (SIGKILL) after a tool's side effect and before the model's
next turn; the worker that resumes the task runs the tool no more (the side effect happened once)
and never repeats a finished model turn. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.engine.conftest import database

from ._tool_worker import orchestrator, read_lines

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database(request.param, tmp_path) as url:
        yield url


class Proc:
    def __init__(self, url: str, tmp: Path, name: str, slow_turn_s: float = 0.0) -> None:
        self.out = tmp / f"{name}.out"
        self.err = tmp / f"{name}.err"
        args = [sys.executable, "-m", "tests.tools._tool_worker", "--database-url", url,
                "--ledger", str(tmp / "ledger.jsonl"), "--counter", str(tmp / "counter.jsonl"),
                "--slow-turn-s", str(slow_turn_s)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO, env=env)

    async def ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while "worker_ready" not in self.out.read_text():
            assert self.proc.poll() is None, self.err.read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker did not start"
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


async def until(predicate, timeout_s: float = 60) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_tool_call_survives_kill_9_and_runs_once(db_url: str, tmp_path: Path) -> None:
    ledger, counter = tmp_path / "ledger.jsonl", tmp_path / "counter.jsonl"
    orch = orchestrator(str(ledger), str(counter))
    await orch.open_engine(db_url)
    procs: list[Proc] = []
    try:
        task = (await orch.submit("bump it once", strategy="single", agents=["t0"])).task
        first = Proc(db_url, tmp_path, "w1", slow_turn_s=120)
        procs.append(first)
        await first.ready()
        # The tool ran and the model's next turn began (so the tool's record committed before it).
        await until(lambda: any(e["ev"] == "start" and e["turn"] == 1 for e in read_lines(ledger)))
        assert len(read_lines(counter)) == 1
        first.stop()  # SIGKILL
        assert first.proc.returncode == -9
        second = Proc(db_url, tmp_path, "w2")
        procs.append(second)
        await second.ready()
        done = await orch.wait(task.id, timeout_s=90)
    finally:
        for p in procs:
            p.stop()
        await orch.aclose()
    assert done.status == "completed", done.error
    assert done.output == "done after bumped once"
    assert len(read_lines(counter)) == 1, "the tool's side effect happened again"
    turns = read_lines(ledger)
    # Turn 0 was answered once, by the first worker; only the unfinished turn 1 ran again.
    assert [(e["ev"], e["turn"]) for e in turns if e["turn"] == 0] == [("start", 0), ("done", 0)]
    assert [(e["ev"], e["pid"]) for e in turns if e["turn"] == 1] == [
        ("start", first.proc.pid), ("start", second.proc.pid), ("done", second.proc.pid)]
    assert done.attempts == 2
    (call,) = done.result["steps"][0]["tool_calls"]  # type: ignore[index]
    assert call["name"] == "bump" and call["result"] == "bumped once"
