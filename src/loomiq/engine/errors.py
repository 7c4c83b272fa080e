"""Errors the durable engine raises; each message names the task and the reason."""

from __future__ import annotations

from ..runtime import InvalidOptions


class EngineError(Exception):
    """Base class of the engine's errors."""


class TaskNotFound(EngineError, LookupError):
    """No task has this id (in this tenant)."""


class InvalidTask(EngineError, InvalidOptions):
    """A submission the engine refuses: bad priority, unserialisable context, bad retry policy...
    (an `InvalidOptions`, so a `ValueError`). `field` names the argument at fault when one is known."""

    def __init__(self, message: str, *args: object, field: str | None = None) -> None:
        super().__init__(message, *args)
        self.field = field


class DependencyError(InvalidTask):
    """A submission whose dependencies cannot work: an unknown task id, or a cycle."""


class IdempotencyConflict(InvalidTask):
    """An idempotency key that names an earlier task of the tenant, sent with a different request
    (another prompt, strategy, agents, options...): the message names the task and what differs."""

    def __init__(self, message: str, task_id: str, differs: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.differs = differs
        """The arguments that differ (``prompt``, ``priority``...)."""


class LeaseLost(EngineError):
    """This holder's lease on a task was taken over (its epoch is stale): the write was refused and
    the holder must abandon the task. Never seen by library users; workers handle it."""


class StoreUnavailable(EngineError, ConnectionError):
    """The database could not be reached (a lost connection, a server restarting): the write was not
    done, or its outcome is unknown. Callers may retry once the store has reconnected; a holder of a
    running task abandons it as on `LeaseLost` (its lease runs out and the task is taken over and
    replayed from the journal)."""


class EngineClosed(EngineError, RuntimeError):
    """The store was closed (or never opened)."""


class SchemaError(EngineError, RuntimeError):
    """The database schema is newer than this code knows, or a migration failed."""
