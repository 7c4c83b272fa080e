"""The dashboard's routes: pages, the fragments htmx refreshes, the task text stream, and the few actions
(cancel a task, enable or disable an agent) behind the same roles as the API and a CSRF token."""

from __future__ import annotations

import hmac
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ...engine import TaskNotFound, TaskStatus
from ..auth import LOCAL_PRINCIPAL, Principal
from ..deps import ApiState, _is_loopback, verify_credential
from ..problems import Problem
from . import overview as _overview
from .session import COOKIE, CSRF_FIELD, CSRF_HEADER, MAX_AGE_S, Session, SessionCodec

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/ui", include_in_schema=False)
LIST_ROWS = 50
"""Tasks the live list shows (the newest)."""
STATUSES = ("queued", "waiting", "running", "completed", "failed", "cancelled", "timed_out")


class _SignIn(Exception):
    """The request has no valid session: send the browser to the sign-in page."""


def _state(request: Request) -> ApiState:
    state = getattr(request.app.state, "loomiq", None)
    if state is None:
        raise Problem(503, "The server is still starting. Retry in a moment.", headers={"Retry-After": "1"})
    return cast("ApiState", state)  # Starlette's app.state is untyped; create_app puts an ApiState there


def _codec(request: Request, state: ApiState) -> SessionCodec:
    codec = getattr(request.app.state, "ui_sessions", None)
    if codec is None:
        codec = request.app.state.ui_sessions = SessionCodec(state.settings.jwt_secret)
    return codec


async def _who(request: Request) -> tuple[ApiState, Principal, Session]:
    """The signed-in principal (checked again now: a revoked key or an expired token signs out)."""
    state = _state(request)
    codec = _codec(request, state)
    session = codec.decode(request.cookies.get(COOKIE))
    if state.settings.auth_disabled:
        client = request.client.host if request.client else None
        if not _is_loopback(client):
            raise Problem(403, "This server runs without authentication (--no-auth) and serves only this machine.")
        if session is None:
            raise _SignIn
        return state, LOCAL_PRINCIPAL, session
    if session is None or session.kind not in ("key", "jwt"):
        raise _SignIn
    try:
        principal = await verify_credential(request, state, session.kind, session.credential)
    except Problem as exc:
        if exc.status == 401:
            raise _SignIn from None
        raise
    state.limiter.check(principal.tenant)
    return state, principal, session


def _check_csrf(request: Request, session: Session, form: dict[str, Any] | None = None) -> None:
    """A state-changing request must carry the session's CSRF token and come from this origin."""
    sent = request.headers.get(CSRF_HEADER) or (form or {}).get(CSRF_FIELD) or ""
    if not hmac.compare_digest(str(sent), session.csrf):
        raise Problem(403, "The form is stale or forged (missing or wrong CSRF token). Reload the page and retry.")
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise Problem(403, f"Cross-origin request from {origin} refused.")


def _page(request: Request, name: str, principal: Principal, session: Session, **data: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {
        "principal": principal, "csrf": session.csrf, "can_operate": principal.can("operator"),
        "can_admin": principal.can("admin"), "active": name.split(".")[0], **data,
    })


