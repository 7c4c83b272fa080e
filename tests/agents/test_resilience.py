"""RetryPolicy delays and the CircuitBreaker state machine, without an event loop or a real clock."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loomiq.agents import BreakerState, CircuitBreaker, RetryPolicy


class EdgeRng:
    """A stand-in for `random.Random` whose `uniform` always returns its lower or upper bound."""

    def __init__(self, upper: bool) -> None:
        self.upper = upper

    def uniform(self, a: float, b: float) -> float:
        return b if self.upper else a


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- RetryPolicy -------------------------------------------------------------------------------


def test_delay_grows_exponentially_from_the_base() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay_s=0.5, max_delay_s=100.0)
    highest = [policy.delay(a, None, EdgeRng(upper=True)) for a in range(5)]
    lowest = [policy.delay(a, None, EdgeRng(upper=False)) for a in range(5)]
    assert highest == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert lowest == [0.25, 0.5, 1.0, 2.0, 4.0]


def test_delay_is_capped_at_max_delay() -> None:
    policy = RetryPolicy(max_attempts=20, base_delay_s=1.0, max_delay_s=5.0)
    assert policy.delay(2, None, EdgeRng(upper=True)) == 4.0
    assert policy.delay(3, None, EdgeRng(upper=True)) == 5.0
    assert policy.delay(15, None, EdgeRng(upper=True)) == 5.0
    assert policy.delay(15, None, EdgeRng(upper=False)) == 2.5


def test_jitter_with_a_seeded_rng_is_reproducible_and_within_bounds() -> None:
    policy = RetryPolicy(max_attempts=8, base_delay_s=0.2, max_delay_s=3.0)
    first = [policy.delay(a, None, random.Random(1234)) for a in range(7)]
    again = [policy.delay(a, None, random.Random(1234)) for a in range(7)]
    assert first == again
    for attempt, delay in enumerate(first):
        backoff = min(3.0, 0.2 * 2**attempt)
        assert delay is not None
        assert backoff / 2 <= delay <= backoff
    # The jitter is real: different seeds give different delays.
    other = [policy.delay(a, None, random.Random(99)) for a in range(7)]
    assert other != first


def test_retry_after_is_honoured_instead_of_the_backoff() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.25, max_delay_s=8.0, max_retry_after_s=30.0)
    assert policy.delay(0, 2.5) == 2.5
    assert policy.delay(1, 0.0) == 0.0
    assert policy.delay(0, 30.0) == 30.0  # exactly the limit is still waited for


def test_too_long_retry_after_gives_up() -> None:
    policy = RetryPolicy(max_attempts=5, max_retry_after_s=30.0)
    assert policy.delay(0, 30.5) is None
    assert policy.delay(0, 3600.0) is None


def test_last_attempt_never_retries() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.delay(0, None) is not None
    assert policy.delay(1, None) is not None
    assert policy.delay(2, None) is None
    assert policy.delay(2, 0.1) is None  # even when the provider says when to come back
    assert RetryPolicy(max_attempts=1).delay(0, None) is None


@given(
    attempt=st.integers(min_value=0, max_value=40),
    base=st.floats(min_value=0.0, max_value=20.0, allow_nan=False),
    cap=st.floats(min_value=0.0, max_value=120.0, allow_nan=False),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_delay_is_always_between_half_and_full_backoff(attempt: int, base: float, cap: float, seed: int) -> None:
    policy = RetryPolicy(max_attempts=attempt + 2, base_delay_s=base, max_delay_s=cap)
    delay = policy.delay(attempt, None, random.Random(seed))
    backoff = min(cap, base * 2**attempt)
    assert delay is not None
    assert backoff / 2 <= delay <= backoff
    assert delay <= cap


@given(
    attempt=st.integers(min_value=0, max_value=10),
    max_attempts=st.integers(min_value=1, max_value=12),
    retry_after=st.none() | st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
)
def test_delay_stops_exactly_at_the_last_attempt(
    attempt: int, max_attempts: int, retry_after: float | None
) -> None:
    policy = RetryPolicy(max_attempts=max_attempts, max_retry_after_s=30.0)
    delay = policy.delay(attempt, retry_after, random.Random(0))
    if attempt + 1 >= max_attempts or (retry_after is not None and retry_after > 30.0):
        assert delay is None
    elif retry_after is not None:
        assert delay == retry_after
    else:
        assert delay is not None and delay >= 0


# --- CircuitBreaker ----------------------------------------------------------------------------


def open_breaker(threshold: int = 3, cooldown_s: float = 10.0) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold, cooldown_s, clock=clock)
    for _ in range(threshold):
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    return breaker, clock


def test_breaker_starts_closed_and_allows_calls() -> None:
    breaker = CircuitBreaker(3, 10.0, clock=FakeClock())
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    assert breaker.allow() and breaker.allow()


def test_breaker_opens_at_the_threshold_and_rejects_calls() -> None:
    breaker = CircuitBreaker(3, 10.0, clock=FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 2
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.consecutive_failures == 3
    assert not breaker.allow()
    assert not breaker.allow()


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(3, 10.0, clock=FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    assert breaker.consecutive_failures == 0
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_breaker_stays_open_until_the_cooldown_has_passed() -> None:
    breaker, clock = open_breaker(cooldown_s=10.0)
    clock.advance(9.999)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.advance(0.001)
    assert breaker.state is BreakerState.HALF_OPEN


def test_half_open_lets_exactly_one_probe_through() -> None:
    breaker, clock = open_breaker()
    clock.advance(10.0)
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else waits for its verdict
    assert not breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN


def test_probe_success_closes_the_breaker() -> None:
    breaker, clock = open_breaker()
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    assert breaker.allow() and breaker.allow()


def test_probe_failure_reopens_for_a_fresh_cooldown() -> None:
    breaker, clock = open_breaker(cooldown_s=10.0)
    clock.advance(15.0)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.advance(9.0)  # 24 s after the first opening, 9 s after the re-opening
    assert breaker.state is BreakerState.OPEN
    clock.advance(1.0)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()


def test_release_probe_lets_another_probe_through() -> None:
    breaker, clock = open_breaker()
    clock.advance(10.0)
    assert breaker.allow()
    assert not breaker.allow()
    breaker.release_probe()  # the probe was cancelled: no verdict
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()


@given(ops=st.lists(st.booleans(), max_size=40), threshold=st.integers(min_value=1, max_value=6))
def test_breaker_is_open_iff_the_trailing_failures_reach_the_threshold(ops: list[bool], threshold: int) -> None:
    """With no time passing, only the run of failures since the last success matters."""
    breaker = CircuitBreaker(threshold, 10.0, clock=FakeClock())
    trailing = 0
    for ok in ops:
        if ok:
            breaker.record_success()
            trailing = 0
        else:
            breaker.record_failure()
            trailing += 1
    assert breaker.consecutive_failures == trailing
    expected = BreakerState.OPEN if trailing >= threshold else BreakerState.CLOSED
    assert breaker.state is expected
    assert breaker.allow() is (expected is BreakerState.CLOSED)


@pytest.mark.parametrize("threshold", [1, 2, 5])
def test_breaker_opens_after_exactly_threshold_failures(threshold: int) -> None:
    breaker = CircuitBreaker(threshold, 1.0, clock=FakeClock())
    for _ in range(threshold - 1):
        breaker.record_failure()
        assert breaker.allow()
    breaker.record_failure()
    assert not breaker.allow()
