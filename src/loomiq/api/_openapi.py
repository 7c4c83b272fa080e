"""The OpenAPI document as a contract: what each route declares beside its response model, and the
touches FastAPI's generator cannot make.

Routes declare every error they can answer with `problems` (the RFC 9457 schema, with a description
of when that status happens), their response headers with `header`, and `links` from a created
resource to the operations on it (what OpenAPI clients and stateful tests follow). `finish_document`
then, once per app:

- serves every 4xx/5xx response as ``application/problem+json`` (FastAPI lists a response model under
  ``application/json``), and drops FastAPI's default 422 (a ``HTTPValidationError`` under
  ``application/json``, added to every operation with parameters): this API never answers that, and
  a route whose input can be invalid declares ``problems(422)`` itself;
- declares the two credentials (a bearer JWT or ``lq_`` key, and ``X-API-Key``) and marks every
  operation whose route depends on `authenticate` as needing one.

Operation ids are the route functions' names (``submit_task``, ``get_task``...), which links use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from .deps import authenticate
from .problems import PROBLEM_JSON
from .schemas import OpenAIProblemDocument, ProblemDocument

WHEN: dict[int, str] = {
    400: "The request cannot be read.",
    401: "No credentials, or they are invalid, expired or revoked.",
    403: "The caller's role may not do this (or, under --no-auth, the client is not on this machine).",
    404: "Not found (another tenant's resource answers 404 too).",
    409: "Conflicts with the resource's current state.",
    413: "The request body is over the server's limit (LOOMIQ_MAX_BODY_BYTES).",
    422: "The request is invalid: `errors` names each invalid field and why.",
    429: "The tenant is over its request rate: retry after Retry-After seconds.",
    502: "Every agent failed.",
    503: "Not available now (the server is starting, or the task database cannot be reached): retry after "
         "Retry-After seconds.",
    504: "The run did not finish in time.",
}
"""When each status happens, for routes that do not say more."""

AUTHENTICATED = (401, 403, 429, 503)
"""What any route behind `authenticate` can answer: no or bad credentials, the role (or --no-auth from
another machine), the tenant's rate, the server still starting."""

_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


def problems(*statuses: int, openai: bool = False, **when: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for error statuses, each a problem document; `when` overrides the
    description of a status (``problems(404, 409, s409="the task already ended")``)."""
    model = OpenAIProblemDocument if openai else ProblemDocument
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        entry: dict[str, Any] = {"model": model, "description": when.get(f"s{status}", WHEN[status])}
        if status in (429, 503):
            entry["headers"] = _RETRY_AFTER
        out[status] = entry
    return out


def header(description: str, **schema: Any) -> dict[str, Any]:
    """A response header's declaration (a string unless `schema` says otherwise)."""
    return {"description": description, "schema": schema or {"type": "string"}}


def links(operations: Mapping[str, str], parameter: str, expression: str = "$response.body#/id") -> dict[str, Any]:
    """OpenAPI links from a response to operations that take its resource's id as `parameter`:
    ``{"GetTask": "get_task", ...}`` (link name -> operation id)."""
    return {
        name: {"operationId": operation, "parameters": {parameter: expression}}
        for name, operation in operations.items()
    }


def operation_id(route: APIRoute) -> str:
    """The operation id of a route: its function's name, stable and readable (links use them; the
    names are unique across the app)."""
    return route.name


SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A JWT (`loomiq token`, or your issuer's), or an API key (`lq_...`, `loomiq keys create`).",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key (`lq_...`)."},
}


def _depends_on(dependant: Dependant, call: Callable[..., Any]) -> bool:
    pending = [dependant]
    while pending:
        current = pending.pop()
        if current.call is call:
            return True
        pending.extend(current.dependencies)
    return False


def finish_document(app: FastAPI, document: dict[str, Any]) -> dict[str, Any]:
    """Make FastAPI's `document` for `app` say what the service does (see the module docstring)."""
    secured = {
        (method.lower(), context.path_format)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute) and _depends_on(context.dependant, authenticate)
        for method in context.methods or ()
    }
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.get("responses", {})
            if "HTTPValidationError" in str(responses.get("422", {}).get("content", {})):
                del responses["422"]
            for status, response in responses.items():
                content = response.get("content", {})
                if status[0] in "45" and "application/json" in content:
                    content[PROBLEM_JSON] = content.pop("application/json")
            if (method, path) in secured:
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
    components = document.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    schemas = components.get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


def install(app: FastAPI) -> None:
    """Serve `finish_document`'s document at ``/openapi.json`` (built once, on first request)."""
    generate = app.openapi
    finished: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        document = generate()  # FastAPI caches it (and rebuilds it if routes are added)
        if not finished or finished[0] is not document:
            finished[:] = [finish_document(app, document)]
        return document

    app.openapi = openapi  # type: ignore[method-assign]