def _set_session(response: Response, request: Request, codec: SessionCodec, session: Session) -> None:
    response.set_cookie(COOKIE, codec.encode(session), max_age=MAX_AGE_S, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/ui")


# -- sign-in ---------------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/ui", error: str = "") -> Response:  # noqa: A002
    state = _state(request)
    if state.settings.auth_disabled:
        codec = _codec(request, state)
        response = RedirectResponse(_safe_next(next), status_code=303)
        _set_session(response, request, codec, codec.new("none", ""))
        return response
    return templates.TemplateResponse(request, "login.html", {"next": _safe_next(next), "error": error,
                                                              "principal": None, "active": "login"})


@router.post("/login")
async def login(request: Request) -> Response:
    state = _state(request)
    form = dict(await request.form())
    credential = str(form.get("credential", "")).strip()
    target = _safe_next(str(form.get("next", "/ui")))
    kind = "key" if credential.startswith("lq_") else "jwt"
    try:
        if not credential:
            raise Problem(401, "Paste a token (loomiq token) or an API key (loomiq keys create).")
        principal = await verify_credential(request, state, kind, credential)
    except Problem as exc:
        if exc.status not in (401, 429):
            raise
        message = exc.detail if exc.status == 401 else "Too many attempts; wait a moment."
        # The form again, with the reason (200: a page the browser shows, not a failed resource).
        return templates.TemplateResponse(request, "login.html", {
            "next": target, "error": message, "principal": None, "active": "login"})
    codec = _codec(request, state)
    response = RedirectResponse(target, status_code=303)
    _set_session(response, request, codec, codec.new(kind, credential))
    del principal
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    _, _, session = await _who(request)
    _check_csrf(request, session, dict(await request.form()))
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


def _safe_next(target: str) -> str:
    """Only a path of this dashboard (no open redirect)."""
    return target if target.startswith("/ui") and not target.startswith("//") and "\\" not in target else "/ui"


# -- overview --------------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
async def overview_page(request: Request) -> Response:
    state, principal, session = await _who(request)
    data = await _overview_data(state, principal)
    return _page(request, "overview.html", principal, session, o=data)


class _Shared:
    """What every dashboard of a tenant polls (the overview's figures, the task list), read once per `ttl_s`
    and shared: 50 dashboards open on one tenant cost the database what one does. Bounded (oldest dropped);
    holds the tenant's data only, never a CSRF token or anything per user."""

    def __init__(self, ttl_s: float, size: int = 256) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._entries: dict[tuple[str, ...], tuple[float, Any]] = {}

    def get(self, key: tuple[str, ...]) -> Any:
        hit = self._entries.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def put(self, key: tuple[str, ...], body: Any) -> None:
        if len(self._entries) >= self.size:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (time.monotonic() + self.ttl_s, body)


_OVERVIEWS = _Shared(2.0)
_TASK_LISTS = _Shared(1.0)


@router.get("/fragments/overview", response_class=HTMLResponse)
async def overview_fragment(request: Request) -> Response:
    state, principal, session = await _who(request)
    # The fragment shows the tenant's figures only (no CSRF token, nothing per user): rendered once per refresh
    # and shared by every dashboard of the tenant, like the figures.
    key = ("html", str(id(state)), principal.tenant)
    body = _OVERVIEWS.get(key)
    if body is None:
        data = await _overview_data(state, principal, fresh=True)
        body = bytes(_page(request, "_overview.html", principal, session, o=data).body)
        _OVERVIEWS.put(key, body)
    return HTMLResponse(body)


async def _overview_data(state: ApiState, principal: Principal, *, fresh: bool = False) -> _overview.Overview | None:
    """The tenant's figures, read at most once per `_OVERVIEWS.ttl_s` (`fresh`: read now, as for a new
    rendering of the shared fragment, so that it is never two cache periods old)."""
    if not state.settings.tasks_enabled:
        return None
    key = (str(id(state)), principal.tenant)
    data: _overview.Overview | None = None if fresh else _OVERVIEWS.get(key)
    if data is None:
        data = await _overview.overview(state.orchestrator.engine, principal.tenant)
        _OVERVIEWS.put(key, data)
    return data


# -- tasks -----------------------------------------------------------------------------------------------


@router.get("/tasks", response_class=HTMLResponse)
async def tasks_page(request: Request, status: str = "", strategy: str = "", agent: str = "") -> Response:
    state, principal, session = await _who(request)
    rows = await _tasks(state, principal, status, strategy, agent)
    return _page(request, "tasks.html", principal, session, tasks=rows, statuses=STATUSES,
                 f={"status": status, "strategy": strategy, "agent": agent}, now=time.time())


@router.get("/fragments/tasks", response_class=HTMLResponse)
async def tasks_fragment(request: Request, status: str = "", strategy: str = "", agent: str = "") -> Response:
    state, principal, session = await _who(request)
    # The rows hold the tenant's data only (no CSRF token, nothing per user): rendered once per refresh and
    # shared by every dashboard of the tenant, like the data they show.
    key = ("html", str(id(state)), principal.tenant, status, strategy, agent)
    body = _TASK_LISTS.get(key)
    if body is None:
        rows = await _tasks(state, principal, status, strategy, agent)
        body = bytes(_page(request, "_task_rows.html", principal, session, tasks=rows, now=time.time()).body)
        _TASK_LISTS.put(key, body)
    return HTMLResponse(body)


async def _tasks(state: ApiState, principal: Principal, status: str, strategy: str, agent: str) -> list[Any]:
    if not state.settings.tasks_enabled:
        return []
    key = (str(id(state)), principal.tenant, status, strategy, agent)
    rows = _TASK_LISTS.get(key)
    if rows is None:
        rows = await _read_tasks(state, principal, status, strategy, agent)
        _TASK_LISTS.put(key, rows)
    return rows  # type: ignore[no-any-return]


async def _read_tasks(state: ApiState, principal: Principal, status: str, strategy: str, agent: str) -> list[Any]:
    # checked against STATUSES, the engine's task statuses
    wanted = [cast("TaskStatus", status)] if status in STATUSES else None
    filtered = bool(strategy or agent)
    tasks = await state.orchestrator.engine.list_tasks(tenant_id=principal.tenant, status=wanted,
                                                       limit=200 if filtered else LIST_ROWS)
    if strategy:
        tasks = [t for t in tasks if t.request.strategy == strategy]
    if agent:
        tasks = [t for t in tasks if agent in t.request.agents]
    return tasks[:LIST_ROWS]


async def _task(state: ApiState, principal: Principal, task_id: str) -> Any:
    try:
        task = await state.orchestrator.engine.get_task(task_id)
    except TaskNotFound:
        task = None
    if task is None or task.tenant_id != principal.tenant:
        raise Problem(404, f"No task {task_id!r} in tenant {principal.tenant!r}.")
    return task


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
async def task_page(request: Request, task_id: str) -> Response:
    state, principal, session = await _who(request)
    task = await _task(state, principal, task_id)
    return _page(request, "task.html", principal, session, t=task, result=_result(task))


@router.get("/fragments/tasks/{task_id}", response_class=HTMLResponse)
async def task_fragment(request: Request, task_id: str) -> Response:
    state, principal, session = await _who(request)
    task = await _task(state, principal, task_id)
    return _page(request, "_task_detail.html", principal, session, t=task, result=_result(task))


def _result(task: Any) -> dict[str, Any] | None:
    import json

    raw = getattr(task, "result_json", None) or getattr(task, "result", None)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    return dict(raw) if isinstance(raw, Mapping) else None


@router.get("/tasks/{task_id}/stream")
async def task_stream(request: Request, task_id: str) -> Response:
    """The task's events as SSE (the same frames as ``/api/tasks/{id}/events``), for the signed-in tenant."""
    from .._event_stream import ENCODER

    state, principal, _ = await _who(request)
    await _task(state, principal, task_id)

    async def frames() -> AsyncIterator[bytes]:
        yield b"retry: 3000\n\n"
        async for event in state.orchestrator.events(task_id):
            yield ENCODER.sse(event)
            if await request.is_disconnected():
                return

    return StreamingResponse(frames(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/tasks/{task_id}/cancel")
async def cancel(request: Request, task_id: str) -> Response:
    state, principal, session = await _who(request)
    _check_csrf(request, session, dict(await request.form()))
    principal.require("operator", "cancel a task")
    task = await _task(state, principal, task_id)
    if not task.terminal:
        await state.orchestrator.cancel_task(task_id)
    if request.headers.get("HX-Request"):
        task = await _task(state, principal, task_id)
        return _page(request, "_task_detail.html", principal, session, t=task, result=_result(task))
    return RedirectResponse(f"/ui/tasks/{quote(task_id)}", status_code=303)


# -- agents ----------------------------------------------------------------------------------------------


@router.get("/agents", response_class=HTMLResponse)
async def agents_page(request: Request) -> Response:
    state, principal, session = await _who(request)
    return _page(request, "agents.html", principal, session, agents=_agents(state, principal))


@router.get("/fragments/agents", response_class=HTMLResponse)
async def agents_fragment(request: Request) -> Response:
    state, principal, session = await _who(request)
    return _page(request, "_agent_rows.html", principal, session, agents=_agents(state, principal))


def _agents(state: ApiState, principal: Principal) -> list[dict[str, Any]]:
    """The agents the tenant sees (the shared ones and its own), each saying whether this principal may
    enable or disable it (its own agents: its admins; shared ones: the deployment's admins)."""
    out = []
    admins = state.settings.agent_admin_tenants
    for agent in state.orchestrator.registry.visible_to(principal.tenant):
        s = agent.stats
        out.append({
            "may_change": principal.can("admin") and (agent.tenant is not None or principal.tenant in admins),
            "id": agent.id, "name": agent.config.name or agent.id, "provider": agent.config.provider,
            "model": agent.config.model, "state": str(agent.state), "enabled": agent.enabled,
            "breaker": str(agent.breaker.state), "calls": s.calls,
            "success_rate": s.successes / s.calls if s.calls else None,
            "latency_ms": s.total_latency_s / s.successes * 1000 if s.successes else None,
            "in_flight": s.in_flight, "cost_usd": s.cost_usd,
        })
    return out


@router.post("/agents/{agent_id}/{action}")
async def toggle_agent(request: Request, agent_id: str, action: str) -> Response:
    from ..routes_agents import AgentPatch, update_agent

    state, principal, session = await _who(request)
    _check_csrf(request, session, dict(await request.form()))
    if action not in ("enable", "disable"):
        raise Problem(404, f"No action {action!r}: enable or disable.")
    principal.require("admin", f"{action} an agent")
    await update_agent(agent_id, AgentPatch(enabled=action == "enable"), principal, state)
    if request.headers.get("HX-Request"):
        return _page(request, "_agent_rows.html", principal, session, agents=_agents(state, principal))
    return RedirectResponse("/ui/agents", status_code=303)


# -- alerts and costs ------------------------------------------------------------------------------------


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(request: Request) -> Response:
    state, principal, session = await _who(request)
    evaluator = state.alerts
    costs = _costs(state, principal.tenant)
    return _page(request, "alerts.html", principal, session,
                 alerts=evaluator.current() if evaluator else None,
                 events=[e.to_json() for e in list(evaluator.events)[-50:]][::-1] if evaluator else [],
                 costs=costs)


def _costs(state: ApiState, tenant: str) -> list[dict[str, Any]]:
    """The tenant's model cost and tokens by agent and model, since this server started (its metrics)."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for family in state.metrics.registry.collect():
        if family.name not in ("loomiq_model_cost_usd", "loomiq_model_tokens"):
            continue
        for sample in family.samples:
            labels = sample.labels
            if not sample.name.endswith("_total") or labels.get("tenant") != tenant:
                continue
            key = (labels["agent"], labels["provider"], labels["model"])
            row = rows.setdefault(key, {"agent": key[0], "provider": key[1], "model": key[2], "cost_usd": 0.0,
                                        "input_tokens": 0, "output_tokens": 0})
            if family.name == "loomiq_model_cost_usd":
                row["cost_usd"] += sample.value
            else:
                row[f"{labels['kind']}_tokens"] += int(sample.value)
    return sorted(rows.values(), key=lambda r: -r["cost_usd"])


# -- mounting --------------------------------------------------------------------------------------------


def mount(app: FastAPI) -> None:
    """Serve the dashboard at /ui (and its static files at /ui/static)."""
    app.mount("/ui/static", StaticFiles(directory=str(HERE / "static")), name="ui-static")
    app.include_router(router)

    @app.exception_handler(_SignIn)
    async def _sign_in(request: Request, exc: _SignIn) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": f"/ui/login?next={quote(target)}"})
        return RedirectResponse(f"/ui/login?next={quote(target)}", status_code=303)


# -- workflows and approvals -----------------------------------------------------------------------------


_WORKFLOW_RUNS: dict[int, Any] = {}


def _runs(state: ApiState) -> Any:
    """The workflow runs of the server's engine (one reader per engine; the workers drive the runs)."""
    from ...engine import WorkflowRuns

    engine = state.orchestrator.engine
    runs = _WORKFLOW_RUNS.get(id(engine))
    if runs is None or runs.engine is not engine:
        _WORKFLOW_RUNS.clear()  # one server, one engine: drop a closed engine's reader
        runs = _WORKFLOW_RUNS[id(engine)] = WorkflowRuns(engine)
    return runs


@router.get("/workflows", response_class=HTMLResponse)
async def workflows_page(request: Request) -> Response:
    state, principal, session = await _who(request)
    runs = _runs(state) if state.settings.tasks_enabled else None
    listed = await runs.list_runs(tenant_id=principal.tenant, limit=100) if runs else []
    registered = await runs.workflows(tenant_id=principal.tenant) if runs else []
    return _page(request, "workflows.html", principal, session, runs=listed, registered=registered,
                 now=time.time())


async def _workflow_view(state: ApiState, principal: Principal, run_id: str) -> dict[str, Any]:
    from ...engine import WorkflowRunNotFound as WorkflowNotFound
    from .dag import draw

    runs = _runs(state)
    try:
        status = await runs.status(run_id, tenant_id=principal.tenant)
        definition = await runs.definition(run_id, tenant_id=principal.tenant)
    except WorkflowNotFound:
        raise Problem(404, f"No workflow run {run_id!r} in tenant {principal.tenant!r}.") from None
    return {"run": status, "dag": draw(definition.nodes, status["nodes"]),
            "terminal": status["status"] in ("succeeded", "failed", "cancelled")}


@router.get("/workflows/{run_id}", response_class=HTMLResponse)
async def workflow_page(request: Request, run_id: str) -> Response:
    state, principal, session = await _who(request)
    return _page(request, "workflow.html", principal, session, **await _workflow_view(state, principal, run_id))


@router.get("/fragments/workflows/{run_id}", response_class=HTMLResponse)
async def workflow_fragment(request: Request, run_id: str) -> Response:
    state, principal, session = await _who(request)
    return _page(request, "_workflow_detail.html", principal, session,
                 **await _workflow_view(state, principal, run_id))


@router.post("/workflows/{run_id}/{action}")
async def workflow_action(request: Request, run_id: str, action: str) -> Response:
    from ...engine import WorkflowRunNotFound as WorkflowNotFound

    state, principal, session = await _who(request)
    _check_csrf(request, session, dict(await request.form()))
    if action not in ("pause", "resume", "cancel"):
        raise Problem(404, f"No action {action!r}: pause, resume or cancel.")
    principal.require("operator", f"{action} a workflow run")
    try:
        await getattr(_runs(state), action)(run_id, tenant_id=principal.tenant)
    except WorkflowNotFound:
        raise Problem(404, f"No workflow run {run_id!r} in tenant {principal.tenant!r}.") from None
    if request.headers.get("HX-Request"):
        return _page(request, "_workflow_detail.html", principal, session,
                     **await _workflow_view(state, principal, run_id))
    return RedirectResponse(f"/ui/workflows/{quote(run_id)}", status_code=303)


def _roles(principal: Principal) -> list[str]:
    return [r for r in ("viewer", "operator", "admin") if principal.can(r)]


@router.get("/approvals", response_class=HTMLResponse)
async def approvals_page(request: Request) -> Response:
    state, principal, session = await _who(request)
    return _page(request, "approvals.html", principal, session, **await _inbox(state, principal))


@router.get("/fragments/approvals", response_class=HTMLResponse)
async def approvals_fragment(request: Request) -> Response:
    state, principal, session = await _who(request)
    return _page(request, "_approval_rows.html", principal, session, **await _inbox(state, principal))


async def _inbox(state: ApiState, principal: Principal) -> dict[str, Any]:
    if not state.settings.tasks_enabled:
        return {"approvals": [], "now": time.time()}
    runs = _runs(state)
    pending = await runs.approvals(tenant_id=principal.tenant, status="pending")
    roles = set(_roles(principal))
    items = []
    for a in pending:
        may = principal.can("operator") and (bool(roles & set(a.roles)) or principal.subject in a.subjects)
        items.append({"a": a, "may_answer": may})
    return {"approvals": items, "now": time.time()}


@router.post("/approvals/{approval_id}")
async def answer_approval(request: Request, approval_id: str) -> Response:
    from ...engine import ApprovalConflict, ApprovalForbidden, ApprovalNotFound

    state, principal, session = await _who(request)
    form = dict(await request.form())
    _check_csrf(request, session, form)
    principal.require("operator", "answer an approval")
    decision = str(form.get("decision", ""))
    if decision not in ("approve", "reject"):
        raise Problem(422, "decision must be approve or reject.")
    try:
        await _runs(state).answer(approval_id, subject=principal.subject, roles=_roles(principal),
                                  decision=decision, comment=str(form.get("comment", ""))[:4000],
                                  tenant_id=principal.tenant, idempotency_key=str(form.get("key") or "") or None)
    except ApprovalNotFound:
        raise Problem(404, f"No approval {approval_id!r} in tenant {principal.tenant!r}.") from None
    except ApprovalForbidden:
        raise Problem(403, f"You ({principal.subject}) are not among the approvers of {approval_id}.") from None
    except ApprovalConflict as exc:
        raise Problem(409, str(exc)) from None
    if request.headers.get("HX-Request"):
        return _page(request, "_approval_rows.html", principal, session, **await _inbox(state, principal))
    return RedirectResponse("/ui/approvals", status_code=303)
