"""``/v1``: the OpenAI-compatible API, so any OpenAI client can use loomiq as a model.

Runs here are in-process (`Orchestrator.execute` / `Orchestrator.stream`): nothing is stored, and a
client that disconnects from a stream cancels its run. Errors are problem documents that also carry
OpenAI's ``error`` object (see `problems`). Wire-format decisions are in `_openai_compat`.

Streaming: when the run is a single agent's, its text is streamed as it is generated; a multi-agent
strategy's answer exists only once the run ends, so until then the stream sends SSE comments naming
each step (ignored by clients, and keeping proxies from timing out), then the answer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..agents import NoAgentAvailable, UnknownAgent
from ..orchestrator import Orchestrator, RunHandle, RunPlan
from ..runtime import RunFinished, RunResult, StepDelta, StepStarted
from ..strategies import STRATEGY_NAMES, StrategyError
from . import _openai_compat as wire
from ._openapi import AUTHENTICATED, header, problems
from .deps import OperatorDep, PrincipalDep, StateDep
from .metrics import ApiMetrics
from .problems import Problem, planning_problem
from .schemas import ChatCompletion, ModelList, sse_item

router = APIRouter(prefix="/v1", tags=["openai"])

_CANCEL_GRACE_S = 5.0


def resolve_model(model: str, orch: Orchestrator) -> tuple[str, list[str] | None]:
    """(strategy, agents) for an OpenAI ``model``: an agent id alone, or a strategy on its pick."""
    if model in orch.registry:
        return "single", [model]
    if model in STRATEGY_NAMES:
        return model, None
    agents = ", ".join(a.id for a in orch.registry) or "none"
    raise Problem(
        404,
        f"The model {model!r} does not exist here. Use an agent id ({agents}) or a strategy "
        f"({', '.join(STRATEGY_NAMES)}); GET /v1/models lists them.",
        slug="model-not-found",
        param="model",
    )


def failed_run_problem(result: RunResult) -> Problem:
    """The problem for a run that produced no answer (all agents failed, or it timed out)."""
    failures = "; ".join(f"{agent}: {error}" for agent, error in result.failed.items()) or result.error or "unknown"
    details = wire.loomiq_details(result)
    if result.status == "timed_out":
        return Problem(504, f"The run {result.task_id} did not finish in time ({result.error}). Retry, or use a "
                       "faster model.", loomiq=details)
    return Problem(502, f"No agent could answer (run {result.task_id}): {failures}. Retry later, or use another "
                   "model.", loomiq=details)


def _plan(orch: Orchestrator, body: wire.ChatCompletionRequest) -> RunPlan:
    split = wire.split_messages(body.messages)
    if split is None:
        raise Problem(422, "messages has no user message with text: the last user message is the request.",
                      param="messages")
    task, context = split
    strategy, agents = resolve_model(body.model, orch)
    try:
        return orch.plan(wire.compose_prompt(task, context), strategy=strategy, agents=agents,
                         context={"messages": context} if context else None)
    except (StrategyError, UnknownAgent, NoAgentAvailable) as exc:
        raise planning_problem(exc, "model") from None


@router.get("/models", response_model=ModelList, responses=problems(*AUTHENTICATED, openai=True))
async def list_models(_: PrincipalDep, state: StateDep) -> dict[str, Any]:
    """Every agent id and strategy name, each usable as ``model``."""
    agents = [(a.id, a.config.provider) for a in state.orchestrator.registry]
    return wire.models_body(agents, STRATEGY_NAMES, state.started_at)


_STREAM = """With `"stream": true`: OpenAI's chunks as server-sent events, `data: <chat.completion.chunk JSON>`
frames ending with `data: [DONE]`; a run that fails mid-stream sends `data: {"error": ...}` instead.
A single agent's text streams as it is generated; a strategy's answer comes once the run ends, after
comment lines (`: step ...`) that name each step."""


@router.post("/chat/completions", response_model=None, responses={
    200: {
        "model": ChatCompletion,
        "description": "The answer (a `chat.completion`), or with `stream` the chunks as server-sent events.",
        "content": {"text/event-stream": {"schema": {**sse_item(), "description": _STREAM}}},
        "headers": {"X-Loomiq-Task-Id": header("The run's id."),
                    "X-Loomiq-Offline": header("'true' when scripted (offline) agents answered.")},
    },
    **problems(*AUTHENTICATED, 404, 413, 422, 502, 503, 504, openai=True,
               s404="`model` is neither an agent id nor a strategy (GET /v1/models lists them).",
               s503="No healthy agent can run it now, or the server is starting: retry after Retry-After seconds."),
})
async def chat_completions(
    body: wire.ChatCompletionRequest, _: OperatorDep, state: StateDep
) -> JSONResponse | EventSourceResponse:
    """Run the conversation's last user message with the agent or strategy named by ``model``."""
    orch = state.orchestrator
    plan = _plan(orch, body)
    created = int(time.time())
    if body.stream:
        stream = _stream(orch, plan, state.settings.run_timeout_s, body, created, state.metrics)
        headers = {"X-Loomiq-Task-Id": plan.task_id}
        if any(a.offline for a in plan.agents):
            headers["X-Loomiq-Offline"] = "true"
        return EventSourceResponse(stream, sep="\n", ping=state.settings.sse_ping_s, headers=headers)
    result = await orch.execute(plan, sink=state.metrics.observe, timeout_s=state.settings.run_timeout_s)
    if result.status != "completed":
        raise failed_run_problem(result)
    headers = {"X-Loomiq-Task-Id": result.task_id}
    if result.offline:
        headers["X-Loomiq-Offline"] = "true"
    return JSONResponse(wire.completion_body(result, body.model, created), headers=headers)


