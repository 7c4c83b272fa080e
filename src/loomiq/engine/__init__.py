"""The durable task engine: tasks that survive crashes, on SQLite or PostgreSQL.

A durable run is the same strategy code as an in-process run, executed through a `DurableContext`
that journals every agent call (replaying finished ones after a crash). Around it: a task queue
with priorities, aging, dependencies, retries, timeouts and cancellation; workers that claim tasks
under fenced leases; and an ordered, replayable event log per task.

Use it through the orchestrator::

    orch = Orchestrator.from_config()
    await orch.open_engine()                              # $LOOMIQ_DATABASE_URL or sqlite:///loomiq.db
    submitted = await orch.submit("Compare A and B", strategy="consensus", priority="high")
    async for event in orch.events(submitted.id):         # replayed from the log, then live
        print(event.seq, event.type)
    task = await orch.wait(submitted.id)

and run tasks with `Worker` (in-process) or ``python -m loomiq.engine.worker`` (a process).
Durable workflow runs (`WorkflowRuns`, in `workflow_runs`) live in the same database: their nodes
are tasks of this engine, their approvals rows that park a run without holding anything.
The engine runs tasks through a `loomiq.runtime.Runner` (the orchestrator's `StrategyRunner`) and
never imports what composes it. The machinery lives in private modules: `_ops` (every transaction,
written once, over the vocabulary of `_stmt`; `_records` the two hot ones as records written set-wide),
`_queue` (pure ordering and retry decisions), `_schema` (migrations), `_sqlite` and `_postgres` (the
dialects, with their writers `_sqlite_writer` and `_pg_writer`), `_submission` (requests), `_leases` (the
runs this process holds).
"""

from ._stmt import Claim
from ._text import check_text
from .agent_stats import AgentStatsRecorder, read_agent_stats
from .context import DurableContext, TaskLog
from .engine import EngineConfig, TaskEngine
from .errors import (
    DependencyError,
    EngineClosed,
    EngineError,
    IdempotencyConflict,
    InvalidTask,
    LeaseLost,
    SchemaError,
    StoreUnavailable,
    TaskNotFound,
)
from .events import (
    MAX_SEQ,
    EventHub,
    LifecycleEvent,
    TaskFinished,
    TaskHandedBack,
    TaskQueued,
    TaskReady,
    TaskRetrying,
    TaskStarted,
    TaskWaiting,
)
from .keys import KeyRecord, KeyTable
from .limits import AgentLimit, AgentLimiter
from .store import DEFAULT_URL, Store, WriterStats, database_file, database_url, open_store
from .task import (
    DEFAULT_TENANT,
    PRIORITY_LEVELS,
    TASK_STATUSES,
    TERMINAL_STATUSES,
    Attempt,
    Priority,
    SubmitOptions,
    Submitted,
    Task,
    TaskEvent,
    TaskID,
    TaskRequest,
    TaskRetry,
    TaskStatus,
    TenantID,
    WorkerID,
    WorkerInfo,
    new_task_id,
)
from .tenant_agents import TenantAgentRecord, TenantAgentTable
from .worker import Worker
from .workflow_runs import (
    Answered,
    Approval,
    ApprovalClosed,
    ApprovalConflict,
    ApprovalForbidden,
    ApprovalNotFound,
    WorkflowNotFound,
    WorkflowRun,
    WorkflowRunEvent,
    WorkflowRunNotFound,
    WorkflowRuns,
)

__all__ = [
    "DEFAULT_TENANT",
    "DEFAULT_URL",
    "MAX_SEQ",
    "PRIORITY_LEVELS",
    "TASK_STATUSES",
    "TERMINAL_STATUSES",
    "AgentLimit",
    "AgentLimiter",
    "AgentStatsRecorder",
    "Answered",
    "Approval",
    "ApprovalClosed",
    "ApprovalConflict",
    "ApprovalForbidden",
    "ApprovalNotFound",
    "Attempt",
    "Claim",
    "DependencyError",
    "DurableContext",
    "EngineClosed",
    "EngineConfig",
    "EngineError",
    "EventHub",
    "IdempotencyConflict",
    "InvalidTask",
    "KeyRecord",
    "KeyTable",
    "LeaseLost",
    "LifecycleEvent",
    "Priority",
    "SchemaError",
    "Store",
    "StoreUnavailable",
    "SubmitOptions",
    "Submitted",
    "Task",
    "TaskEngine",
    "TaskEvent",
    "TaskFinished",
    "TaskHandedBack",
    "TaskID",
    "TaskLog",
    "TaskNotFound",
    "TaskQueued",
    "TaskReady",
    "TaskRequest",
    "TaskRetry",
    "TaskRetrying",
    "TaskStarted",
    "TaskStatus",
    "TaskWaiting",
    "TenantAgentRecord",
    "TenantAgentTable",
    "TenantID",
    "Worker",
    "WorkerID",
    "WorkerInfo",
    "WorkflowNotFound",
    "WorkflowRun",
    "WorkflowRunEvent",
    "WorkflowRunNotFound",
    "WorkflowRuns",
    "WriterStats",
    "check_text",
    "database_file",
    "database_url",
    "new_task_id",
    "open_store",
    "read_agent_stats",
]
