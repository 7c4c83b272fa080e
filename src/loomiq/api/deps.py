"""FastAPI dependencies, as `Annotated` aliases: the service's state, and the authenticated caller
with the role a route needs (`PrincipalDep` any role, `OperatorDep`, `AdminDep`).

Authentication order: ``X-API-Key``, then ``Authorization: Bearer`` (an ``lq_`` key or a JWT); on a
WebSocket, whose browser clients cannot set headers, also the ``access_token`` query parameter.
Every authenticated request then spends one token of its tenant's rate bucket.

Every dependency is ``async def``, also those that do not await: FastAPI runs a plain ``def``
dependency in its thread pool, a thread hop (and a wait for the GIL under load) for nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, cast

from fastapi import Depends
from starlette.requests import HTTPConnection

from ..orchestrator import Orchestrator
from ._health import SlowChecks
from .alerts import AlertEvaluator
from .auth import LOCAL_PRINCIPAL, Principal, Role, TokenVerifier, unauthenticated
from .keys import KeyStore, KeyVerifier
from .limits import TenantRateLimiter
from .metrics import ApiMetrics
from .problems import Problem
from .settings import Settings


@dataclass(slots=True)
class ApiState:
    """What the routes share, built by the app's lifespan."""

    settings: Settings
    orchestrator: Orchestrator
    keys: KeyStore
    key_verifier: KeyVerifier
    tokens: TokenVerifier | None
    limiter: TenantRateLimiter
    metrics: ApiMetrics
    started_at: int
    """Unix time the app started (the ``created`` of ``/v1/models`` entries)."""
    worker: asyncio.Task[None] | None = None
    """The embedded worker's task, when this process runs one."""
    alerts: AlertEvaluator | None = None
    """The alert rules of loomiq.yaml, when it has some."""
    health_checks: SlowChecks = field(default_factory=SlowChecks)
    """The cached component checks of `/api/health` and `/api/ready`."""


async def get_state(connection: HTTPConnection) -> ApiState:
    """The app's `ApiState`; 503 while the app is still starting."""
    state = getattr(connection.app.state, "loomiq", None)
    if state is None:
        raise Problem(503, "The server is still starting. Retry in a moment.", headers={"Retry-After": "1"})
    return cast("ApiState", state)  # Starlette's app.state is untyped; create_app puts an ApiState there


StateDep = Annotated[ApiState, Depends(get_state)]


async def get_orchestrator(state: StateDep) -> Orchestrator:
    """The app's orchestrator."""
    return state.orchestrator


OrchestratorDep = Annotated[Orchestrator, Depends(get_orchestrator)]


def _is_loopback(host: str | None) -> bool:
    """True for a client address on this machine. Only an IP address counts: an in-process test
    client that should count as local says so with its transport's client address."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _credentials(connection: HTTPConnection) -> tuple[str, str] | None:
    """("key" | "jwt", credential) from the request, or None when it carries none."""
    key = connection.headers.get("x-api-key")
    if key:
        return "key", key.strip()
    header = connection.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise unauthenticated("Use 'Authorization: Bearer <token or lq_ API key>' or the X-API-Key header.")
        return ("key" if value.startswith("lq_") else "jwt"), value
    if connection.scope["type"] == "websocket":
        token = connection.query_params.get("access_token")
        if token:
            return ("key" if token.startswith("lq_") else "jwt"), token
    return None


async def authenticate(connection: HTTPConnection, state: StateDep) -> Principal:
    """The caller of this request, rate-limited per tenant. 401 problem when unauthenticated."""
    if state.settings.auth_disabled:
        client = connection.client.host if connection.client else None
        if not _is_loopback(client):
            raise Problem(403, "This server runs without authentication (--no-auth) and serves only this machine.")
        principal = LOCAL_PRINCIPAL
    else:
        found = _credentials(connection)
        if found is None:
            raise unauthenticated(
                "This request needs credentials: 'Authorization: Bearer <JWT>' (see `loomiq token`) or an API key "
                "in X-API-Key (see `loomiq keys create`)."
            )
        principal = await verify_credential(connection, state, *found)
    state.limiter.check(principal.tenant)
    return principal


async def verify_credential(connection: HTTPConnection, state: ApiState, kind: str, credential: str) -> Principal:
    """The principal a credential (``key``: an API key; ``jwt``: a token) stands for, checked now (a
    revoked key or an expired token is refused). 401 problem when it stands for none."""
    if kind == "key":
        client = connection.client.host if connection.client else "unknown"

        def charge() -> None:
            # A key not verified lately costs an argon2 hash: charge the client's address, so that
            # guessing keys cannot take the CPU from everyone else.
            # (Tenant ids cannot contain ':', so these buckets never meet a tenant's.)
            state.limiter.check(f"address:{client}", f"Address {client}")

        record = await state.key_verifier.verify(credential, charge)
        if record is None:
            raise unauthenticated("The API key is unknown, revoked, or mistyped. Create one with `loomiq keys "
                                  "create`.")
        principal = Principal(f"key:{record.key_id}", record.tenant, record.role, "api_key", record.key_id)
    else:
        if state.tokens is None:
            raise unauthenticated("This server accepts API keys only; send one in X-API-Key.")
        principal = state.tokens.verify(credential)
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]
"""The authenticated caller, any role (reading needs no more)."""


def _requiring(role: Role) -> Callable[[HTTPConnection, Principal], Awaitable[Principal]]:
    async def dependency(connection: HTTPConnection, principal: PrincipalDep) -> Principal:
        method = getattr(connection, "method", "WS")
        route = connection.scope.get("route")
        principal.require(role, f"{method} {getattr(route, 'path', connection.url.path)}")
        return principal

    return dependency


OperatorDep = Annotated[Principal, Depends(_requiring("operator"))]
"""The authenticated caller, who must be an operator or admin (submit, cancel)."""

AdminDep = Annotated[Principal, Depends(_requiring("admin"))]
"""The authenticated caller, who must be an admin (agents, keys)."""
