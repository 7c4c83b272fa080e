"""The engine's schema, as numbered migrations per dialect, and the code that applies them.

`schema_migrations` records each applied version. A migration is a list of statements run in one
transaction; versions only move forward, and a database newer than this code is refused.

- v1: tasks, task_dependencies, steps (the journal), events, attempts.
- v2: workers (heartbeats), and an index to find a holder's leases and expired leases fast.
- v3: agent_slots and agent_rates, the cross-worker per-agent limits (`limits.py`).
- v4: the queue and lease-expiry indexes become partial (queued, running tasks only); the unused index
  on lease_owner goes.
- v5: agent_rate_log (the sliding-window request limit) and engine_locks (serialised claims).
- v6: PostgreSQL only: steps and events drop their surrogate ``id`` (see `_POSTGRES_V6`).
- v7: durable workflows (`workflow_runs.py`): workflow_definitions (registered, versioned),
  workflow_runs, workflow_events (each run's journal and its notices), workflow_approvals and
  workflow_answers (the responses kept per Idempotency-Key).
- v8: api_keys (the API's keys: `keys.KeyTable`); ``IF NOT EXISTS``, since the API kept the same table
  in a PostgreSQL task database before it became a migration.
- v9: agent_stats, each agent's call statistics summed over every process (`agent_stats.py`).
- v10: tenant_agents, the agents registered over the API (`tenant_agents.py`).
- v11: tenant_agents_version, a counter every change of tenant_agents bumps in its transaction
  (what processes check to follow the changes).

Timestamps are Unix seconds (float) and booleans are 0/1 integers in both dialects, so the SQL that
reads and writes them is shared. JSON is TEXT: it is written and read whole, never queried into.
"""

from __future__ import annotations

from collections.abc import Sequence

