"""The runner seam: what the durable engine executes, and resumes from its journal.

A `Runner` turns a prompt and its `RunOptions` into a planned run (deciding what runs it and with
which agents), rebuilds a planned run from the `StoredPlan` a durable task keeps (deciding nothing
again, so a resumed run replays the same step keys), and executes a planned run through the
`ExecutionContext` it is given: the in-process one, or the engine's journalling one.

The engine (`loomiq.engine`) knows only this protocol. `loomiq.strategies.StrategyRunner` implements
it for the collaboration strategies; a workflow run is meant to be a second implementation.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ..agents import AgentRegistry
from .context import ExecutionContext, TaskSpec
from .options import RunOptions
from .result import RunResult

# Run ids: 48 random bits per process, then a counter. Unique across processes without paying for
# a random-bytes system call (uuid4) on every run.
_RUN_PREFIX = os.urandom(6).hex()
_run_counter = itertools.count(1)


def new_run_id() -> str:
    """A fresh, unique run id (32 hex characters, like a uuid4's hex form)."""
    return f"{_RUN_PREFIX}{next(_run_counter):020x}"


@dataclass(frozen=True, slots=True)
class StoredPlan:
    """A planned run in the form a durable task stores it: all `Runner.resume` needs to rebuild the
    very same plan in any process, with nothing chosen again.

    Attributes:
        run_id: the run's (task's) id.
        prompt: what the run is asked.
        kind: what runs it, by name: a strategy (``consensus``), never ``auto`` once planned.
        agents: the agents the plan picked, in its order.
        capabilities: the capabilities the run's agents need (failover keeps to them).
        options: the options of what runs it.
        context: the run's free context (a resumed task also finds its dependencies' outputs here).
        reason: why the plan chose `kind`, when it chose (``auto``); empty when the caller named it.
        tools: the tools the run allows, narrowing each agent's allow-list; None: each agent's own.
        failover_within: the agents failover may use (the caller's named agents); None: any.
    """

    run_id: str
    prompt: str
    kind: str
    agents: tuple[str, ...]
    capabilities: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    tools: tuple[str, ...] | None = None
    failover_within: tuple[str, ...] | None = None


class PlannedRun(Protocol):
    """A run decided but not started, as the engine sees it."""

    @property
    def run_id(self) -> str:
        """The run's (task's) id."""
        ...

    @property
    def task(self) -> TaskSpec:
        """What the run is asked: the prompt, the capabilities, the context."""
        ...

    def stored(self) -> StoredPlan:
        """The plan's durable form, from which `Runner.resume` rebuilds it."""
        ...


PlanT = TypeVar("PlanT", bound=PlannedRun)


class Runner(Protocol[PlanT]):
    """What the durable engine needs to run a task: plan it, rebuild it from storage, execute it.

    `plan` and `resume` raise (a planning error whose message says why) for a run that cannot be
    executed here; `execute` never raises for a provider failure (it is in the result).
    """

    @property
    def registry(self) -> AgentRegistry:
        """The agents the runs call (and fail over to)."""
        ...

    def plan(self, prompt: str, options: RunOptions, *, run_id: str | None = None) -> PlanT:
        """Decide how to run `prompt` (what runs it, which agents), without starting it."""
        ...

    def resume(self, stored: StoredPlan) -> PlanT:
        """Rebuild the plan `stored` describes, choosing nothing again."""
        ...

    async def execute(
        self, plan: PlanT, context: ExecutionContext, *, timeout_s: float | None = None, cancellable: bool = False
    ) -> RunResult:
        """Execute `plan` through `context` (its sink receives the run's events). With
        `cancellable`, a cancellation ends the run ``cancelled`` instead of propagating."""
        ...
