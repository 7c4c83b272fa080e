"""LangGraph's side of the 10-node workflow comparison (issue 13): a `StateGraph` of 10 nodes in a line
on `AsyncSqliteSaver`, each node one call of a zero-latency chat model that sees the previous output.
One JSON object on stdout. Runs in the peers' virtualenv, not loomiq's:

    python3 -m venv /tmp/peers-venv/langgraphdurable
    /tmp/peers-venv/langgraphdurable/bin/pip install -r /work/shared/bench-peers/requirements-langgraphdurable.txt
    /tmp/peers-venv/langgraphdurable/bin/python bench/workflow_peers/langgraph_10.py [--reps 20]

The graph is compiled once with the checkpointer (a fresh SQLite file, the saver's own WAL setting);
each run uses a fresh thread_id. ``durability="sync"`` (the default here) writes each step's
checkpoint before the next step starts, so a finished model call is never repeated after a crash,
which is what loomiq's journal gives; ``--durability async`` is LangGraph's own default. Compare with
``linear_workflow_s`` of ``bench/bench_workflow_durable.py`` run in the same minutes
(``bench/bench_workflow_peers.sh`` runs both).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from importlib.metadata import version
from typing import Any, TypedDict

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph

NODES = 10


class ZeroLatencyModel(BaseChatModel):
    """Answers at once with a short fixed text, like loomiq's `ScriptedModel` in the loomiq bench."""

    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "zero-latency"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kw: Any) -> ChatResult:
        self.calls += 1
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="ok"))])

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                         **kw: Any) -> ChatResult:
        return self._generate(messages)


class State(TypedDict):
    outputs: list[str]


def build(model: ZeroLatencyModel, saver: AsyncSqliteSaver) -> Any:
    graph = StateGraph(State)

    def step(i: int) -> Any:
        async def node(state: State) -> dict[str, Any]:
            previous = state["outputs"][-1] if state["outputs"] else ""
            prompt = f"Step {i} after {previous}" if i else "Step 0"
            reply = await model.ainvoke([HumanMessage(content=prompt)])
            return {"outputs": [*state["outputs"], str(reply.content)]}
        return node

    for i in range(NODES):
        graph.add_node(f"n{i}", step(i))
        graph.add_edge(START if i == 0 else f"n{i - 1}", f"n{i}")
    graph.add_edge(f"n{NODES - 1}", END)
    return graph.compile(checkpointer=saver)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="lg-10-")
    model = ZeroLatencyModel()
    async with AsyncSqliteSaver.from_conn_string(os.path.join(tmp, "checkpoints.sqlite")) as saver:
        await saver.setup()
        app = build(model, saver)
        samples = []
        for _ in range(args.reps + 1):  # the first is a warm-up
            before = model.calls
            t0 = time.perf_counter()
            state = await app.ainvoke({"outputs": []}, {"configurable": {"thread_id": uuid.uuid4().hex}},
                                      durability=args.durability)
            samples.append(time.perf_counter() - t0)
            assert len(state["outputs"]) == NODES and model.calls - before == NODES, (state, model.calls)
    return {"bench": "workflow_peer", "peer": "langgraph", "saver": "AsyncSqliteSaver",
            "durability": args.durability, "nodes": NODES, "reps": args.reps,
            "linear_workflow_s": round(statistics.median(samples[1:]), 4),
            "linear_workflow_min_s": round(min(samples[1:]), 4),
            "versions": {p: version(p) for p in ("langgraph", "langgraph-checkpoint-sqlite", "langchain-core")},
            "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--durability", choices=("sync", "async", "exit"), default="sync")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
