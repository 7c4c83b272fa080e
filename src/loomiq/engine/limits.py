"""Per-agent limits that hold across every worker on a database: concurrency and request rate.

Enable them with ``orch.open_engine(url, agent_limits={"gpt": AgentLimit(max_concurrency=2,
requests_per_minute=60)})``; every durable step of that agent then waits for both before it calls.
Agents without a limit pay nothing (no database round trip).

Mechanism (tables of schema v3 and v5, every change in one transaction of the group-commit writer):

- Concurrency: `agent_slots` has one row per (agent, slot number) up to `max_concurrency`. A step
  takes a free slot (no holder, or a holder whose claim expired after `slot_ttl_s`, so a crashed
  worker's slots come back) and frees it when it ends. At most `max_concurrency` rows exist, so at most
  that many steps hold one. PostgreSQL takes the slot row ``FOR UPDATE SKIP LOCKED``; SQLite's write
  lock serialises the transaction.
- Rate: a sliding window. `agent_rate_log` has one row per request the limit allows in a window
  (`requests_per_minute` rows per agent, made as they are first needed), each holding when its request
  started. A step may start when the agent has fewer rows than its limit, or when its oldest row
  started at least `window_s` ago; that row then takes the step's start time. So no interval of
  `window_s` ever sees more than `requests_per_minute` starts, across a window boundary included.
  The agent's row in `agent_rates` serialises its acquirers (locked ``FOR UPDATE`` on PostgreSQL) and
  counts its rows in `agent_rate_log`.

A step that may not start waits (polling with backoff, at most `poll_s`) and asks again. The limit
covers the step's whole agent call, failover included, under the agent that was asked first.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ._stmt import Dialect, Op, Outcome, Stmt
from .store import Store


@dataclass(frozen=True, slots=True)
class AgentLimit:
    """Limits of one agent across all workers. None: no limit of that kind."""

    max_concurrency: int | None = None
    requests_per_minute: int | None = None
    window_s: float = 60.0
    """The rate window (a minute; shortened in tests)."""
    slot_ttl_s: float = 600.0
    """A slot whose holder neither freed nor ended it in this time is free again (crashed holder)."""

    def __post_init__(self) -> None:
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if self.requests_per_minute is not None and self.requests_per_minute < 1:
            raise ValueError("requests_per_minute must be at least 1")


def acquire(d: Dialect, agent_id: str, holder: str, limit: AgentLimit, now: float | None = None) -> Op[Outcome]:
    """Take a slot and a request of the agent's rate if both are free. The value is
    ``(slot or None, seconds to wait or 0)``: granted when the wait is 0. `now`: by default the time
    the writer runs the operation (not when it was queued)."""
    if now is None:
        now = time.time()
    rate_slot: int | None = None  # the log row this request takes; None: a new row (or no rate limit)
    rows = 0
    rpm = limit.requests_per_minute
    if rpm is not None:
        yield Stmt(
            "INSERT INTO agent_rates (agent_id, window_start, used) VALUES (?, ?, 0) ON CONFLICT (agent_id) DO NOTHING",
            (agent_id, now),
        )
        rows = yield Stmt(f"SELECT used FROM agent_rates WHERE agent_id = ?{d.for_update}", (agent_id,), "val")
        if rows >= rpm:
            oldest = yield Stmt(
                "SELECT slot, started_at FROM agent_rate_log WHERE agent_id = ? AND slot < ? "
                "ORDER BY started_at, slot LIMIT 1", (agent_id, rpm), "one",
            )
            rate_slot, started_at = oldest
            if now - started_at < limit.window_s:
                return Outcome(value=(None, started_at + limit.window_s - now))
    slot = None
    if limit.max_concurrency is not None:
        yield Stmt(
            "INSERT INTO agent_slots (agent_id, slot) VALUES (?, ?) ON CONFLICT (agent_id, slot) DO NOTHING",
            [(agent_id, i) for i in range(limit.max_concurrency)], "many",
        )
        slot = yield Stmt(
            f"SELECT slot FROM agent_slots WHERE agent_id = ? AND slot < ? AND (holder IS NULL OR expires_at < ?) "
            f"ORDER BY slot LIMIT 1{d.skip_locked}", (agent_id, limit.max_concurrency, now), "val",
        )
        if slot is None:
            return Outcome(value=(None, 0.05))
        yield Stmt(
            "UPDATE agent_slots SET holder = ?, expires_at = ? WHERE agent_id = ? AND slot = ?",
            (holder, now + limit.slot_ttl_s, agent_id, slot),
        )
    if rpm is not None:
        if rate_slot is None:
            yield Stmt("INSERT INTO agent_rate_log (agent_id, slot, started_at) VALUES (?, ?, ?)",
                       (agent_id, rows, now))
            yield Stmt("UPDATE agent_rates SET used = ? WHERE agent_id = ?", (rows + 1, agent_id))
        else:
            yield Stmt("UPDATE agent_rate_log SET started_at = ? WHERE agent_id = ? AND slot = ?",
                       (now, agent_id, rate_slot))
    return Outcome(value=(slot, 0.0))


def release(d: Dialect, agent_id: str, slot: int, holder: str) -> Op[Outcome]:
    """Free a slot taken by `acquire` (only if `holder` still has it)."""
    yield Stmt(
        "UPDATE agent_slots SET holder = NULL, expires_at = NULL WHERE agent_id = ? AND slot = ? AND holder = ?",
        (agent_id, slot, holder),
    )
    return Outcome()


class AgentLimiter:
    """Applies `AgentLimit`s to durable steps (see the module docstring); `hold` is what
    `DurableContext` calls around a live step."""

    def __init__(self, store: Store, limits: Mapping[str, AgentLimit | Mapping[str, Any]], poll_s: float = 0.5) -> None:
        self.store = store
        self.limits = {k: v if isinstance(v, AgentLimit) else AgentLimit(**v) for k, v in limits.items()}
        self.poll_s = poll_s

    @asynccontextmanager
    async def hold(self, agent_id: str) -> AsyncIterator[None]:
        """Wait until `agent_id` may take one more call, and hold its slot for the block."""
        limit = self.limits.get(agent_id)
        if limit is None:
            yield
            return
        store, d = self.store, self.store.dialect
        holder = uuid.uuid4().hex
        pause = 0.01
        while True:
            out = await store.run_op(acquire(d, agent_id, holder, limit))
            slot, wait = out.value
            if wait == 0:
                break
            await asyncio.sleep(min(wait, pause, self.poll_s))
            pause = min(pause * 2, self.poll_s)
        try:
            yield
        finally:
            if slot is not None:
                # Shielded: a cancelled step still frees its slot.
                await asyncio.shield(store.run_op(release(d, agent_id, slot, holder)))
