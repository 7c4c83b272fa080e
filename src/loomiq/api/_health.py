"""What `/api/health` and `/api/ready` report about each component, with a status and the reason.

Components: ``database`` (the task database answers, its schema version), ``workers`` (embedded or
``loomiq worker`` processes with a recent heartbeat), ``agents`` (one entry per provider: its agents'
circuit breakers), ``mcp_servers`` (each configured MCP server: connected, failing, or not connected yet),
``sandbox`` (bubblewrap can start a sandbox here, for the code tools). Each check is bounded in time, and
the expensive ones (a real sandbox start) are cached for `CACHE_S`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any, Literal

from ..agents import Agent, AgentState

Status = Literal["ok", "degraded", "failing", "disabled"]
CACHE_S = 60.0
WORKER_STALE_S = 30.0
"""A worker whose heartbeat is older than this is not counted as live."""


def component(status: Status, reason: str, **details: Any) -> dict[str, Any]:
    return {"status": status, "reason": reason, "details": details or None}


def agents_component(agents: Iterable[Agent]) -> dict[str, Any]:
    """Per provider: how many agents, how many usable, and which have an open breaker or are disabled."""
    by_provider: dict[str, list[Agent]] = {}
    for agent in agents:
        by_provider.setdefault(agent.config.provider, []).append(agent)
    if not by_provider:
        return component("failing", "no agent is registered (register one with POST /api/agents or loomiq.yaml)")
    providers: dict[str, Any] = {}
    usable_total = 0
    for provider, members in sorted(by_provider.items()):
        open_ = sorted(a.id for a in members if a.state is AgentState.OPEN_CIRCUIT)
        off = sorted(a.id for a in members if a.state is AgentState.OFFLINE)
        degraded = sorted(a.id for a in members if a.state is AgentState.DEGRADED)
        usable = len(members) - len(open_) - len(off)
        usable_total += usable
        notes = [f"open circuit: {', '.join(open_)}"] if open_ else []
        notes += [f"disabled: {', '.join(off)}"] if off else []
        notes += [f"recent failures: {', '.join(degraded)}"] if degraded else []
        status: Status = "failing" if usable == 0 else "degraded" if notes else "ok"
        providers[provider] = component(status, f"{usable} of {len(members)} agents usable"
                                        + (f" ({'; '.join(notes)})" if notes else ""), agents=len(members),
                                        usable=usable)
    worst = _worst(p["status"] for p in providers.values())
    overall: Status = "failing" if usable_total == 0 else ("ok" if worst == "ok" else "degraded")
    reason = (f"{usable_total} usable agents across {len(providers)} provider(s)" if usable_total else
              "no usable agent: every agent is disabled or has an open circuit")
    return component(overall, reason, providers=providers)


async def database_component(engine: Any) -> tuple[dict[str, Any], list[Any] | None]:
    """The database check and, when it answered, the workers it lists."""
    try:
        async with asyncio.timeout(2):
            version = await engine.schema_version()
            workers = await engine.workers()
    except Exception as exc:  # noqa: BLE001 - any failure to read the database is what this reports
        return component("failing", f"the task database does not answer ({type(exc).__name__}: {exc})"), None
    return component("ok", f"answers (schema {version})", schema=version), workers


def workers_component(workers: list[Any] | None, embedded: bool) -> dict[str, Any]:
    if workers is None:
        return component("failing" if not embedded else "degraded", "unknown: the task database does not answer",
                         embedded=embedded)
    now = time.time()
    live = [w for w in workers if w.status == "running" and now - w.heartbeat_at < WORKER_STALE_S]
    if not live and not embedded:
        return component("failing", "no live worker: submitted tasks would not run (start `loomiq worker`, or "
                                    "set LOOMIQ_API_WORKERS)", embedded=False, live=0)
    return component("ok", f"{len(live)} live worker(s)" + (", one embedded in this server" if embedded else ""),
                     embedded=embedded, live=len(live))


class SlowChecks:
    """The checks too costly for every probe (a real sandbox start, MCP servers' state), cached."""

    def __init__(self) -> None:
        self._sandbox: tuple[float, dict[str, Any]] | None = None
        self._sources: list[Any] | None = None

    def mcp_sources(self, orchestrator: Any, config_path: Any) -> list[Any]:
        """The MCP tool sources of the orchestrator's tool registry, else those loomiq.yaml configures."""
        registry = getattr(orchestrator, "tools", None)
        if registry is not None and hasattr(registry, "sources"):
            return list(registry.sources().values())
        if self._sources is None:
            from ..config import ConfigError, load_tools

            try:
                self._sources = list(load_tools(config_path).sources().values())
            except (ConfigError, OSError):
                self._sources = []
        return self._sources

    async def sandbox(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._sandbox is not None and now - self._sandbox[0] < CACHE_S:
            return self._sandbox[1]
        from ..tools import ToolUnavailable
        from ..tools.builtin.sandbox import Sandbox

        try:
            async with asyncio.timeout(5):
                await Sandbox(warm=0).check()
            result = component("ok", "bubblewrap starts sandboxes (python, shell and javascript tools usable)")
        except ToolUnavailable as exc:
            result = component("disabled", f"the code tools are unavailable: {exc}")
        except TimeoutError:
            result = component("degraded", "starting a sandbox took over 5 s")
        self._sandbox = (now, result)
        return result


def mcp_component(sources: Iterable[Any]) -> dict[str, Any]:
    """Each configured MCP server: connected, failing (restarting), or not connected yet."""
    servers: dict[str, Any] = {}
    for source in sources:
        connection = getattr(source, "connection", None)
        name = getattr(source, "name", "?")
        if connection is None or not getattr(connection, "_started_once", False):
            servers[name] = component("ok", "configured; connects when a run first uses its tools")
        elif connection.connected:
            servers[name] = component("ok", "connected")
        else:
            servers[name] = component("degraded", f"disconnected; restarted {connection.restarts} time(s)")
    if not servers:
        return component("disabled", "no MCP server configured (mcp_servers: in loomiq.yaml)")
    worst = _worst(s["status"] for s in servers.values())
    return component(worst, f"{sum(s['status'] == 'ok' for s in servers.values())} of {len(servers)} MCP "
                            "server(s) fine", servers=servers)


def overall(components: dict[str, dict[str, Any]]) -> Literal["ok", "degraded"]:
    return "ok" if all(c["status"] in ("ok", "disabled") for c in components.values()) else "degraded"


def _worst(statuses: Iterable[str]) -> Status:
    order: dict[str, int] = {"ok": 0, "disabled": 0, "degraded": 1, "failing": 2}
    worst = max(statuses, key=lambda s: order.get(s, 1), default="ok")
    return worst  # type: ignore[return-value]  # one of the Status values
