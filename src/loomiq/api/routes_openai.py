"""``/v1``: the OpenAI-compatible API, so any OpenAI client can use loomiq as a model.

Runs here are in-process (`Orchestrator.execute` / `Orchestrator.stream`): nothing is stored, and a
client that disconnects from a stream cancels its run. Errors are problem documents that also carry
OpenAI's ``error`` object (see `problems`). Wire-format decisions are in `_openai_compat`.

Streaming: when the run is a single agent's, its text is streamed as it is generated; a multi-agent
strategy's answer exists only once the run ends, so until then the stream sends SSE comments naming
each step (ignored by clients, and keeping proxies from timing out), then the answer.

Text once sent is never sent again. When the agent's call fails after streaming text and is retried
(``step_restarted``), or the step fails over to another agent (``agent_failed_over``), the new
attempt's text is checked against what the client already has: while it repeats it, nothing is sent;
past it, only the rest is sent. An attempt whose text differs from what was sent cannot be mended,
so the stream ends there with an error chunk (``code`` ``stream_restarted``, no ``[DONE]``), as
OpenAI ends a stream that fails.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..agents import Agent, NoAgentAvailable, UnknownAgent
from ..models import ModelRequest, ModelResponse, ModelSettings, unsupported_settings
from ..orchestrator import Orchestrator, RunHandle, RunPlan
from ..runtime import (
    AgentFailedOver,
    ChatHandle,
    RunFinished,
    RunResult,
    StepDelta,
    StepRestarted,
    StepStarted,
    chat_turn,
    new_run_id,
)
from ..strategies import STRATEGY_NAMES, StrategyError
from . import _openai_compat as wire
from ._openapi import AUTHENTICATED, header, problems
from .deps import OperatorDep, PrincipalDep, StateDep
from .metrics import ApiMetrics
from .problems import Problem, planning_problem
from .schemas import ChatCompletion, ModelInfo, ModelList, sse_item

router = APIRouter(prefix="/v1", tags=["openai"])

_CANCEL_GRACE_S = 5.0


def resolve_model(model: str, orch: Orchestrator, tenant: str | None = None) -> tuple[str, list[str] | None]:
    """(strategy, agents) for an OpenAI ``model``: an agent id alone (one `tenant` sees), or a strategy
    on its pick."""
    registry = orch.registry.visible_to(tenant)
    if model in registry:
        return "single", [model]
    if model in STRATEGY_NAMES:
        return model, None
    agents = ", ".join(a.id for a in registry) or "none"
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


def _problem(exc: wire.WireError) -> Problem:
    return Problem(exc.status, str(exc), param=exc.param)


def _refuse_unsupported(agent: Agent, settings: ModelSettings) -> None:
    refused = unsupported_settings(agent.model, settings)
    if refused:
        raise Problem(422, f"{refused[0]} is not supported by agent {agent.id!r} (provider {agent.config.provider}"
                      f", which has no such parameter): leave {refused[0]} out, or use another agent as the model.",
                      param=refused[0])


def _agent_request(agent: Agent, body: wire.ChatCompletionRequest) -> ModelRequest:
    """The agent model's request: the conversation, tools and settings as the client sent them."""
    if not agent.enabled:
        raise Problem(503, f"The agent {agent.id!r} is disabled: retry later, or use another model.",
                      headers={"Retry-After": "5"}, param="model")
    cfg = agent.config
    request = wire.model_request(body, cfg.system_prompt, ModelSettings(cfg.temperature, cfg.max_tokens))
    _refuse_unsupported(agent, request.settings)
    return request


def _plan(orch: Orchestrator, strategy: str, body: wire.ChatCompletionRequest, tenant: str) -> RunPlan:
    """A strategy's run: the last user message is the task, the messages before it the conversation
    every agent gets, the settings those of every agent call."""
    field = wire.uses_tools(body)
    if field is not None:
        agents = ", ".join(a.id for a in orch.registry.visible_to(tenant)) or "none"
        raise Problem(400, f"{field}: tools need an agent as the model, and {body.model!r} is a strategy. Use an "
                      f"agent id as model ({agents}) to pass tools through, or leave them out.", param=field)
    try:
        task, conversation = wire.split_messages(body.messages)
    except wire.WireError as exc:
        raise _problem(exc) from None
    settings = body.settings()
    context: dict[str, Any] = {}
    if conversation:
        context["messages"] = conversation
    if settings:
        context["model_settings"] = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
    try:
        plan = orch.plan(task, strategy=strategy, context=context or None, tenant_id=tenant)
    except (StrategyError, UnknownAgent, NoAgentAvailable) as exc:
        raise planning_problem(exc, "model") from None
    if settings:
        for agent in plan.agents:
            _refuse_unsupported(agent, ModelSettings(**settings))
    return plan


