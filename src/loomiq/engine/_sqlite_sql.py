"""The SQLite store's SQL: the statements a group-commit segment writes with, the URL's file, and driving
an operation on a connection."""

from __future__ import annotations

import sqlite3
from typing import Any
from urllib.parse import unquote, urlsplit

from ._records import FINISH_TASK_COLUMNS, SUBMIT_TASK_COLUMNS
from ._stmt import Op

INSERT_STEP = (
    "INSERT INTO steps (task_id, step_key, tenant_id, epoch, ok, result, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (task_id, step_key) DO NOTHING"
)
INSERT_EVENT = (
    "INSERT INTO events (task_id, seq, tenant_id, epoch, type, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (task_id, seq) DO NOTHING"
)


INSERT_TASK = (
    f"INSERT INTO tasks ({SUBMIT_TASK_COLUMNS}, status, attempts, lease_epoch) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', 1, 1)"
)
INSERT_ATTEMPT = (
    "INSERT INTO attempts (task_id, attempt, tenant_id, epoch, worker_id, started_at, status) "
    "VALUES (?, 1, ?, 1, ?, ?, 'running')"
)
UPDATE_ATTEMPT = "UPDATE attempts SET status = ?, finished_at = ?, error = ? WHERE task_id = ? AND attempt = ?"
FINISH = (
    "UPDATE tasks SET " + ", ".join(f"{c} = ?" for c in FINISH_TASK_COLUMNS)
    + ", lease_owner = NULL, lease_expires = NULL WHERE id = ? AND lease_epoch = ? AND status = 'running'"
)
FENCE = (
    "SELECT id, lease_epoch, attempts, tenant_id, EXISTS (SELECT 1 FROM task_dependencies WHERE depends_on = id) "
    "FROM tasks WHERE status = 'running' AND "
)
FENCE_ONE = FENCE + "id = ?"
FENCE_MANY = FENCE + "id IN ({marks})"


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.netloc:
        raise ValueError(f"a sqlite URL has no host: {url!r} (use sqlite:///file.db)")
    if path.startswith("/"):
        path = path[1:]
    if not path or path == ":memory:":
        raise ValueError(f"the engine needs a database file, not {url!r}")
    return path


def drive(conn: sqlite3.Connection, op: Op[Any]) -> Any:
    """Run a generator operation to its end on `conn`."""
    result: Any = None
    try:
        while True:
            stmt = op.send(result)
            if stmt.mode == "many":
                conn.executemany(stmt.sql, stmt.args)
                result = None
                continue
            cur = conn.execute(stmt.sql, stmt.args)
            mode = stmt.mode
            if mode == "exec":
                cur.fetchall()  # a RETURNING-less statement; rowcount is final once stepped through
                result = cur.rowcount
            elif mode == "one":
                result = cur.fetchone()
                cur.fetchall()
            elif mode == "all":
                result = cur.fetchall()
            else:
                row = cur.fetchone()
                cur.fetchall()
                result = row[0] if row is not None else None
    except StopIteration as stop:
        return stop.value
    finally:
        op.close()  # a statement that raised leaves the generator suspended
