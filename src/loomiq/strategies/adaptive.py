"""The `adaptive` strategy: a router step decides, from the task and the output so far, which agents
act next, until the router says the work is done or `max_rounds` is reached.

Two routers: `ModelRouter` asks a routing agent (capability ``routing``) for a JSON decision;
`RuleRouter` decides by rules over capabilities and the text, and is what runs when no routing
agent exists or the routing agent's answer cannot be used.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from ..agents import Agent, AgentRegistry
from ..runtime.context import ExecutionContext
from ._prompts import adaptive_prompt, router_prompt
from .base import Outcome, Strategy


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Which agents go next (empty when done), and why."""

    next: tuple[str, ...]
    done: bool
    reason: str


class Router(Protocol):
    """Decides the next agents of an adaptive run."""

    async def decide(
        self, ctx: ExecutionContext, round_no: int, history: Sequence[tuple[str, str]], pool: Sequence[Agent]
    ) -> RouteDecision:
        """The decision for round `round_no`, given (agent, output) pairs so far."""
        ...


# Signs that an answer needs another pair of eyes.
_UNSURE = re.compile(r"\b(not sure|unsure|unclear|uncertain|might be wrong|todo|tbd|cannot answer)\b", re.I)
_TOPIC_CAPABILITIES = (
    (re.compile(r"\b(code|function|bug|python|sql|program|script)\b", re.I), "coding"),
    (re.compile(r"\b(review|critique|audit|check)\b", re.I), "review"),
    (re.compile(r"\b(summari[sz]e|write|draft|email|essay|rewrite)\b", re.I), "writing"),
    (re.compile(r"\b(analy[sz]e|compare|evaluate|trade-?offs?|decide)\b", re.I), "analysis"),
)


class RuleRouter:
    """Routes by rules: the first agent matches the task's topic; an answer that failed, sounds
    unsure or is very short goes to a reviewer (or another agent) for improvement; otherwise done."""

    min_words = 12

    async def decide(
        self, ctx: ExecutionContext, round_no: int, history: Sequence[tuple[str, str]], pool: Sequence[Agent]
    ) -> RouteDecision:
        """See the class docstring."""
        used = {agent for agent, _ in history}
        fresh = [a for a in pool if a.id not in used]
        if not history:
            task = ctx.task.prompt
            for pattern, cap in _TOPIC_CAPABILITIES:
                if pattern.search(task):
                    match = next((a for a in pool if cap in a.capabilities), None)
                    if match is not None:
                        return RouteDecision((match.id,), False, f"task mentions {cap}; {match.id} has it")
            return RouteDecision((pool[0].id,), False, f"{pool[0].id} ranks best for the task")
        last_agent, last = history[-1]
        if not fresh:
            return RouteDecision((), True, "every agent in the pool has contributed")
        if not last:
            return RouteDecision((fresh[0].id,), False, f"{last_agent} produced nothing; trying {fresh[0].id}")
        why = None
        if _UNSURE.search(last):
            why = f"{last_agent}'s answer sounds unsure"
        elif len(last.split()) < self.min_words:
            why = f"{last_agent}'s answer is very short"
        if why is None:
            return RouteDecision((), True, f"{last_agent}'s answer is complete")
        reviewer = next((a for a in fresh if "review" in a.capabilities), fresh[0])
        return RouteDecision((reviewer.id,), False, f"{why}; {reviewer.id} reviews it")


