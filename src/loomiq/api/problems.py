"""RFC 9457 problem details: every error the service answers is ``application/problem+json``.

A body always has ``type``, ``title``, ``status``, ``detail`` (what went wrong and what to do about it)
and ``instance`` (the request path). Under ``/v1`` (the OpenAI-compatible API) it also carries an
``error`` member in OpenAI's shape, an extension member RFC 9457 allows, so that OpenAI SDKs read the
message and raise their usual exception classes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..agents import NoAgentAvailable, UnknownAgent, UnknownCapability
from ..engine import StoreUnavailable

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:loomiq:problem:"

log = logging.getLogger("loomiq.api")

# status -> (slug used in `type`, title)
_KINDS: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Not allowed for this role"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("body-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-request", "Invalid request"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal-error", "Internal server error"),
    502: ("upstream-failed", "The agents failed"),
    503: ("unavailable", "Service unavailable"),
    504: ("timed-out", "Timed out"),
}

_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


class Problem(Exception):
    """An error answered as a problem document. Raise it from a route or a dependency.

    Args:
        status: HTTP status.
        detail: what went wrong, written so a person can act on it.
        slug: the last part of ``type`` (defaults to the status's kind, e.g. ``not-found``).
        title: short summary (defaults to the status's kind).
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``...).
        param: the request field at fault, when one is (OpenAI's ``param``).
        extensions: extra members of the problem document.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        param: str | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        kind_slug, kind_title = _KINDS.get(status, ("error", "Error"))
        self.status = status
        self.detail = detail
        self.slug = slug or kind_slug
        self.title = title or kind_title
        self.headers = dict(headers or {})
        self.param = param
        self.extensions = extensions


def problem_body(problem: Problem, instance: str) -> dict[str, Any]:
    """The JSON document of `problem` for a request to `instance`."""
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": instance,
        **problem.extensions,
    }
    if instance.startswith("/v1/") or instance == "/v1":
        fallback = "api_error" if problem.status >= 500 else "invalid_request_error"
        body["error"] = {
            "message": problem.detail,
            "type": _OPENAI_TYPES.get(problem.status, fallback),
            "param": problem.param,
            "code": problem.slug.replace("-", "_"),
        }
    return body


def problem_response(problem: Problem, instance: str) -> JSONResponse:
    """`problem` as an ``application/problem+json`` response."""
    return JSONResponse(
        problem_body(problem, instance), status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON
    )


def field_name(loc: Sequence[Any]) -> str:
    """``("body", "messages", 0, "role")`` -> ``messages[0].role``; the location part is dropped."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def validation_problem(errors: Sequence[Mapping[str, Any]]) -> Problem:
    """A 422 problem naming each invalid field and why (`errors` as pydantic or FastAPI give them)."""
    listed = []
    for err in errors:
        loc = list(err.get("loc", ()))
        where = loc[0] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else "body"
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            pos = loc[1] if len(loc) > 1 else 0
            message = f"the body is not valid JSON ({ctx.get('error', 'decode error')} at character {pos})"
            listed.append({"field": "body", "in": "body", "message": message})
            continue
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        listed.append({"field": field_name(loc), "in": where, "message": message})
    if not listed:
        return Problem(422, "The request is invalid.")
    first = listed[0]
    more = f" (and {len(listed) - 1} more problem{'s' if len(listed) > 2 else ''}, listed in 'errors')" if len(
        listed
    ) > 1 else ""
    detail = (
        first["message"]
        if first["field"] == "body" and first["message"].startswith("the body")
        else f"{first['in']} field '{first['field']}': {first['message']}"
    )
    return Problem(422, f"{detail}{more}. Fix the request and send it again.", param=first["field"], errors=listed)


def planning_problem(exc: Exception, param: str) -> Problem:
    """The problem for a run that cannot be planned (`StrategyError`, `UnknownAgent`,
    `NoAgentAvailable`); `param` is the request field that chose the plan. A strategy error names
    the argument at fault (``prompt``, ``strategy``, ``agents``, ``options``): the problem names
    that body field (under ``/v1``, where ``model`` chose the plan, ``messages`` for the prompt)."""
    if isinstance(exc, UnknownCapability):
        return Problem(422, f"body field 'capabilities': {exc}. Ask for capabilities the agents have "
                       "(GET /api/agents lists them).", param="capabilities")
    if isinstance(exc, NoAgentAvailable):
        return Problem(503, f"{exc}: the run cannot start now. Retry later, or enable an agent.",
                       headers={"Retry-After": "5"}, param=param)
    argument = getattr(exc, "argument", None)
    if param == "model":
        field = "messages" if argument == "prompt" else param
    else:
        field = argument or param
    hint = " Use one of the known agent ids." if isinstance(exc, UnknownAgent) else ""
    status = 404 if isinstance(exc, UnknownAgent) and param == "model" else 422
    return Problem(status, f"body field '{field}': {exc}.{hint}", param=field)


def _http_problem(request: Request, exc: StarletteHTTPException) -> Problem:
    status = exc.status_code
    if status == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI answers 400 for a body that is not UTF-8, and 422 for one that is not JSON: both are
        # a body that cannot be read as JSON, answered alike.
        return validation_problem([{"type": "json_invalid", "loc": ("body", exc.__cause__.start),
                                    "ctx": {"error": "not UTF-8 text"}}])
    headers = dict(exc.headers or {})
    given = exc.detail if isinstance(exc.detail, str) else None
    generic = given is None or given.lower() in ("not found", "method not allowed", "content too large")
    if status == 404 and generic:
        detail = (
            f"No resource at {request.method} {request.url.path}. Check the path; the API's routes are listed "
            "at /docs."
        )
    elif status == 405:
        allowed = headers.get("Allow") or headers.get("allow") or ""
        detail = f"{request.method} is not allowed on {request.url.path}" + (
            f"; use {allowed}." if allowed else "."
        )
    elif status == 413 and generic:
        limit = getattr(request.app.state, "max_body_bytes", None)
        detail = "The request body is too large" + (f": the limit is {limit} bytes." if limit is not None else ".")
    else:
        detail = given or f"HTTP {status}."
    return Problem(status, detail, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of `app` (routing, validation, `Problem`, unexpected) as problem details."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc, request.url.path)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(_http_problem(request, exc), request.url.path)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(validation_problem(exc.errors()), request.url.path)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        ident = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s on %s %s", ident, request.method, request.url.path, exc_info=exc)
        problem = Problem(
            500,
            f"An unexpected error occurred; it was logged as {ident}. Retry the request, and report {ident} to "
            "the operator if it happens again.",
            error_id=ident,
        )
        return problem_response(problem, request.url.path)

    async def on_store_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s %s: the task database is unavailable: %s", request.method, request.url.path, exc)
        problem = Problem(
            503,
            "The task database cannot be reached right now (it may be restarting). Retry in a few seconds; "
            "resend a submission with the same Idempotency-Key so that it is never accepted twice.",
            headers={"Retry-After": "2"},
        )
        return problem_response(problem, request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StoreUnavailable, on_store_unavailable)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(WebSocketRequestValidationError, _on_ws_validation)
    app.add_exception_handler(Exception, on_unexpected)


async def _on_ws_validation(websocket: Any, exc: Exception) -> None:
    from starlette.websockets import WebSocket

    assert isinstance(websocket, WebSocket) and isinstance(exc, WebSocketRequestValidationError)
    await refuse_websocket(websocket, validation_problem(exc.errors()))


async def refuse_websocket(websocket: Any, problem: Problem) -> None:
    """Refuse a WebSocket handshake: a problem response where the server can send one (most can;
    browsers show only the status), else accept and close with 4000 + status (4401, 4404, 4422...)
    and the detail as reason (cut to the protocol's 123 bytes)."""
    response = problem_response(problem, websocket.url.path)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:
        await websocket.accept()
        await websocket.close(4000 + problem.status, problem.detail.encode()[:120].decode(errors="ignore"))
