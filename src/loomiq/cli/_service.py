"""`loomiq serve`, `loomiq token` and `loomiq keys`: the HTTP service and its credentials, for local use.

The work is done by `loomiq.api` (`serve`, `issue_token`, the key store); these commands only parse
options and turn the service's errors into the CLI's one-line exits.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from ._common import fail, setup_observability

if TYPE_CHECKING:
    from ..api.keys import KeyStore

T = TypeVar("T")

keys_app = typer.Typer(
    help="Create, list and revoke API keys (stored hashed, beside the task database).",
    no_args_is_help=True,
)


def serve_command(
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", help="Turn authentication off (local use only: binds to loopback).")] = False,
    log_level: Annotated[str | None, typer.Option(
        "--log-level", help="debug, info, warning or error (default: $LOOMIQ_LOG_LEVEL, else info).",
        show_default=False)] = None,
    log_format: Annotated[str, typer.Option(
        "--log-format", help="Log lines as text or json (JSON lines with tenant, task, run and trace ids).")] = "text",
) -> None:
    """Start the whole service: API and a worker in one process, on LOOMIQ_DATABASE_URL (SQLite default)."""
    from ..api import SettingsError, serve

    setup_observability(log_format, log_level, "loomiq-api")
    level = (log_level or os.environ.get("LOOMIQ_LOG_LEVEL") or "info").lower()
    try:
        serve(host, port, no_auth, log_level=level)
    except SettingsError as exc:
        fail(str(exc))


def token_command(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the token acts for.")],
    role: Annotated[str, typer.Option("--role", help="admin, operator or viewer.")],
    subject: Annotated[str | None, typer.Option("--subject", help="The token's sub claim.")] = None,
    ttl: Annotated[float, typer.Option("--ttl", help="Seconds the token stays valid.")] = 3600.0,
) -> None:
    """Print a token signed with LOOMIQ_JWT_SECRET, on its last line."""
    from ..api import SettingsError, issue_token

    if not 0 < ttl < float("inf"):
        fail(f"--ttl must be a positive number of seconds, not {ttl:g}")
    try:
        token = issue_token(tenant, role, subject=subject, ttl_s=ttl)  # type: ignore[arg-type]
    except (SettingsError, ValueError) as exc:
        fail(str(exc))
    typer.echo(token)


def _with_keys(action: Callable[[KeyStore], Awaitable[T]]) -> T:
    """Run `action` on the API-key store of this directory's settings (the task database), with the
    keys of an earlier loomiq's key file imported; a database problem is one line and exit 2."""
    from ..api import Settings, SettingsError, open_key_store
    from ..engine import EngineError, StoreUnavailable

    async def go() -> T:
        settings = Settings.from_env()
        store = await open_key_store(settings.key_store_location)
        try:
            if settings.keys_path is None:
                await store.import_file(settings.key_store_path)
            return await action(store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(go())
    except (SettingsError, OSError, StoreUnavailable, EngineError) as exc:
        fail(str(exc))


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the key acts for.")],
    role: Annotated[str, typer.Option("--role", help="admin, operator or viewer.")],
    name: Annotated[str, typer.Option("--name", help="A label to recognise the key by.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create a key; the full key is printed this once (on the last line) and never stored."""
    from ..api.keys import InvalidKeyRequest

    try:
        created = _with_keys(lambda store: store.create(tenant, role, name))  # type: ignore[arg-type]
    except (InvalidKeyRequest, ValueError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps({**created.key.to_dict(), "key": created.secret}))
    else:
        typer.echo(f"created key {created.key.key_id} for tenant {tenant} ({role}); it is shown only once:")
        typer.echo(created.secret)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's keys.")] = None,
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked keys.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List keys (never their secrets)."""
    keys = _with_keys(lambda store: store.list_keys(tenant, include_revoked=revoked))
    if as_json:
        typer.echo(json.dumps([k.to_dict() for k in keys]))
        return
    for k in keys:
        state = "active" if k.active else f"revoked {k.revoked_at}"
        typer.echo(f"{k.key_id}  {k.tenant}  {k.role}  {k.name or '-'}  created {k.created_at}  {state}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id (the part after lq_).")]) -> None:
    """Revoke a key; every server on the database refuses it from its next request."""
    if not _with_keys(lambda store: store.revoke(key_id)):
        fail(f"no active key {key_id!r}")
    typer.echo(f"revoked {key_id}")


def register(app: typer.Typer) -> None:
    """Add `serve`, `token` and `keys` to the root app."""
    app.command("serve")(serve_command)
    app.command("token")(token_command)
    app.add_typer(keys_app, name="keys")
