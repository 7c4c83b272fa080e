"""Agent statistics in the database, shared by every process: what `loomiq agents` and
``GET /api/agents`` show, whichever process made the calls.

The agent call path is untouched: each process keeps counting in memory (`AgentStats`, used for
ranking), and `AgentStatsRecorder` writes what changed since its last write every `interval_s`
(and when the engine closes) as one upsert per agent that moved, queued behind the engine's
group-commit writer without being awaited by anyone. A model call costs no database work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from ..agents import Agent, AgentStats
from ._stmt import Op, Outcome, Stmt
from .store import Store

log = logging.getLogger("loomiq.engine")

_FIELDS = ("calls", "successes", "failures", "total_latency_s", "input_tokens", "output_tokens", "cost_usd")

_UPSERT = (
    "INSERT INTO agent_stats (agent_id, calls, successes, failures, total_latency_s, input_tokens, output_tokens, "
    "cost_usd, last_error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (agent_id) DO UPDATE SET calls = agent_stats.calls + excluded.calls, "
    "successes = agent_stats.successes + excluded.successes, failures = agent_stats.failures + excluded.failures, "
    "total_latency_s = agent_stats.total_latency_s + excluded.total_latency_s, "
    "input_tokens = agent_stats.input_tokens + excluded.input_tokens, "
    "output_tokens = agent_stats.output_tokens + excluded.output_tokens, "
    "cost_usd = agent_stats.cost_usd + excluded.cost_usd, "
    "last_error = COALESCE(excluded.last_error, agent_stats.last_error), updated_at = excluded.updated_at"
)


def add_stats(rows: list[tuple[Any, ...]]) -> Op[Outcome]:
    """Add each row's counts to its agent's totals (a row per agent: id, the `_FIELDS` deltas, the
    last error or None, the time)."""
    for row in rows:
        yield Stmt(_UPSERT, row)
    return Outcome()


def _totals(stats: AgentStats) -> tuple[float, ...]:
    return tuple(getattr(stats, f) for f in _FIELDS)


class AgentStatsRecorder:
    """Writes the agents' statistics deltas to `store` every `interval_s` (see the module docstring).

    `agents` is called for the current agents at each write, so agents added or replaced later are
    followed; a replaced agent that keeps its `AgentStats` object (PATCH) continues where it was.
    """

    def __init__(self, store: Store, agents: Any, interval_s: float = 1.0) -> None:
        self.store = store
        self._agents = agents
        self.interval_s = interval_s
        self._written: dict[str, tuple[AgentStats, tuple[float, ...], str | None]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="loomiq-agent-stats")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.write()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - statistics must never stop the engine; the next write retries
                log.warning("agent statistics not written (will retry)", exc_info=True)

    def _rows(self, agents: Iterable[Agent]) -> list[tuple[Any, ...]]:
        now = time.time()
        rows = []
        for agent in agents:
            stats = agent.stats
            totals = _totals(stats)
            seen = self._written.get(agent.id)
            before = seen[1] if seen is not None and seen[0] is stats else (0,) * len(_FIELDS)
            if totals == before:
                continue
            deltas = tuple(t - b for t, b in zip(totals, before, strict=True))
            error = stats.last_error if seen is None or stats.last_error != seen[2] else None
            rows.append((agent.id, *deltas, error, now))
            self._written[agent.id] = (stats, totals, stats.last_error)
        return rows

    async def write(self) -> None:
        """Write what changed since the last write (nothing when nothing did)."""
        rows = self._rows(list(self._agents()))
        if rows:
            await self.store._enqueue(add_stats(rows), None, urgent=False)  # noqa: SLF001 - the engine's store

    async def close(self) -> None:
        """Stop, after a last write."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.write()
        except Exception:  # noqa: BLE001 - closing goes on; the counts of the last interval are lost
            log.warning("agent statistics not written at close", exc_info=True)


async def read_agent_stats(store: Store) -> dict[str, dict[str, Any]]:
    """Every agent's totals in the database, by agent id: the `_FIELDS`, `last_error`, `updated_at`."""
    rows = await store.fetch(Stmt(
        f"SELECT agent_id, {', '.join(_FIELDS)}, last_error, updated_at FROM agent_stats", (), "all"))
    return {r[0]: dict(zip((*_FIELDS, "last_error", "updated_at"), r[1:], strict=True)) for r in rows}