_SQLITE_V1 = (
    """CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL DEFAULT 'default',
        status TEXT NOT NULL,
        priority TEXT NOT NULL,
        sort_key REAL NOT NULL,
        ready_at REAL NOT NULL,
        request TEXT NOT NULL,
        idempotency_key TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0,
        dead INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_expires REAL,
        lease_epoch INTEGER NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        timeout_s REAL,
        deadline_at REAL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        error TEXT,
        output TEXT NOT NULL DEFAULT '',
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        result TEXT
    )""",
    "CREATE UNIQUE INDEX tasks_idempotency ON tasks (tenant_id, idempotency_key) "
    "WHERE idempotency_key IS NOT NULL",
    "CREATE INDEX tasks_queue ON tasks (status, sort_key)",
    "CREATE INDEX tasks_created ON tasks (tenant_id, created_at)",
    """CREATE TABLE task_dependencies (
        task_id TEXT NOT NULL,
        depends_on TEXT NOT NULL,
        tenant_id TEXT NOT NULL DEFAULT 'default',
        PRIMARY KEY (task_id, depends_on)
    ) WITHOUT ROWID""",
    "CREATE INDEX task_dependents ON task_dependencies (depends_on)",
    # Journal and event rows are appended (rowid order) with a narrow unique index: far cheaper to
    # insert than a table clustered on (task_id, ...) whose large rows land all over the B-tree.
    """CREATE TABLE steps (
        id INTEGER PRIMARY KEY,
        task_id TEXT NOT NULL,
        step_key TEXT NOT NULL,
        tenant_id TEXT NOT NULL DEFAULT 'default',
        epoch INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        result TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    "CREATE UNIQUE INDEX steps_key ON steps (task_id, step_key)",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        task_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        tenant_id TEXT NOT NULL DEFAULT 'default',
        epoch INTEGER NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    "CREATE UNIQUE INDEX events_seq ON events (task_id, seq)",
    """CREATE TABLE attempts (
        task_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        tenant_id TEXT NOT NULL DEFAULT 'default',
        epoch INTEGER NOT NULL,
        worker_id TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        status TEXT NOT NULL,
        error TEXT,
        PRIMARY KEY (task_id, attempt)
    ) WITHOUT ROWID""",
)

_SQLITE_V2 = (
    """CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL DEFAULT 'default',
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        concurrency INTEGER NOT NULL,
        running INTEGER NOT NULL DEFAULT 0,
        started_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL,
        status TEXT NOT NULL
    )""",
    "CREATE INDEX tasks_lease ON tasks (lease_owner)",
    "CREATE INDEX tasks_expiry ON tasks (status, lease_expires)",
)

_SQLITE_V3 = (
    """CREATE TABLE agent_slots (
        agent_id TEXT NOT NULL,
        slot INTEGER NOT NULL,
        tenant_id TEXT NOT NULL DEFAULT 'default',
        holder TEXT,
        expires_at REAL,
        PRIMARY KEY (agent_id, slot)
    )""",
    """CREATE TABLE agent_rates (
        agent_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL DEFAULT 'default',
        window_start REAL NOT NULL,
        used INTEGER NOT NULL
    )""",
)

# Partial indexes over the tasks each query looks for: the claim order over queued tasks only, lease
# expiry over running tasks only. A task run at once (``run(durable=True)``) never enters the queue
# index, and a run's status changes touch one index entry instead of three (fewer pages per commit).
# The index on lease_owner, which no query used, is dropped.
_SQLITE_V4 = (
    "DROP INDEX tasks_queue",
    "CREATE INDEX tasks_queue ON tasks (sort_key, created_at, id) WHERE status = 'queued'",
    "DROP INDEX tasks_expiry",
    "CREATE INDEX tasks_expiry ON tasks (lease_expires) WHERE status = 'running'",
    "DROP INDEX tasks_lease",
)


# v5. The request rate as a sliding window: one row per request the limit allows in a window, holding when
# that request started; a request may start when the oldest of them started a whole window ago.
_SQLITE_V5 = (
    """CREATE TABLE agent_rate_log (
        agent_id TEXT NOT NULL,
        slot INTEGER NOT NULL,
        tenant_id TEXT NOT NULL DEFAULT 'default',
        started_at REAL NOT NULL,
        PRIMARY KEY (agent_id, slot)
    )""",
    "CREATE INDEX agent_rate_log_oldest ON agent_rate_log (agent_id, started_at)",
    "UPDATE agent_rates SET used = 0",  # the count of the agent's rows in agent_rate_log from now on
    # Rows locked to serialise an engine-wide decision (claims under a global concurrency limit).
    """CREATE TABLE engine_locks (
        name TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL DEFAULT 'default'
    )""",
    "INSERT INTO engine_locks (name) VALUES ('claim')",
)


# v6. PostgreSQL only: journal and event rows lose the surrogate ``id`` and its index. A PostgreSQL heap is
# not clustered on its key, so the column (SQLite's rowid, which orders appends) only cost a sequence
# value and a B-tree insert per row; (task_id, step_key) and (task_id, seq) stay the unique keys.
_SQLITE_V6: tuple[str, ...] = ()
_POSTGRES_V6 = (
    "ALTER TABLE steps DROP COLUMN id",
    "ALTER TABLE events DROP COLUMN id",
)


# v7. Durable workflows. A run's journal is its ``input`` events (folded by `workflows.replay`) and its
# ``notice`` events (what its stream shows); `key` is unique per run, so a result, an answer, a timeout or
# a notice is written once whoever writes it. A run parked on an approval is only these rows: `wake_at`
# (its next deadline or retry) and `active_tasks` (node tasks running) tell the drivers when to look again.
_SQLITE_V7 = (
    """CREATE TABLE workflow_definitions (
        tenant_id TEXT NOT NULL DEFAULT 'default',
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        source TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (tenant_id, name, version)
    )""",
    """CREATE TABLE workflow_runs (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL DEFAULT 'default',
        workflow TEXT NOT NULL,
        version INTEGER NOT NULL,
        source TEXT NOT NULL,
        inputs TEXT NOT NULL,
        status TEXT NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        active_tasks INTEGER NOT NULL DEFAULT 0,
        wake_at REAL,
        error TEXT,
        outputs TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX workflow_runs_created ON workflow_runs (tenant_id, created_at)",
    "CREATE INDEX workflow_runs_active ON workflow_runs (status, active_tasks, wake_at)",
    """CREATE TABLE workflow_events (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        key TEXT NOT NULL,
        tenant_id TEXT NOT NULL DEFAULT 'default',
        kind TEXT NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (run_id, seq)
    )""",
    "CREATE UNIQUE INDEX workflow_events_key ON workflow_events (run_id, key)",
    """CREATE TABLE workflow_approvals (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL DEFAULT 'default',
        node TEXT NOT NULL,
        round INTEGER NOT NULL,
        message TEXT NOT NULL,
        approvers TEXT NOT NULL,
        require TEXT NOT NULL,
        deadline REAL,
        status TEXT NOT NULL,
        decision TEXT,
        comment TEXT,
        decided_by TEXT,
        created_at REAL NOT NULL,
        resolved_at REAL
    )""",
    "CREATE INDEX workflow_approvals_status ON workflow_approvals (tenant_id, status, created_at)",
    """CREATE TABLE workflow_answers (
        approval_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        tenant_id TEXT NOT NULL DEFAULT 'default',
        subject TEXT NOT NULL,
        decision TEXT NOT NULL,
        comment TEXT NOT NULL,
        verdict TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (approval_id, idempotency_key)
    )""",
)


