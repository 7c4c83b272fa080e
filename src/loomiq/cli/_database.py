"""The engine's database from the command line, for every command that works on it (the durable tasks,
`loomiq worker`, `loomiq run --durable`, the workflow runs): which database (``--database URL``, else
``$LOOMIQ_DATABASE_URL``, else the SQLite file ``loomiq.db`` in the working directory), opening it
around a command's body, and the problems the user can fix (a database that cannot be opened or
refuses a write, an unknown task, a blank tenant) as one ``loomiq: error: ...`` line with exit code 2.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import typer

from ..agents import NoAgentAvailable, UnknownAgent
from ..config import ConfigError
from ..orchestrator import Orchestrator
from ..strategies import StrategyError
from ._common import fail

if TYPE_CHECKING:
    from ..engine import EngineConfig

T = TypeVar("T")

DatabaseOption = Annotated[str | None, typer.Option(
    "--database", help="Database URL (default: $LOOMIQ_DATABASE_URL, else sqlite:///loomiq.db here).",
    show_default=False,
)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def database_url(url: str | None) -> str:
    """`url`, else ``$LOOMIQ_DATABASE_URL``, else the engine's default (``sqlite:///loomiq.db``)."""
    from ..engine import database_url as engine_url

    return engine_url(url)


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _sqlite_file(url: str) -> str | None:
    from ..engine import database_file

    try:
        return database_file(url)
    except ValueError as exc:
        fail(str(exc))


def _require_database(url: str) -> None:
    path = _sqlite_file(url)
    if path is not None and not os.path.exists(path):
        fail(f"no database at {path} (submit a task first, or point --database / $LOOMIQ_DATABASE_URL "
             "at the engine's database)")


def print_json(data: Any) -> None:
    """`data` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def when(ts: float | None) -> str:
    """A timestamp as local ISO time to the second; ``-`` for none."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


async def with_engine(url: str | None, orch: Orchestrator, body: Callable[[Orchestrator], Awaitable[T]],
                       *, create: bool = True, config: EngineConfig | None = None) -> T:
    """Open the engine on `url` for `orch` (with `config`), run `body`, close everything. A database
    that cannot be opened (or, unless `create`, a SQLite file that does not exist) is a one-line error."""
    resolved = database_url(url)
    if not create:
        _require_database(resolved)
    try:
        try:
            await orch.open_engine(resolved, config=config)
        except Exception as exc:  # noqa: BLE001 - any failure to open is the user's to fix: say which
            fail(f"cannot open the database {shown_url(resolved)}: {type(exc).__name__}: {exc}")
        try:
            return await body(orch)
        except Exception as exc:
            if not _database_error(exc):
                raise
            # A read-only database opens (and reads) fine, then refuses the first write.
            fail(f"the database {shown_url(resolved)} refused a write: {type(exc).__name__}: {exc}")
    finally:
        await orch.aclose()


def _database_error(exc: BaseException) -> bool:
    """Whether `exc` is the database's refusal (read-only, corrupt, unreachable), not a bug of ours."""
    import sqlite3

    from ..engine import StoreUnavailable

    return isinstance(exc, sqlite3.Error | StoreUnavailable) or type(exc).__module__.startswith("asyncpg")


def run_async(coro: Awaitable[T]) -> T:
    """`asyncio.run` with the engine's user-facing errors turned into one line and exit 2."""
    from ..engine import InvalidTask, TaskNotFound

    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except (TaskNotFound, InvalidTask, StrategyError, UnknownAgent, NoAgentAvailable) as exc:
        message = exc.args[0] if isinstance(exc, LookupError) and exc.args else str(exc)
        fail(message)
    except KeyboardInterrupt:
        sys.stderr.write("loomiq: interrupted\n")
        raise typer.Exit(130) from None


def check_tenant(tenant: str) -> str:
    """The tenant, or a one-line error for a blank one."""
    if not tenant.strip():
        fail("--tenant is empty: name a tenant (the default one is 'default')")
    return tenant


def load_orchestrator(config: Path | None) -> Orchestrator:
    """`Orchestrator.from_config`, with a bad config as a one-line error."""
    try:
        return Orchestrator.from_config(config)
    except ConfigError as exc:
        fail(str(exc))