def _event(body: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(wire.encode(body), sep="\n")


async def _stream(
    orch: Orchestrator,
    plan: RunPlan,
    timeout_s: float,
    body: wire.ChatCompletionRequest,
    created: int,
    metrics: ApiMetrics,
) -> AsyncIterator[ServerSentEvent]:
    """The run as OpenAI chunks, ending with ``data: [DONE]``; cancels the run if the client leaves.

    The run starts when the stream does, so a response that is never sent starts nothing.
    """
    handle = RunHandle(orch, plan, timeout_s)
    cid, model, with_usage = f"chatcmpl-{handle.task_id}", body.model, body.include_usage
    live = handle.plan.strategy.name == "single"
    result: RunResult | None = None
    sent = ""

    def chunk(delta: dict[str, Any] | None, **kw: Any) -> ServerSentEvent:
        return _event(wire.chunk_body(cid, model, created, delta, with_usage_field=with_usage, **kw))

    events = handle.__aiter__()
    try:
        async with contextlib.aclosing(events):
            yield chunk({"role": "assistant", "content": ""})
            async for event in events:
                metrics.observe(event)
                if isinstance(event, StepDelta) and live:
                    sent += event.text
                    yield chunk({"content": event.text})
                elif isinstance(event, StepStarted) and not live:
                    yield ServerSentEvent(comment=f"step {event.step}: {event.agent} ({event.role})", sep="\n")
                elif isinstance(event, RunFinished):
                    result = event.result
        assert result is not None
        if result.status != "completed":
            problem = failed_run_problem(result)
            error = {"message": problem.detail, "type": "api_error", "param": None, "code": problem.slug}
            yield _event({"error": error, "loomiq": wire.loomiq_details(result)})
            return
        # A failover after text was streamed can make the answer differ from what was sent; then
        # only the part not yet sent can be added.
        rest = result.output[len(sent):] if result.output.startswith(sent) else ""
        if rest:
            yield chunk({"content": rest})
        yield chunk({}, finish_reason="stop", extra={"loomiq": wire.loomiq_details(result)})
        if with_usage:
            yield _event(wire.chunk_body(cid, model, created, None, usage=result.usage))
        yield ServerSentEvent("[DONE]", sep="\n")
    finally:
        if result is None:
            # The client went away (or the stream failed): stop the run and let it finish cleanly.
            handle.cancel()
            with anyio.move_on_after(_CANCEL_GRACE_S, shield=True):
                await handle.result()
                # Everything the run emitted is queued by now, RunFinished last: count it.
                async with contextlib.aclosing(handle.__aiter__()) as remaining:
                    async for event in remaining:
                        metrics.observe(event)
