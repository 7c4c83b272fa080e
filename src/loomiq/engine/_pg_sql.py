"""The PostgreSQL store's SQL and connection helpers: the one statement a group-commit segment is
(`segment_sql`), ``?`` placeholders as ``$n``, driving an operation on a connection, what counts
as a lost connection, and the URL's DSN and schema."""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from ._records import FINISH_TASK_COLUMNS, SUBMIT_TASK_COLUMNS
from ._stmt import Op
from .errors import StoreUnavailable

STEP_COLUMNS = "task_id, step_key, tenant_id, epoch, ok, result, created_at"
EVENT_COLUMNS = "task_id, seq, tenant_id, epoch, type, data, created_at"

# A segment of a batch (see `PostgresWriter._write_rows`) in one statement, made of the parts it needs
# (`segment_sql`; a part left out costs nothing to plan or run):
#   submits  claimed submissions: the columns of `SUBMIT_TASK_COLUMNS`, then the JSON of each task's first two
#            events (14 arrays). A task id that exists already is left out (its operation then runs).
#   fence    the ids of the tasks the rows and ends name: locked FOR SHARE in id order (a takeover's UPDATE
#            waits for this transaction); with the tasks just submitted, they fence the rows and ends.
#   steps, events   journal rows, event rows (7 arrays each): written when their task runs under the epoch
#            they name.
#   ends     ends of runs that did not fail (ids, epochs, the columns of `FINISH_TASK_COLUMNS`, the seq and JSON
#            of each task_finished event: 12 arrays): written when their task runs under that epoch and no
#            task depends on it (the others: their operation runs).
#   notify   the NOTIFY channel and payloads to send (when the statement is its own transaction).
# It returns ('f', id, epoch) per fenced task, ('t', id, 1) per task submitted, ('u', id, 0) per end written
# (and one ('n', NULL, count) row).
_SUBMITS = (
    "s AS (SELECT * FROM unnest({0}::text[], {1}::text[], {2}::text[], {3}::float8[], {4}::float8[], {5}::text[], "
    "{6}::float8[], {7}::text[], {8}::float8[], {9}::float8[], {10}::float8[], {11}::float8[], {12}::text[], "
    "{13}::text[]) AS s(id, tenant_id, priority, sort_key, ready_at, request, created_at, lease_owner, lease_expires, "
    "started_at, timeout_s, deadline_at, queued, started)), "
    f"t AS (INSERT INTO tasks ({SUBMIT_TASK_COLUMNS}, status, attempts, lease_epoch) "
    f"SELECT {SUBMIT_TASK_COLUMNS}, 'running', 1, 1 FROM s ON CONFLICT (id) DO NOTHING "
    "RETURNING id, tenant_id, created_at, lease_owner), "
    "ta AS (INSERT INTO attempts (task_id, attempt, tenant_id, epoch, worker_id, started_at, status) "
    "SELECT id, 1, tenant_id, 1, lease_owner, created_at, 'running' FROM t), "
    f"te AS (INSERT INTO events ({EVENT_COLUMNS}) "
    "SELECT t.id, x.seq, t.tenant_id, x.epoch, x.type, x.data, t.created_at FROM t JOIN s ON s.id = t.id, "
    "LATERAL (VALUES (1, 0, 'task_queued', s.queued), (2, 1, 'task_started', s.started)) "
    "AS x(seq, epoch, type, data))"
)
_FENCE = (
    "f AS (SELECT id, lease_epoch, attempts, tenant_id{deps} "
    "FROM tasks WHERE id = ANY({0}::text[]) AND status = 'running' ORDER BY id FOR SHARE)"
)
_DEPS = ", EXISTS (SELECT 1 FROM task_dependencies d WHERE d.depends_on = tasks.id) AS deps"
_STEPS = (
    f"rs AS (INSERT INTO steps ({STEP_COLUMNS}) SELECT u.* FROM unnest({{0}}::text[], {{1}}::text[], {{2}}::text[], "
    "{3}::int[], {4}::int[], {5}::text[], {6}::float8[]) AS u(task_id, step_key, tenant_id, epoch, ok, result, "
    "created_at) JOIN g ON g.id = u.task_id AND g.lease_epoch = u.epoch ON CONFLICT (task_id, step_key) DO NOTHING)"
)
_EVENTS = (
    f"re AS (INSERT INTO events ({EVENT_COLUMNS}) SELECT u.* FROM unnest({{0}}::text[], {{1}}::int[], "
    "{2}::text[], {3}::int[], {4}::text[], {5}::text[], {6}::float8[]) AS u(task_id, seq, tenant_id, epoch, type, "
    "data, created_at) JOIN g ON g.id = u.task_id AND g.lease_epoch = u.epoch ON CONFLICT (task_id, seq) DO NOTHING)"
)
_ENDS = (
    "v AS (SELECT * FROM unnest({0}::text[], {1}::int[], {2}::text[], {3}::float8[], {4}::text[], {5}::text[], "
    "{6}::int[], {7}::int[], {8}::float8[], {9}::text[], {10}::int[], {11}::text[]) AS v(id, epoch, status, "
    "finished_at, error, output, input_tokens, output_tokens, cost_usd, result, seq, data)), "
    "u AS (UPDATE tasks SET " + ", ".join(f"{c} = v.{c}" for c in FINISH_TASK_COLUMNS)
    + ", lease_owner = NULL, lease_expires = NULL FROM v JOIN f ON f.id = v.id AND f.lease_epoch = v.epoch "
    "AND NOT f.deps WHERE tasks.id = v.id "
    "RETURNING tasks.id, f.attempts, f.tenant_id, v.epoch, v.status, v.finished_at, v.error, v.seq, v.data), "
    "ua AS (UPDATE attempts SET status = u.status, finished_at = u.finished_at, error = u.error FROM u "
    "WHERE attempts.task_id = u.id AND attempts.attempt = u.attempts), "
    f"ue AS (INSERT INTO events ({EVENT_COLUMNS}) "
    "SELECT u.id, u.seq, u.tenant_id, u.epoch, 'task_finished', u.data, u.finished_at FROM u)"
)


