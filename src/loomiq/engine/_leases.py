"""The runs this process holds under leases (`HeldRuns`): renewing their leases, abandoning those
taken over, and answering cancellations (at once for a run held here; by NOTIFY on PostgreSQL or by
polling every `Store.cancel_poll_s` on SQLite for a request made elsewhere); and what a worker offers
to take the task a run's end claims for it (`NextClaims`)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from . import _ops
from ._stmt import Claim
from .errors import EngineClosed
from .store import Store
from .task import TaskID, WorkerID

logger = logging.getLogger("loomiq.engine")

StopMode = Literal["crash", "hand_back", "lost"]


class NextClaims(Protocol):
    """A worker that takes the task its run's end claims for it (see `TaskEngine.execute_claim`)."""

    def wants_next(self) -> bool:
        """Whether the slot of the run ending now should take the next task at once."""

    def adopt(self, claims: list[Claim]) -> None:
        """Run the tasks claimed for this worker (under its holder id) by a run's end."""


@dataclass(eq=False, slots=True)
class Held:
    """A task this process runs under a lease."""

    task_id: TaskID
    epoch: int
    holder: WorkerID
    runner: asyncio.Task[Any]
    stop: StopMode | None = None
    cancel_requested: bool = False


@dataclass(eq=False)
class HeldRuns:
    """The runs of this process, by task id, and the loop that keeps their leases (`keep`)."""

    store: Store
    lease_s: float
    renew_s: float
    runs: dict[str, Held] = field(default_factory=dict)

    def get(self, task_id: str) -> Held | None:
        return self.runs.get(task_id)

    def stop(self, task_id: str, mode: StopMode) -> bool:
        """Stop a held run without recording an end (see `TaskEngine.stop_run`); False if not held."""
        held = self.runs.get(task_id)
        if held is None:
            return False
        if held.stop is None:
            held.stop = mode
            held.runner.cancel()
        return True

    def cancel(self, task_id: str) -> None:
        """Abort a held run at the request of a cancellation (it ends ``cancelled``)."""
        held = self.runs.get(task_id)
        if held is not None and held.stop is None and not held.cancel_requested:
            held.cancel_requested = True
            held.runner.cancel()

    def ids(self, holder: WorkerID | None = None) -> list[TaskID]:
        """Ids of the held tasks (for one holder, or all)."""
        return [h.task_id for h in self.runs.values() if holder is None or h.holder == holder]

    async def keep(self) -> None:
        """Renew the leases of held tasks; abandon those taken over; pick up remote cancellations."""
        store = self.store
        tick = min(self.renew_s, store.cancel_poll_s)
        next_renew = time.monotonic() + self.renew_s
        while True:
            await asyncio.sleep(tick)
            if not self.runs:
                next_renew = time.monotonic() + self.renew_s
                continue
            try:
                for task_id in await store.cancel_requested(list(self.runs)):
                    self.cancel(task_id)
                if time.monotonic() >= next_renew:
                    next_renew = time.monotonic() + self.renew_s
                    leases = [(h.task_id, h.epoch, h.holder) for h in self.runs.values() if h.stop is None]
                    out = await store.run_op(_ops.renew(store.dialect, leases, time.time(), self.lease_s))
                    for task_id in out.value:
                        self.stop(task_id, "lost")
            except EngineClosed:
                return
            except Exception:  # noqa: BLE001 - a failed renewal is retried next tick; leases outlast ticks
                logger.exception("renewing leases failed")
