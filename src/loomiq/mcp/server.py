"""`build_server`: loomiq's MCP server, whatever carries it (streamable HTTP or stdio).

Tools (each acts as the caller of its request, see `caller`):

- ``run_task`` (operator): submit a durable task in the caller's tenant and wait for it, sending a
  progress notification as each agent finishes; the result carries the output, a summary per agent
  (role, status, a short excerpt, usage, cost, duration) and the totals. A consensus of agents is one
  tool call for the MCP client.
- ``submit_task`` (operator): queue a task and return its id and resource URI at once.
- ``get_task``, ``list_agents``, ``search_knowledge`` (any role); ``cancel_task`` (operator).
- Resource template ``loomiq://tasks/{task_id}``: a task as JSON. Another tenant's task is "not found",
  as an unknown one is.

Failures the client can act on (a refused role, an unknown task or agent, a bad strategy) come back
as tool errors (``isError``) with a message naming the problem.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from pydantic import Field

from .. import __version__
from ..agents import NoAgentAvailable, UnknownAgent
from ..engine import EngineClosed, InvalidTask, Task, TaskNotFound
from ..orchestrator import Orchestrator
from ..strategies import StrategyError
from ..tools import ToolContext, ToolLoop, ToolRegistry, UnknownTool
from .caller import SCOPE_KEY, Forbidden, McpCaller

TASK_URI = "loomiq://tasks/{task_id}"
"""The URI template of a task resource."""

SUMMARY_CHARS = 280
"""How much of each agent's output the per-agent summary of ``run_task`` keeps."""

_INSTRUCTIONS = (
    "loomiq coordinates several LLM agents. Use run_task to have them answer a prompt together (strategy "
    "consensus, parallel, sequential, adaptive, single, or auto) and get the result with a summary per agent; "
    "submit_task queues a task and get_task or the loomiq://tasks/{task_id} resource reads it later."
)

OrchestratorSource = Callable[[], Orchestrator]
"""Gives the orchestrator serving a request (the HTTP app builds its own at start-up)."""

Strategy = Literal["auto", "single", "sequential", "parallel", "consensus", "adaptive"]
Priority = Literal["critical", "high", "medium", "low"]


def caller_of(ctx: Context, default: McpCaller | None) -> McpCaller:
    """The caller of the request behind `ctx`: the HTTP transport's authenticated one, else `default`
    (stdio). Raises `ToolError` when there is none, which only a misconfigured server can cause."""
    request = ctx.request_context.request
    scope = getattr(request, "scope", None)
    found = scope.get(SCOPE_KEY) if isinstance(scope, dict) else None
    if isinstance(found, McpCaller):
        return found
    if default is None:
        raise ToolError("this request carries no authenticated caller")
    return default


