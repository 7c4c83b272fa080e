"""The vocabulary of the engine's transactions: a statement (`Stmt`), an operation (`Op`: a generator
of statements), the SQL differences of a dialect (`Dialect`), what an operation did (`Outcome`), and
a holder's `Claim` on a task. The transactions themselves are in `_ops`; the records of the two hot
ones in `_records`; the dialects drive operations in `_sqlite_writer` and `_pg_writer`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from .task import Task, TaskEvent

Mode = Literal["exec", "one", "all", "val", "many"]
R = TypeVar("R")


@dataclass(slots=True)  # not frozen: built for every statement, and a frozen __init__ is slow
class Stmt:
    """One SQL statement (``?`` placeholders) and what to return: the rowcount (`exec`), the first
    row (`one`), all rows (`all`), the first column of the first row (`val`), or nothing (`many`,
    an executemany over `args`)."""

    sql: str
    args: Sequence[Any]
    mode: Mode = "exec"


Op = Generator[Stmt, Any, R]


@dataclass(frozen=True, slots=True)
class Dialect:
    """The few SQL differences the operations care about."""

    name: str
    for_update: str = ""
    for_share: str = ""
    skip_locked: str = ""
    notify_channel: str | None = None
    """PostgreSQL: the NOTIFY channel prefix; None where there is no NOTIFY (SQLite)."""

    def in_(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column IN (...)`` for `values`, and its arguments."""
        if self.name == "postgresql":
            return f"{column} = ANY(?)", [list(values)]
        return f"{column} IN ({','.join('?' * len(values))})", list(values)

    def notify(self, kind: str, payload: str) -> Stmt | None:
        """The statement waking other processes about `kind` (tasks, cancel), if the dialect can."""
        if self.notify_channel is None:
            return None
        return Stmt("SELECT pg_notify(?, ?)", (f"{self.notify_channel}_{kind}", payload), "exec")


@dataclass(frozen=True, slots=True)
class Claim:
    """A task claimed by a holder: the task, the lease epoch its writes must carry, and the next
    event sequence number the holder assigns."""

    task: Task
    epoch: int
    next_seq: int
    deadline_at: float | None

    @property
    def resumed(self) -> bool:
        """True when an earlier holder ran this task (its journal may have steps to replay)."""
        return self.epoch > 1


@dataclass(slots=True)
class Outcome:
    """What an operation did, for the store to act on once the batch committed."""

    value: Any = None
    events: list[TaskEvent] = field(default_factory=list)
    work: bool = False
    """Some task became claimable: wake this process's workers."""
