"""`McpCaller`: who an MCP request acts as, and where the transports put it.

Over HTTP the service authenticates every request exactly as its API does (bearer JWT or API key)
and stores the caller in the ASGI scope under `SCOPE_KEY`; tools read it back from the request that
carried their call, so roles and tenants apply per request, whatever session the request uses.
Over stdio the process acts as the caller it was started with (``loomiq mcp serve --tenant --role``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "operator", "viewer"]
_RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}

SCOPE_KEY = "loomiq.mcp.caller"
"""The ASGI scope key under which the HTTP transport puts the request's `McpCaller`."""


class Forbidden(Exception):
    """The caller's role does not allow the action; the message says which role it needs."""


@dataclass(frozen=True, slots=True)
class McpCaller:
    """Who calls: `subject`, in `tenant`, with `role` (admin > operator > viewer)."""

    subject: str
    tenant: str
    role: Role

    def require(self, role: Role, action: str) -> None:
        """Raise `Forbidden` unless this caller has at least `role`."""
        if _RANK[self.role] < _RANK[role]:
            raise Forbidden(
                f"{action} needs the {role} role; this caller ({self.subject}) has the {self.role} role in tenant "
                f"{self.tenant!r} (admin: everything; operator: run, submit and cancel tasks; viewer: read)"
            )