@router.get("/models", response_model=ModelList, responses=problems(*AUTHENTICATED, openai=True))
async def list_models(principal: PrincipalDep, state: StateDep) -> dict[str, Any]:
    """Every agent id (the shared agents and the tenant's own) and strategy name, each usable as ``model``."""
    agents = [(a.id, a.config.provider) for a in state.orchestrator.registry.visible_to(principal.tenant)]
    return wire.models_body(agents, STRATEGY_NAMES, state.started_at)


@router.get("/models/{model_id}", response_model=ModelInfo, responses=problems(
    *AUTHENTICATED, 404, openai=True, s404="No agent or strategy has this id (GET /v1/models lists them)."))
async def get_model(model_id: str, principal: PrincipalDep, state: StateDep) -> dict[str, Any]:
    """One agent or strategy, as an OpenAI model object."""
    orch = state.orchestrator
    resolve_model(model_id, orch, principal.tenant)  # 404 naming what exists
    agents = [(a.id, a.config.provider) for a in orch.registry.visible_to(principal.tenant) if a.id == model_id]
    body = wire.models_body(agents, [] if agents else [model_id], state.started_at)
    return body["data"][0]  # type: ignore[no-any-return]


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
    **problems(*AUTHENTICATED, 400, 404, 413, 422, 502, 503, 504, openai=True,
               s400="`tools` (or tool calls in `messages`) with a strategy as the model: tools need an agent.",
               s404="`model` is neither an agent id nor a strategy (GET /v1/models lists them).",
               s503="No healthy agent can run it now, or the server is starting: retry after Retry-After seconds."),
})
async def chat_completions(
    body: wire.ChatCompletionRequest, principal: OperatorDep, state: StateDep
) -> JSONResponse | EventSourceResponse:
    """Answer the conversation with the agent or strategy named by ``model`` (docs/openai.md)."""
    orch = state.orchestrator
    try:
        wire.check_request(body)
    except wire.WireError as exc:
        raise _problem(exc) from None
    strategy, agents = resolve_model(body.model, orch, principal.tenant)
    created = int(time.time())
    timeout_s = state.settings.run_timeout_s
    if agents is not None:
        agent = orch.registry.get(agents[0])
        request = _agent_request(agent, body)
        if body.stream:
            run_id = new_run_id()
            return _event_source(lambda: ChatHandle(agent, request, run_id=run_id, timeout_s=timeout_s), run_id,
                                 True, agent.offline, body, created, state)
        turn = await chat_turn(agent, request, sink=state.metrics.observe, timeout_s=timeout_s)
        result, response = turn.result, turn.response
    else:
        plan = _plan(orch, strategy, body, principal.tenant)
        if body.stream:
            return _event_source(lambda: RunHandle(orch, plan, timeout_s), plan.task_id,
                                 plan.strategy.name == "single", any(a.offline for a in plan.agents), body, created,
                                 state)
        result = await orch.execute(plan, sink=state.metrics.observe, timeout_s=timeout_s)
        response = None
    if result.status != "completed":
        raise failed_run_problem(result)
    headers = {"X-Loomiq-Task-Id": result.task_id}
    if result.offline:
        headers["X-Loomiq-Offline"] = "true"
    return JSONResponse(wire.completion_body(result, body.model, created, response), headers=headers)


def _event_source(start: Callable[[], RunHandle | ChatHandle], task_id: str, live: bool, offline: bool,
                  body: wire.ChatCompletionRequest, created: int, state: Any) -> EventSourceResponse:
    headers = {"X-Loomiq-Task-Id": task_id}
    if offline:
        headers["X-Loomiq-Offline"] = "true"
    stream = _stream(start, task_id, live, body, created, state.metrics)
    return EventSourceResponse(stream, sep="\n", ping=state.settings.sse_ping_s, headers=headers)