# v8. The API's keys (`keys.KeyTable`), shown once and stored as an argon2 hash. IF NOT EXISTS: before this
# migration the API created the same table itself in a PostgreSQL task database, and those keys stay valid.
_SQLITE_V8 = (
    """CREATE TABLE IF NOT EXISTS api_keys (
        key_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
        name TEXT NOT NULL DEFAULT '',
        secret_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant_id)",
)


# v9. Agent statistics, the totals of every process (deltas are added, never overwritten).
_SQLITE_V9 = (
    """CREATE TABLE agent_stats (
        agent_id TEXT PRIMARY KEY,
        calls BIGINT NOT NULL DEFAULT 0,
        successes BIGINT NOT NULL DEFAULT 0,
        failures BIGINT NOT NULL DEFAULT 0,
        total_latency_s REAL NOT NULL DEFAULT 0,
        input_tokens BIGINT NOT NULL DEFAULT 0,
        output_tokens BIGINT NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        last_error TEXT,
        updated_at REAL NOT NULL
    )""",
)


# v10. Agents registered over the API: their config as registered (JSON; a key variable's name, never a key).
_SQLITE_V10 = (
    """CREATE TABLE tenant_agents (
        agent_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        config TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX tenant_agents_tenant ON tenant_agents (tenant_id)",
)

# v11. The version of tenant_agents: one row, bumped in the transaction of every change of that table.
_SQLITE_V11 = (
    """CREATE TABLE tenant_agents_version (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        version BIGINT NOT NULL
    )""",
    "INSERT INTO tenant_agents_version (singleton, version) VALUES (1, 0)",
)


def _postgres(statements: Sequence[str]) -> tuple[str, ...]:
    # The same tables in PostgreSQL's types; WITHOUT ROWID is SQLite's clustering hint.
    out = []
    for s in statements:
        s = s.replace(" WITHOUT ROWID", "").replace(" REAL", " DOUBLE PRECISION")
        s = s.replace("id INTEGER PRIMARY KEY,", "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,")
        out.append(s)
    return tuple(out)


MIGRATIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    "sqlite": (_SQLITE_V1, _SQLITE_V2, _SQLITE_V3, _SQLITE_V4, _SQLITE_V5, _SQLITE_V6, _SQLITE_V7, _SQLITE_V8,
               _SQLITE_V9, _SQLITE_V10, _SQLITE_V11),
    "postgresql": (*(_postgres(m) for m in (_SQLITE_V1, _SQLITE_V2, _SQLITE_V3, _SQLITE_V4, _SQLITE_V5)),
                   _POSTGRES_V6, _postgres(_SQLITE_V7), _postgres(_SQLITE_V8), _postgres(_SQLITE_V9),
                   _postgres(_SQLITE_V10), _postgres(_SQLITE_V11)),
}
"""Dialect -> migrations; migration ``i`` brings the schema to version ``i + 1``."""

LATEST = len(MIGRATIONS["sqlite"])
"""The schema version this code writes."""

CREATE_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at {real} NOT NULL)"
)


def pending(dialect: str, current: int, target: int = LATEST) -> list[tuple[int, tuple[str, ...]]]:
    """(version, statements) still to apply to go from `current` to `target`."""
    migrations = MIGRATIONS[dialect]
    return [(v, migrations[v - 1]) for v in range(current + 1, target + 1)]
