"""A worker subprocess for the durable tool-call crash test (``python -m tests.tools._tool_worker``).

Its agent ``t0`` may call ``bump``, a tool whose side effect is one line appended to a counter file.
Its model records each model turn it starts and finishes in a ledger file (``O_APPEND``: the lines of
every process land whole), and with ``--slow-turn-s`` it takes that long over the turn after a tool
result, so the test can kill -9 the worker after the tool ran and before the model's next turn."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Sequence

from loomiq import Agent, AgentConfig, ModelRequest, Orchestrator, RetryPolicy, ScriptedModel, ScriptedReply
from loomiq.engine import EngineConfig, Worker
from loomiq.models import ModelResponse, StreamPart
from loomiq.tools import ToolRegistry, tool


def append(path: str, record: dict[str, object]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps({**record, "pid": os.getpid(), "t": time.time()}) + "\n").encode())
    finally:
        os.close(fd)


def read_lines(path: str | os.PathLike[str]) -> list[dict[str, object]]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def bump_tool(counter: str):  # noqa: ANN201 - a FunctionTool
    @tool(timeout_s=10)
    def bump(label: str) -> str:
        """Record a side effect (one line in the counter file)."""
        append(counter, {"label": label})
        return f"bumped {label}"

    return bump


def reply(request: ModelRequest, index: int) -> ScriptedReply | str:
    results = [m.content for m in request.messages if m.role == "tool"]
    if not results:
        return ScriptedReply.calling(("bump", {"label": "once"}))
    return "done after " + results[0]


class TurnLedgerModel:
    """A scripted `ChatModel` that records every model turn in the ledger (``start``/``done`` with the
    turn number: the tool results in the request), slow on turn 1 when asked."""

    provider = "scripted"
    offline = True
    model_name = "turns"

    def __init__(self, ledger: str, slow_turn_s: float) -> None:
        self.ledger = ledger
        self.slow_turn_s = slow_turn_s
        self.inner = ScriptedModel(replies=reply, model_name="turns")

    async def complete(self, request: ModelRequest) -> ModelResponse:
        final = None
        async for part in self.stream(request):
            if isinstance(part, ModelResponse):
                final = part
        assert final is not None
        return final

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamPart]:
        turn = sum(1 for m in request.messages if m.role == "tool")
        append(self.ledger, {"ev": "start", "turn": turn})
        if turn == 1 and self.slow_turn_s:
            await asyncio.sleep(self.slow_turn_s)
        async for part in self.inner.stream(request):
            if isinstance(part, ModelResponse):
                append(self.ledger, {"ev": "done", "turn": turn})
            yield part

    async def aclose(self) -> None:
        return None


def orchestrator(ledger: str, counter: str, slow_turn_s: float = 0.0) -> Orchestrator:
    config = AgentConfig("t0", "scripted", "turns", tools=("bump",), retry=RetryPolicy(max_attempts=1))
    agent = Agent(config, TurnLedgerModel(ledger, slow_turn_s))  # type: ignore[arg-type]
    return Orchestrator([agent], tools=ToolRegistry([bump_tool(counter)], builtins=False))


async def _main(args: argparse.Namespace) -> int:
    orch = orchestrator(args.ledger, args.counter, args.slow_turn_s)
    try:
        engine = await orch.open_engine(args.database_url, config=EngineConfig(lease_s=1.0, renew_s=0.25))
        worker = Worker(engine, concurrency=2)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.request_stop)
        runner = loop.create_task(worker.run())
        print(json.dumps({"event": "worker_ready", "pid": os.getpid()}), flush=True)
        await runner
    finally:
        await orch.aclose()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.tools._tool_worker")
    p.add_argument("--database-url", required=True)
    p.add_argument("--ledger", required=True)
    p.add_argument("--counter", required=True)
    p.add_argument("--slow-turn-s", type=float, default=0.0)
    return asyncio.run(_main(p.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