def _event(body: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(wire.encode(body), sep="\n")


async def _stream(
    start: Callable[[], RunHandle | ChatHandle],
    task_id: str,
    live: bool,
    body: wire.ChatCompletionRequest,
    created: int,
    metrics: ApiMetrics,
) -> AsyncIterator[ServerSentEvent]:
    """The run as OpenAI chunks, ending with ``data: [DONE]``; cancels the run if the client leaves.
    `live`: text is streamed as generated (one agent answers); else steps are named in comments.

    The run starts when the stream does (`start`), so a response that is never sent starts nothing.
    """
    cid, model, with_usage = f"chatcmpl-{task_id}", body.model, body.include_usage
    result: RunResult | None = None
    response: ModelResponse | None = None
    sent = ""
    """The text the client has."""
    text = ""
    """The answer's text as streamed, less what a restart voided; ahead of `sent` only while it repeats it."""
    mending = False
    """A restart voided text the client has: the new attempt's text is checked against `sent`."""
    restarts = 0

    def chunk(delta: dict[str, Any] | None, **kw: Any) -> ServerSentEvent:
        return _event(wire.chunk_body(cid, model, created, delta, with_usage_field=with_usage, **kw))

    def restarted(error: str) -> ServerSentEvent:
        message = (f"The answer restarted after {len(sent)} characters were sent ({error}) and the new attempt "
                   "differs from them; the stream cannot continue without contradicting what was sent. Retry "
                   "the request.")
        return _event({"error": {"message": message, "type": "api_error", "param": None,
                                 "code": "stream_restarted"}})

    handle = start()
    events = handle.__aiter__()
    try:
        async with contextlib.aclosing(events):
            yield chunk({"role": "assistant", "content": ""})
            async for event in events:
                metrics.observe(event)
                if isinstance(event, StepDelta) and live:
                    if not mending:
                        sent = text = sent + event.text
                        yield chunk({"content": event.text})
                        continue
                    text += event.text
                    if len(text) <= len(sent):
                        if not sent.startswith(text):
                            yield restarted("its new text differs")
                            return
                    elif text.startswith(sent):
                        rest, sent, mending = text[len(sent):], text, False
                        yield chunk({"content": rest})
                    else:
                        yield restarted("its new text differs")
                        return
                elif isinstance(event, StepRestarted | AgentFailedOver) and live:
                    # A retry voids what the failed call streamed; a failover, the whole step (one step).
                    void = event.void_chars if isinstance(event, StepRestarted) else len(text)
                    text = text[:max(0, len(text) - void)]
                    mending = mending or len(text) < len(sent)
                    restarts += 1
                elif isinstance(event, StepStarted) and not live:
                    yield ServerSentEvent(comment=f"step {event.step}: {event.agent} ({event.role})", sep="\n")
                elif isinstance(event, RunFinished):
                    result = event.result
        assert result is not None
        if isinstance(handle, ChatHandle):
            response = (await handle.turn()).response
        if result.status != "completed":
            problem = failed_run_problem(result)
            error = {"message": problem.detail, "type": "api_error", "param": None, "code": problem.slug}
            yield _event({"error": error, "loomiq": wire.loomiq_details(result)})
            return
        # Only the part not yet sent is added. After a restart, an answer that does not continue what
        # was sent (a new attempt that ended shorter) ends the stream with the error instead. (Without
        # one, a tool loop's earlier turns may have streamed text the final answer does not repeat.)
        if restarts and not result.output.startswith(sent):
            yield restarted("its answer differs")
            return
        rest = result.output[len(sent):] if result.output.startswith(sent) else ""
        if rest:
            yield chunk({"content": rest})
        if response is not None and response.tool_calls:
            yield chunk({"tool_calls": wire.tool_calls_body(response.tool_calls, indexed=True)})
        yield chunk({}, finish_reason=wire.finish_reason(response), extra={"loomiq": wire.loomiq_details(result)})
        if with_usage:
            yield _event(wire.chunk_body(cid, model, created, None, usage=result.usage))
        yield ServerSentEvent("[DONE]", sep="\n")
    finally:
        if result is None:
            # The client went away (or the stream failed): stop the run and let it finish cleanly.
            handle.cancel()
            with anyio.move_on_after(_CANCEL_GRACE_S, shield=True):
                await (handle.turn() if isinstance(handle, ChatHandle) else handle.result())
                # Everything the run emitted is queued by now, RunFinished last: count it.
                async with contextlib.aclosing(handle.__aiter__()) as remaining:
                    async for event in remaining:
                        metrics.observe(event)
