"""`EngineConfig`: the engine's timings and its global concurrency limit (exported by `loomiq.engine`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Timings of the engine. Tests shorten them; production keeps the defaults.

    Attributes:
        lease_s: how long a claim stays valid without renewal; a dead holder's tasks are reclaimed
            this long after its last renewal.
        renew_s: how often held leases are renewed (well under `lease_s`).
        aging_s: a queued task gains one priority level per `aging_s` seconds waited (read when a
            task is queued; see `_queue`).
        delta_flush_s: the longest streamed text waits before it is logged.
        max_running: the most tasks running at once across every worker on the database (a global
            concurrency limit); None = no limit. Default: ``$LOOMIQ_MAX_RUNNING``. Every process
            that claims tasks should have the same value. Durable runs started in-process
            (``run(durable=True)``) are not queued, so they count towards it but are not held back.
    """

    lease_s: float = 10.0
    renew_s: float = 3.0
    aging_s: float = 60.0
    delta_flush_s: float = 0.05
    max_running: int | None = field(default_factory=lambda: _env_limit("LOOMIQ_MAX_RUNNING"))

    def __post_init__(self) -> None:
        if self.max_running is not None and self.max_running < 1:
            raise ValueError(f"max_running must be at least 1, not {self.max_running}")
        if not 0 < self.renew_s < self.lease_s:
            raise ValueError(f"renew_s ({self.renew_s:g} s) must be positive and below lease_s ({self.lease_s:g} s), "
                             "so that a holder renews its lease before it runs out")
        if not self.aging_s > 0:
            raise ValueError(f"aging_s must be a positive number of seconds, not {self.aging_s!r}")


def _env_limit(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        limit = int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: expected a whole number of tasks") from None
    if limit < 1:
        raise ValueError(f"{name}={value!r}: expected at least 1 task (unset it for no limit)")
    return limit