class ModelRouter:
    """Asks a routing agent for the next agents, as JSON. Falls back to `fallback` (rules) when the
    routing agent fails or answers with something unusable, and says so in the decision's reason."""

    def __init__(self, router: Agent, fallback: Router | None = None) -> None:
        self.router = router
        self.fallback = fallback or RuleRouter()

    async def decide(
        self, ctx: ExecutionContext, round_no: int, history: Sequence[tuple[str, str]], pool: Sequence[Agent]
    ) -> RouteDecision:
        """One routing step, key ``route/<round>``."""
        roster = [(a.id, ", ".join(sorted(a.capabilities)) or "general") for a in pool]
        prompt = router_prompt(ctx.task.prompt, history, roster)
        step = await ctx.call(f"route/{round_no}", self.router, "router", prompt)
        problem = step.error
        if problem is None:
            try:
                decision = parse_decision(step.output, {a.id for a in pool})
            except ValueError as exc:
                problem = str(exc)
            else:
                return decision
        fallback = await self.fallback.decide(ctx, round_no, history, pool)
        return RouteDecision(fallback.next, fallback.done, f"router unusable ({problem}); {fallback.reason}")


def parse_decision(text: str, known: set[str]) -> RouteDecision:
    """Parse a router's JSON answer (a fenced block is accepted). Raises `ValueError` if unusable."""
    match = re.search(r"\{.*\}", text, re.S)
    if match is None:
        raise ValueError("no JSON object in the router's answer")
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        raise ValueError(f"router JSON is invalid: {exc.msg}") from None
    nxt = data.get("next", [])
    if isinstance(nxt, str):
        nxt = [nxt]
    if not isinstance(nxt, list) or not all(isinstance(n, str) for n in nxt):
        raise ValueError("router 'next' must be a list of agent ids")
    unknown = [n for n in nxt if n not in known]
    if unknown:
        raise ValueError(f"router named unknown agent(s) {', '.join(unknown)}")
    done = bool(data.get("done", not nxt))
    if not done and not nxt:
        raise ValueError("router neither finished nor named a next agent")
    return RouteDecision(tuple(nxt), done, str(data.get("reason", "")))


class AdaptiveStrategy(Strategy):
    """Route work between agents on what comes back (see the module docstring)."""

    name: ClassVar[str] = "adaptive"
    default_size: ClassVar[int] = 5

    def __init__(self, max_rounds: int = 4, router: Router | None = None) -> None:
        self.max_rounds = max_rounds
        self.router = router

    def pick(self, registry: AgentRegistry, named: Sequence[str] | None, capabilities: Sequence[str]) -> list[Agent]:
        """The pool the router chooses from; routing agents are kept out of it."""
        if named:
            return super().pick(registry, named, capabilities)
        ranked = [a for a in registry.rank(capabilities) if "routing" not in a.capabilities]
        return ranked[: self.default_size] or super().pick(registry, named, capabilities)

    def _router(self, ctx: ExecutionContext) -> Router:
        if self.router is not None:
            return self.router
        routers = ctx.registry.rank(["routing"])
        return ModelRouter(routers[0]) if routers else RuleRouter()

    async def execute(self, ctx: ExecutionContext, agents: Sequence[Agent]) -> Outcome:
        """Rounds of route-then-act; steps ``adaptive/<round>/<i>``."""
        router = self._router(ctx)
        by_id = {a.id: a for a in agents}
        history: list[tuple[str, str]] = []  # (agent, output); "" for a step that failed
        notes: list[str] = []
        for round_no in range(self.max_rounds):
            decision = await router.decide(ctx, round_no, history, agents)
            notes.append(f"round {round_no}: {', '.join(decision.next) or 'done'} ({decision.reason})")
            if decision.done or not decision.next:
                break
            good = [h for h in history if h[1]]
            prompt = adaptive_prompt(ctx.task.prompt, good)
            steps = await asyncio.gather(*(
                ctx.call(f"adaptive/{round_no}/{i}", by_id[aid], "routed", prompt)
                for i, aid in enumerate(decision.next)
            ))
            history.extend((s.agent, s.output if s.ok else "") for s in steps)
        good = [h for h in history if h[1]]
        if not good:
            return Outcome("", error="no routed agent produced an answer", notes=tuple(notes))
        return Outcome(good[-1][1], tuple(t for _, t in good), notes=tuple(notes))
