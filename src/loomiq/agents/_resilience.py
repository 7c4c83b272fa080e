"""Retry and circuit-breaker decisions, as plain functions and small state machines over data.

Nothing here awaits: the agent-call loop asks these objects what to do and does the waiting itself,
so the policies are tested without an event loop or a clock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently one agent call is retried.

    Delays grow exponentially from `base_delay_s`, capped at `max_delay_s`, with "equal jitter"
    (half fixed, half random) so that many clients retrying together spread out. A provider's
    `Retry-After` is honoured when it is at most `max_retry_after_s`; a longer one means the agent
    is better failed over than waited for.
    """

    max_attempts: int = 3
    base_delay_s: float = 0.25
    max_delay_s: float = 8.0
    max_retry_after_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random | None = None) -> float | None:
        """Seconds to wait before attempt number `attempt + 1` (0-based), or None to stop retrying."""
        if attempt + 1 >= self.max_attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after_s else None
        backoff = min(self.max_delay_s, self.base_delay_s * (2.0**attempt))
        return backoff / 2 + (rng or random).uniform(0, backoff / 2)


class BreakerState(StrEnum):
    """A circuit breaker's state."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Per-agent breaker: opens after `threshold` consecutive failures, half-opens after `cooldown_s`.

    While half-open, exactly one probe call is let through; its success closes the breaker, its
    failure opens it again for another cool-down.
    """

    __slots__ = ("threshold", "cooldown_s", "_failures", "_opened_at", "_probing", "_clock")

    def __init__(self, threshold: int = 5, cooldown_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._clock = clock

    @property
    def state(self) -> BreakerState:
        """The current state, moving from open to half-open once the cool-down has passed."""
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success."""
        return self._failures

    def allow(self) -> bool:
        """Whether a call may go through now. In half-open state, only one probe at a time."""
        if self._opened_at is None:
            return True
        if self.state is BreakerState.OPEN or self._probing:
            return False
        self._probing = True
        return True

    def record_success(self) -> None:
        """A call succeeded: close the breaker."""
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        """A call failed: count it, and open (or re-open) the breaker at the threshold."""
        self._failures += 1
        if self._probing or self._failures >= self.threshold:
            self._opened_at = self._clock()
        self._probing = False

    def release_probe(self) -> None:
        """A half-open probe ended without a verdict (cancelled): let another probe through."""
        self._probing = False
