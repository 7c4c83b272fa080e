"""`McpServerSpec`: one configured MCP server (``mcp_servers:`` in loomiq.yaml), inert.

Secrets never sit in the spec: an HTTP header's value, and any stdio environment variable that
holds a secret, is an `EnvValue` that names the environment variable to read when the server
starts (with an optional prefix, e.g. ``"Bearer "``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TIMEOUT_S = 30.0
"""Seconds one call may take, by default."""

DEFAULT_START_TIMEOUT_S = 60.0
"""Seconds a server may take to start and complete its handshake, by default."""


DEFAULT_REDIRECT_URI = "http://127.0.0.1:33418/callback"
"""Where ``loomiq mcp login`` waits for the browser to come back with the authorization code."""


class McpConfigError(ValueError):
    """A server's settings cannot be used as they are (a variable they name is not set)."""


@dataclass(frozen=True, slots=True)
class EnvValue:
    """A value read from the environment when the server starts: ``prefix + $env``."""

    env: str
    prefix: str = ""

    def resolve(self, server: str, where: str) -> str:
        """The value now; `McpConfigError` naming the server, `where` and the variable when unset."""
        value = os.environ.get(self.env)
        if not value:
            raise McpConfigError(f"MCP server {server!r}: {where}: environment variable {self.env} is not set")
        return self.prefix + value


@dataclass(frozen=True, slots=True)
class OAuthSpec:
    """How loomiq authorizes with one MCP server.

    Attributes:
        client_id: a client registered with the authorization server beforehand (else loomiq
            registers itself, or uses `client_metadata_url` where the server supports it).
        client_secret: that client's secret, read from the environment.
        scope: the scope to ask for (default: what the server's metadata advertises).
        redirect_uri: where the browser comes back with the code (``loomiq mcp login`` listens there).
        client_metadata_url: an HTTPS URL of loomiq's client metadata document, used as the client id
            by servers that support client-ID metadata documents.
    """

    client_id: str | None = None
    client_secret: EnvValue | None = None
    scope: str | None = None
    redirect_uri: str = DEFAULT_REDIRECT_URI
    client_metadata_url: str | None = None


@dataclass(frozen=True, slots=True)
class McpServerSpec:
    """How to reach one MCP server: a stdio `command` (with `args`, `env`, `cwd`) or a streamable
    HTTP `url` (with `headers`).

    Attributes:
        name: the provider name its tools join the registry under (``<name>__<tool>``).
        timeout_s: how long each call (and each tool listing) may take.
        start_timeout_s: how long starting it and its handshake may take.
        required: whether a run must stop when the server cannot start (True), or may go on
            without its tools (False).
    """

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str | EnvValue] = field(default_factory=dict)
    cwd: Path | None = None
    url: str | None = None
    headers: Mapping[str, EnvValue] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S
    required: bool = True
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S
    oauth: OAuthSpec | None = None
    """OAuth for an HTTP server that requires it (see `loomiq.tools.mcp.oauth`)."""

    def __post_init__(self) -> None:
        if (self.command is None) == (self.url is None):
            raise ValueError(f"MCP server {self.name!r}: give either 'command' (stdio) or 'url' (streamable HTTP)")
        if self.oauth is not None and self.url is None:
            raise ValueError(f"MCP server {self.name!r}: 'oauth' is for HTTP servers ('url')")

    @property
    def transport(self) -> str:
        """``stdio`` or ``http``."""
        return "stdio" if self.command is not None else "http"

    def resolved_env(self) -> dict[str, str]:
        """The stdio environment to add, variables read now (`McpConfigError` if one is unset)."""
        return {
            key: value.resolve(self.name, f"env {key!r}") if isinstance(value, EnvValue) else value
            for key, value in self.env.items()
        }

    def resolved_headers(self) -> dict[str, str]:
        """The HTTP headers, read from the environment now (`McpConfigError` if one is unset)."""
        return {key: value.resolve(self.name, f"header {key!r}") for key, value in self.headers.items()}

    def describe(self) -> str:
        """Where it is, for messages: the command line or the URL (never a header or env value)."""
        if self.command is not None:
            return " ".join((self.command, *self.args))
        return str(self.url)