def summarize(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One entry per agent step of a run's result: agent, role, status, excerpt, usage, cost, duration."""
    steps = (result or {}).get("steps") or []
    out = []
    for step in steps:
        text = " ".join(str(step.get("output") or "").split())
        out.append({
            "agent": step.get("agent"),
            "role": step.get("role"),
            "status": "failed" if step.get("error") else "answered",
            "summary": text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…",
            "error": step.get("error"),
            "usage": step.get("usage"),
            "cost_usd": step.get("cost_usd"),
            "duration_ms": step.get("duration_ms"),
        })
    return out


def task_view(task: Task) -> dict[str, Any]:
    """A task as the MCP tools and resources show it: its fields, its resource URI, and, once it
    ended, the per-agent summary and the full result."""
    body = task.to_dict()
    body["uri"] = TASK_URI.format(task_id=task.id)
    if task.result is not None:
        result = dict(task.result)
        body["agents_summary"] = summarize(result)
        body["result"] = result
    return body


def build_server(
    orchestrator: OrchestratorSource,
    *,
    default_caller: McpCaller | None = None,
    name: str = "loomiq",
    tools: ToolRegistry | None = None,
) -> MCPServer:
    """loomiq's MCP server (tools and resources above).

    Args:
        orchestrator: gives the orchestrator, with its task engine open, at each request.
        default_caller: who requests without an authenticated caller act as (stdio); None for HTTP,
            where the transport puts one on every request.
        name: the server's name in the handshake.
        tools: the deployment's tools (``tools:`` of loomiq.yaml); ``search_knowledge`` runs its
            ``knowledge`` tool. Default: the built-ins with their default settings.
    """
    registry = tools if tools is not None else ToolRegistry()
    # log_level: the SDK configures the root logger (basicConfig) when none is; WARNING keeps its
    # per-request INFO lines out of the service's log.
    server: MCPServer = MCPServer(name, version=__version__, instructions=_INSTRUCTIONS, log_level="WARNING")

    def orch() -> Orchestrator:
        found = orchestrator()
        if not found.has_engine:
            raise ToolError("this server runs no task engine (LOOMIQ_TASKS=0); tasks are unavailable")
        return found

    async def find(task_id: str, caller: McpCaller) -> Task:
        try:
            task = await orch().get_task(task_id)
        except TaskNotFound:
            task = None
        except EngineClosed:
            raise ToolError("the task database is closed (the server is stopping); retry shortly") from None
        if task is None or task.tenant_id != caller.tenant:
            raise ToolError(f"no task {task_id!r} in tenant {caller.tenant!r}")
        return task

    async def submit(caller: McpCaller, action: str, prompt: str, strategy: str, agents: list[str] | None,
                     priority: Priority, timeout_s: float | None) -> Task:
        try:
            caller.require("operator", action)
        except Forbidden as exc:
            raise ToolError(str(exc)) from None
        try:
            submitted = await orch().submit(prompt, strategy=strategy, agents=agents or None, priority=priority,
                                            timeout_s=timeout_s, tenant_id=caller.tenant)
        except (StrategyError, UnknownAgent, NoAgentAvailable, InvalidTask) as exc:
            raise ToolError(f"{action}: {exc}") from None
        return submitted.task

    @server.tool(title="Run a task with loomiq's agents")
    async def run_task(
        prompt: Annotated[str, Field(min_length=1, max_length=200_000, description="What the agents should do.")],
        ctx: Context,
        strategy: Annotated[Strategy, Field(description="How the agents collaborate.")] = "auto",
        agents: Annotated[list[str] | None, Field(description="Agent ids to use (see list_agents).")] = None,
        timeout_s: Annotated[float | None, Field(gt=0, le=86_400, description="Give up after this long.")] = None,
    ) -> dict[str, Any]:
        """Run a task with several agents (a consensus by default when the prompt calls for it) and wait
        for the result: the final output, a summary per agent, usage and cost. Sends a progress
        notification as each agent finishes."""
        caller = caller_of(ctx, default_caller)
        task = await submit(caller, "run_task", prompt, strategy, agents, "high", timeout_s)
        expected = max(1, len(task.request.agents))
        done = 0
        with contextlib.suppress(TaskNotFound):
            async with contextlib.aclosing(orch().events(task.id)) as events:
                async for event in events:
                    if event.type == "step_finished":
                        done += 1
                        data = event.data
                        state = "failed" if data.get("error") else "answered"
                        await ctx.report_progress(
                            done, expected if done <= expected else None,
                            f"{data.get('agent')} ({data.get('role')}) {state} in {data.get('duration_ms', 0):.0f} ms",
                        )
                    elif event.type == "task_finished":
                        break
        view = task_view(await find(task.id, caller))
        view.pop("result", None)  # the summary is what a client reads; the full result is the resource
        return view

    @server.tool(title="Queue a task")
    async def submit_task(
        prompt: Annotated[str, Field(min_length=1, max_length=200_000, description="What the agents should do.")],
        ctx: Context,
        strategy: Annotated[Strategy, Field(description="How the agents collaborate.")] = "auto",
        agents: Annotated[list[str] | None, Field(description="Agent ids to use (see list_agents).")] = None,
        priority: Priority = "medium",
        timeout_s: Annotated[float | None, Field(gt=0, le=7 * 86_400)] = None,
    ) -> dict[str, Any]:
        """Queue a durable task and return at once with its id and resource URI; read it later with
        get_task or the resource."""
        task = await submit(caller_of(ctx, default_caller), "submit_task", prompt, strategy, agents, priority,
                            timeout_s)
        return task_view(task)

    @server.tool(title="Read a task")
    async def get_task(task_id: Annotated[str, Field(min_length=1, max_length=200)], ctx: Context) -> dict[str, Any]:
        """A task of your tenant: status, output, a summary per agent, usage and cost."""
        return task_view(await find(task_id, caller_of(ctx, default_caller)))

    @server.tool(title="Cancel a task")
    async def cancel_task(task_id: Annotated[str, Field(min_length=1, max_length=200)], ctx: Context) -> dict[str, Any]:
        """Cancel a task of your tenant (a running one is aborted; tasks waiting on it are cancelled too)."""
        caller = caller_of(ctx, default_caller)
        try:
            caller.require("operator", "cancel_task")
        except Forbidden as exc:
            raise ToolError(str(exc)) from None
        task = await find(task_id, caller)
        if task.terminal:
            raise ToolError(f"task {task_id} already ended ({task.status}); there is nothing to cancel")
        return task_view(await orch().cancel_task(task_id))

    @server.tool(title="List the agents")
    async def list_agents(ctx: Context) -> dict[str, Any]:
        """The agents you may use (the shared ones and your tenant's): id, provider, model, capabilities,
        state, success rate, latency, cost."""
        caller = caller_of(ctx, default_caller)
        return {"agents": [dict(a.snapshot()) for a in orchestrator().registry.visible_to(caller.tenant)]}

    @server.tool(title="Search the knowledge base")
    async def search_knowledge(
        query: Annotated[str, Field(min_length=1, max_length=2_000)],
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=50)] = 5,
    ) -> dict[str, Any]:
        """Search your tenant's knowledge base; each hit has its source, chunk id and text."""
        caller = caller_of(ctx, default_caller)
        return await _search_knowledge(registry, caller.tenant, query, limit)

    @server.resource(TASK_URI, name="task", title="A loomiq task", mime_type="application/json")
    async def task_resource(task_id: str, ctx: Context) -> str:
        """A task of your tenant as JSON, with its full result once it ended."""
        caller = caller_of(ctx, default_caller)
        try:
            task = await find(task_id, caller)
        except ToolError as exc:
            raise ResourceNotFoundError(str(exc)) from None
        return json.dumps(task_view(task), ensure_ascii=False, default=str)

    return server


async def _search_knowledge(registry: ToolRegistry, tenant: str, query: str, limit: int) -> dict[str, Any]:
    """The knowledge base's hits for `tenant`, through the ``knowledge`` built-in tool (its settings,
    its database), exactly as an agent's search."""
    try:
        tool = registry.get("knowledge")
    except UnknownTool as exc:
        raise ToolError(f"search_knowledge is unavailable here: {exc}") from None
    reason = tool.unavailable_reason()
    if reason is not None:
        raise ToolError(f"search_knowledge is unavailable here: {reason}")
    record = await ToolLoop([tool]).call("knowledge", {"op": "search", "query": query, "limit": limit},
                                          ToolContext(tenant_id=tenant, settings=registry.settings))
    if record.error is not None:
        raise ToolError(record.error)
    data = record.data if isinstance(record.data, dict) else {}
    return {"query": query, "hits": data.get("hits", []), "text": record.content}
