"""The tools of a run: which tools each agent call is offered, and the `ToolLoop` that runs them.

An agent's allow-list (``tools:`` of the agent) says what it may use; a run narrows it (``--tools``,
``tools`` of ``POST /api/tasks``, ``tools=`` in the library): a tool is offered only when both admit
it (`loomiq.tools.allows`). Agents whose `AgentConfig.tools_on_request` is set (the built-in default
agents) are offered their tools only by a run that names them. Anything else a model asks for is
refused by the loop, never run.

`RunTools` belongs to a runner (one per process): it keeps one `ToolLoop` per allow-list and
narrowing, rebuilt when the registry's tools change (`ToolRegistry.version`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..agents import Agent
from ..tools import NAMESPACE_SEPARATOR, ToolLoop, ToolRegistry, allows
from .options import InvalidOptions

_LoopKey = tuple[tuple[str, ...], tuple[str, ...] | None, int]


class UnknownTools(InvalidOptions):
    """A run names tools that no registered tool matches; the message lists them and what exists."""


class RunTools:
    """The tool registry of a runner, and the tool loops built over it.

    Args:
        registry: every tool the process knows.
    """

    def __init__(self, registry: ToolRegistry) -> None:
        self.registry = registry
        self._loops: dict[_LoopKey, tuple[int, ToolLoop]] = {}

    def check(self, narrowing: Sequence[str]) -> None:
        """Raise `UnknownTools` when an entry of a run's tool list matches no tool (a typo, a
        disabled built-in, an MCP server not configured)."""
        unmatched = self.registry.unmatched(narrowing)
        if unmatched:
            known = ", ".join(self.registry.names()) or "none"
            names = ", ".join(repr(n) for n in unmatched)
            raise UnknownTools(f"tools: no tool or provider named {names} (available: {known})")

    async def loop_for(self, agent: Agent, narrowing: tuple[str, ...] | None) -> ToolLoop | None:
        """The loop for a call of `agent` in a run whose tool list is `narrowing` (None: the run names
        none); None when the agent has no allow-list (or offers its tools only on request, and the run
        names none). Starts the MCP servers the call needs
        (`ToolRegistry.prepare`); raises `loomiq.tools.ToolSourceError` when a required one cannot."""
        cfg = agent.config
        allow = cfg.tools
        if not allow or (narrowing is None and cfg.tools_on_request):
            return None
        registry = self.registry
        if registry.sources():
            wanted = list(allow) if narrowing is None else _narrowed_entries(allow, narrowing)
            if wanted:
                await registry.prepare(wanted)
        key = (allow, narrowing, cfg.max_tool_rounds)
        cached = self._loops.get(key)
        if cached is not None and cached[0] == registry.version:
            return cached[1]
        version = registry.version
        tools = [t for t in registry.select(allow) if narrowing is None or allows(narrowing, t.name)]
        # Even with nothing left to offer, the loop answers a model's tool call: refused, and recorded.
        loop = ToolLoop(tools, max_rounds=cfg.max_tool_rounds)
        self._loops[key] = (version, loop)
        return loop

    async def aclose(self) -> None:
        """Stop the registry's tool sources (MCP servers)."""
        await self.registry.aclose()
        self._loops.clear()


def _narrowed_entries(allow: Sequence[str], narrowing: Sequence[str]) -> list[str]:
    """The entries of `allow` whose provider the run's list names (the sources worth starting)."""
    providers = {e.partition(NAMESPACE_SEPARATOR)[0] for e in narrowing}
    return [e for e in allow if e.partition(NAMESPACE_SEPARATOR)[0] in providers]