@functools.cache
def segment_sql(submits: bool, steps: bool, events: bool, ends: bool, notify: bool) -> str:
    """The statement of a segment with these parts (see the comment above); its arguments, in order:
    the submits' 14 arrays, the fenced ids, the steps' 7, the events' 7, the ends' 12, the channel and
    the payloads, each group only when its part is in."""
    n = iter(range(1, 100))

    def params(k: int) -> list[str]:
        return [f"${next(n)}" for _ in range(k)]

    ctes: list[str] = []
    selects: list[str] = []
    if submits:
        ctes.append(_SUBMITS.format(*params(14)))
        selects.append("SELECT 't', id, 1 FROM t")
    if steps or events or ends:
        ctes.append(_FENCE.format(*params(1), deps=_DEPS if ends else ""))
        selects.insert(0, "SELECT 'f', id, lease_epoch FROM f")
        ctes.append("g AS (SELECT id, lease_epoch FROM f" + (" UNION ALL SELECT id, 1 FROM t)" if submits else ")"))
    if steps:
        ctes.append(_STEPS.format(*params(7)))
    if events:
        ctes.append(_EVENTS.format(*params(7)))
    if ends:
        ctes.append(_ENDS.format(*params(12)))
        selects.append("SELECT 'u', id, 0 FROM u")
    if notify:
        channel, payloads = params(2)
        selects.append(f"SELECT 'n', NULL, count(pg_notify({channel}, p))::int FROM unnest({payloads}::text[]) AS p")
    return "WITH " + ", ".join(ctes) + " " + " UNION ALL ".join(selects)


_dollars: dict[str, str] = {}


def placeholders(sql: str) -> str:
    """``?`` placeholders as ``$1, $2...`` (the shared SQL never has a literal ``?``)."""
    out = _dollars.get(sql)
    if out is None:
        n = iter(range(1, 10_000))
        out = _dollars[sql] = re.sub(r"\?", lambda _: f"${next(n)}", sql)
    return out


def status_count(status: str) -> int:
    # "UPDATE 3", "INSERT 0 1", "DELETE 0", "SELECT 1"
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


async def drive(conn: asyncpg.Connection, op: Op[Any]) -> Any:
    result: Any = None
    try:
        while True:
            stmt = op.send(result)
            sql, args, mode = placeholders(stmt.sql), stmt.args, stmt.mode
            if mode == "exec":
                result = status_count(await conn.execute(sql, *args))
            elif mode == "one":
                result = await conn.fetchrow(sql, *args)
            elif mode == "all":
                result = await conn.fetch(sql, *args)
            elif mode == "val":
                result = await conn.fetchval(sql, *args)
            else:
                await conn.executemany(sql, args)
                result = None
    except StopIteration as stop:
        return stop.value
    finally:
        op.close()


LOST = (
    asyncpg.PostgresConnectionError,  # class 08: the connection does not exist, failed...
    asyncpg.exceptions.OperatorInterventionError,  # class 57: admin shutdown, cannot connect now...
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,
    OSError,
    TimeoutError,
)


def is_lost(exc: BaseException, conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy | None) -> bool:
    """Whether `exc` means the connection to the server is gone (rather than a refused statement)."""
    return isinstance(exc, LOST) or (conn is not None and conn.is_closed())


class Cut(Exception):
    """A read's connection was lost (its cause says how)."""


def unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"the PostgreSQL server cannot be reached ({type(exc).__name__}: {exc})")


def split_url(url: str) -> tuple[str, str | None]:
    """(a DSN for asyncpg, the ``?schema=`` of `url` or None)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    scheme = "postgresql"
    return urlunsplit((scheme, parts.netloc, parts.path, rest, parts.fragment)), schema



def literal(text: str) -> str:
    """`text` as a PostgreSQL string literal (an escape string: right whatever standard_conforming_strings says)."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def chunks(ids: list[str], limit: int = 7000) -> list[str]:
    """Comma-joined ids in payloads under NOTIFY's 8000-byte limit."""
    out: list[str] = []
    cur: list[str] = []
    size = 0
    for i in ids:
        if size + len(i) + 1 > limit and cur:
            out.append(",".join(cur))
            cur, size = [], 0
        cur.append(i)
        size += len(i) + 1
    if cur:
        out.append(",".join(cur))
    return out

