"""`loomiq serve`, `loomiq token` and `loomiq keys`: the HTTP service and its credentials, for local use.

The work is done by `loomiq.api` (`serve`, `issue_token`, the key store); these commands only parse
options and turn the service's errors into the CLI's one-line exits.
"""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from ._common import fail, setup_observability

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


def _store():  # type: ignore[no-untyped-def]
    from ..api import Settings, SettingsError, open_key_store
    from ..engine import StoreUnavailable

    try:
        return open_key_store(Settings.from_env().key_store_location)
    except (SettingsError, OSError, StoreUnavailable) as exc:
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

    store = _store()
    try:
        created = store.create(tenant, role, name)  # type: ignore[arg-type]
    except (InvalidKeyRequest, ValueError) as exc:
        fail(str(exc))
    finally:
        store.close()
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
    store = _store()
    try:
        keys = store.list_keys(tenant, include_revoked=revoked)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([k.to_dict() for k in keys]))
        return
    for k in keys:
        state = "active" if k.active else f"revoked {k.revoked_at}"
        typer.echo(f"{k.key_id}  {k.tenant}  {k.role}  {k.name or '-'}  created {k.created_at}  {state}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id (the part after lq_).")]) -> None:
    """Revoke a key at once."""
    store = _store()
    try:
        done = store.revoke(key_id)
    finally:
        store.close()
    if not done:
        fail(f"no active key {key_id!r}")
    typer.echo(f"revoked {key_id}")


def register(app: typer.Typer) -> None:
    """Add `serve`, `token` and `keys` to the root app."""
    app.command("serve")(serve_command)
    app.command("token")(token_command)
    app.add_typer(keys_app, name="keys")
