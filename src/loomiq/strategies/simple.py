"""The three direct strategies: `single`, `sequential` and `parallel`."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar, Literal

from ..agents import Agent
from ..runtime.context import ExecutionContext
from ._prompts import parallel_output, refine_prompt
from .base import Outcome, Strategy


class SingleStrategy(Strategy):
    """The best agent for the task answers alone (failing over if it cannot)."""

    name: ClassVar[str] = "single"
    default_size: ClassVar[int] = 1

    async def execute(self, ctx: ExecutionContext, agents: Sequence[Agent]) -> Outcome:
        """One step, key ``single``."""
        step = await ctx.call("single", agents[0], "answer", ctx.task.prompt)
        return Outcome(step.output) if step.ok else Outcome("", error=step.error)


class SequentialStrategy(Strategy):
    """Each agent sees the task and the previous agent's output, and improves it.

    An agent that fails (after failover) is skipped: the next one refines the last good output.
    """

    name: ClassVar[str] = "sequential"

    async def execute(self, ctx: ExecutionContext, agents: Sequence[Agent]) -> Outcome:
        """Steps ``seq/0``, ``seq/1``...: one per agent, in order."""
        task = ctx.task.prompt
        previous: str | None = None
        previous_agent: str | None = None
        for i, agent in enumerate(agents):
            role = "draft" if previous is None else "refine"
            step = await ctx.call(f"seq/{i}", agent, role, refine_prompt(task, previous, previous_agent))
            if step.ok:
                previous, previous_agent = step.output, step.agent
        if previous is None:
            return Outcome("", error="every agent in the sequence failed")
        return Outcome(previous)


def majority(outputs: Sequence[str]) -> str:
    """The answer most agents gave (compared ignoring case and spacing); the first on a tie."""
    keys = [" ".join(o.lower().split()) for o in outputs]
    best, _ = Counter(keys).most_common(1)[0]
    return outputs[keys.index(best)]


class ParallelStrategy(Strategy):
    """All agents answer the same prompt concurrently; the answers are aggregated.

    Args:
        aggregate: ``concat`` puts every answer under its agent's name; ``vote`` returns the answer
            most agents gave.
    """

    name: ClassVar[str] = "parallel"

    def __init__(self, aggregate: Literal["concat", "vote"] = "concat") -> None:
        self.aggregate = aggregate

    async def execute(self, ctx: ExecutionContext, agents: Sequence[Agent]) -> Outcome:
        """Steps ``par/0``, ``par/1``...: all at once."""
        task = ctx.task.prompt
        steps = await asyncio.gather(*(ctx.call(f"par/{i}", a, "answer", task) for i, a in enumerate(agents)))
        good = [s for s in steps if s.ok]
        if not good:
            return Outcome("", error="every agent failed")
        outputs = tuple(s.output for s in good)
        if self.aggregate == "vote":
            return Outcome(majority(outputs), outputs)
        return Outcome(parallel_output([(s.agent, s.output) for s in good]), outputs)
