"""`call_agent`: retries, Retry-After, timeouts, the circuit breaker, statistics, concurrency and
cancellation, on scripted models."""

from __future__ import annotations

import asyncio
import time

import pytest

from loomiq.agents import AgentCallFailed, AgentState, BreakerState, CircuitBreaker, RetryPolicy, call_agent
from loomiq.models import (
    AuthenticationFailed,
    BadRequest,
    Message,
    ModelRequest,
    ModelResponse,
    Pricing,
    ScriptedReply,
)
from tests.factories import NO_RETRY, RaisingModel, make_agent, scripted

REQUEST = ModelRequest((Message("user", "What is the answer?"),))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- retries -----------------------------------------------------------------------------------


async def test_success_on_the_first_attempt() -> None:
    agent = make_agent("a", replies=["forty-two"])
    response, attempts = await call_agent(agent, REQUEST)
    assert response.text == "forty-two"
    assert attempts == 1
    assert len(scripted(agent).calls) == 1


async def test_rate_limit_is_retried_after_the_retry_after_delay() -> None:
    agent = make_agent("a", replies=["ok"], failures={0: ScriptedReply(error="rate_limit", retry_after=0.05)})
    started = time.perf_counter()
    response, attempts = await call_agent(agent, REQUEST)
    elapsed = time.perf_counter() - started
    assert response.text == "ok"
    assert attempts == 2
    # The fast policy's own backoff is at most 4 ms: only Retry-After explains a 50 ms wait.
    assert 0.05 <= elapsed < 0.3
    assert agent.stats.failures == 1 and agent.stats.successes == 1 and agent.stats.calls == 2


async def test_rate_limit_with_too_long_retry_after_gives_up_at_once() -> None:
    agent = make_agent("a", replies=["ok"], failures={0: ScriptedReply(error="rate_limit", retry_after=5.0)})
    started = time.perf_counter()
    with pytest.raises(AgentCallFailed) as info:
        await call_agent(agent, REQUEST)
    assert time.perf_counter() - started < 0.5
    assert info.value.kind == "rate_limited"
    assert info.value.attempts == 1
    assert len(scripted(agent).calls) == 1


@pytest.mark.parametrize("failure", ["rate_limit", "server_error", "malformed_tool_call"])
async def test_retryable_failures_are_retried(failure: str) -> None:
    agent = make_agent("a", replies=["recovered"], failures={0: failure, 1: failure})
    response, attempts = await call_agent(agent, REQUEST)
    assert response.text == "recovered"
    assert attempts == 3
    assert [c.outcome for c in scripted(agent).calls] == [failure, failure, "ok"]


@pytest.mark.parametrize(
    ("failure", "kind"),
    [("rate_limit", "rate_limited"), ("server_error", "provider_unavailable"),
     ("malformed_tool_call", "malformed_response")],
)
async def test_retries_are_bounded_by_max_attempts(failure: str, kind: str) -> None:
    agent = make_agent("a", replies=["never"], failures={i: failure for i in range(10)})
    with pytest.raises(AgentCallFailed) as info:
        await call_agent(agent, REQUEST)
    assert info.value.kind == kind
    assert info.value.attempts == 3
    assert info.value.agent_id == "a"
    assert str(info.value).startswith("a: ")
    assert len(scripted(agent).calls) == 3
    assert agent.stats.failures == 3 and agent.stats.successes == 0
    assert agent.stats.last_error is not None and agent.stats.last_error.startswith(f"{kind}: ")


@pytest.mark.parametrize(
    ("error", "kind"),
    [(AuthenticationFailed("401: bad key", status=401), "authentication_failed"),
     (BadRequest("400: bad request", status=400), "bad_request")],
)
async def test_non_retryable_errors_stop_at_once(error: Exception, kind: str) -> None:
    model = RaisingModel(error)
    agent = make_agent("a", model=model, retry=RetryPolicy(max_attempts=5, base_delay_s=0.001))
    with pytest.raises(AgentCallFailed) as info:
        await call_agent(agent, REQUEST)
    assert model.calls == 1
    assert info.value.kind == kind
    assert info.value.attempts == 1
    assert info.value.reason == str(error)


# --- timeouts ----------------------------------------------------------------------------------


async def test_timeout_becomes_a_timeout_failure() -> None:
    agent = make_agent("a", timeout_s=0.1, retry=NO_RETRY, failures={0: "timeout"})
    started = time.perf_counter()
    with pytest.raises(AgentCallFailed) as info:
        await call_agent(agent, REQUEST)
    elapsed = time.perf_counter() - started
    assert info.value.kind == "timeout"
    assert "0.1s" in info.value.reason
    assert 0.1 <= elapsed < 0.3
    assert agent.stats.failures == 1 and agent.stats.in_flight == 0
    assert agent.stats.last_error is not None and agent.stats.last_error.startswith("timeout: ")
    # The deadline's own cancellation was undone: this task is not left cancelling.
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)


async def test_a_timed_out_attempt_is_retried() -> None:
    agent = make_agent("a", timeout_s=0.1, replies=["late but fine"], failures={0: "timeout"})
    response, attempts = await call_agent(agent, REQUEST)
    assert response.text == "late but fine"
    assert attempts == 2


async def test_timeout_applies_to_streaming_calls() -> None:
    agent = make_agent("a", timeout_s=0.1, retry=NO_RETRY, failures={0: "timeout"})
    started = time.perf_counter()
    with pytest.raises(AgentCallFailed) as info:
        await call_agent(agent, REQUEST, on_delta=lambda _: None)
    assert info.value.kind == "timeout"
    assert time.perf_counter() - started < 0.3


# --- circuit breaker ---------------------------------------------------------------------------


async def test_breaker_opens_after_the_threshold_and_fails_fast() -> None:
    agent = make_agent("a", retry=NO_RETRY, breaker_threshold=2, failures={i: "server_error" for i in range(10)})
    for _ in range(2):
        with pytest.raises(AgentCallFailed) as info:
            await call_agent(agent, REQUEST)
        assert info.value.kind == "provider_unavailable"
    assert agent.state is AgentState.OPEN_CIRCUIT
    with pytest.raises(AgentCallFailed) as info:
        await call_agent(agent, REQUEST)
    assert info.value.kind == "circuit_open"
    assert info.value.attempts == 0
    assert len(scripted(agent).calls) == 2  # the model was not called again
    assert agent.stats.calls == 2


async def test_breaker_opening_mid_retry_stops_the_retries() -> None:
    agent = make_agent(
        "a", retry=RetryPolicy(max_attempts=5, base_delay_s=0.001, max_delay_s=0.002), breaker_threshold=2,
        failures={i: "server_error" for i in range(10)},
    )
    with pytest.raises(AgentCallFailed) as info:
        await call_agent(agent, REQUEST)
    assert info.value.kind == "circuit_open"
    assert info.value.attempts == 2
    assert len(scripted(agent).calls) == 2


async def test_half_open_probe_success_closes_the_breaker() -> None:
    agent = make_agent("a", retry=NO_RETRY, breaker_threshold=1, replies=["back"], failures={0: "server_error"})
    clock = FakeClock()
    agent.breaker = CircuitBreaker(1, 10.0, clock=clock)
    with pytest.raises(AgentCallFailed):
        await call_agent(agent, REQUEST)
    with pytest.raises(AgentCallFailed, match="circuit breaker is open"):
        await call_agent(agent, REQUEST)
    clock.now += 10.0
    response, _ = await call_agent(agent, REQUEST)
    assert response.text == "back"
    assert agent.breaker.state is BreakerState.CLOSED
    assert agent.state is AgentState.IDLE


async def test_offline_agent_is_not_called() -> None:
    agent = make_agent("a")
    agent.enabled = False
    with pytest.raises(AgentCallFailed) as info:
        await call_agent(agent, REQUEST)
    assert info.value.kind == "offline"
    assert scripted(agent).calls == []


# --- statistics --------------------------------------------------------------------------------


async def test_statistics_count_calls_tokens_and_cost() -> None:
    agent = make_agent(
        "a",
        replies=[ScriptedReply("priced", input_tokens=100, output_tokens=20)],
        failures={0: "server_error"},
        pricing=Pricing(input_per_token=0.001, output_per_token=0.002),
    )
    response, attempts = await call_agent(agent, REQUEST)
    assert attempts == 2
    assert response.cost_usd == pytest.approx(0.14)
    response, _ = await call_agent(agent, REQUEST)
    s = agent.stats
    assert (s.calls, s.successes, s.failures) == (3, 2, 1)
    assert (s.input_tokens, s.output_tokens) == (200, 40)
    assert s.cost_usd == pytest.approx(0.28)
    assert s.in_flight == 0
    assert s.total_latency_s > 0
    assert s.success_rate == pytest.approx(2 / 3)
    assert s.last_error == "provider_unavailable: scripted 500: internal server error"


async def test_streaming_calls_deliver_deltas_and_count_like_complete() -> None:
    text = "one two three four five six seven"
    agent = make_agent("a", replies=[text], chunk_words=2)
    deltas: list[str] = []
    response, attempts = await call_agent(agent, REQUEST, on_delta=deltas.append)
    assert len(deltas) == 4
    assert "".join(deltas) == text == response.text
    assert attempts == 1
    assert agent.stats.successes == 1 and agent.stats.output_tokens == response.usage.output_tokens > 0


# --- concurrency and cancellation --------------------------------------------------------------


async def test_max_concurrency_is_respected() -> None:
    peak = 0

    def reply(request: ModelRequest, index: int) -> str:
        nonlocal peak
        peak = max(peak, agent.stats.in_flight)
        return f"reply {index}"

    agent = make_agent("a", max_concurrency=2, latency_s=0.03, replies=reply)
    started = time.perf_counter()
    results = await asyncio.gather(*(call_agent(agent, REQUEST) for _ in range(6)))
    elapsed = time.perf_counter() - started
    assert sorted(r.text for r, _ in results) == [f"reply {i}" for i in range(6)]
    assert peak == 2
    assert elapsed >= 0.09  # three waves of two
    assert agent.stats.in_flight == 0


async def test_cancellation_propagates_and_leaves_nothing_in_flight() -> None:
    agent = make_agent("a", latency_s=5.0)
    task = asyncio.create_task(call_agent(agent, REQUEST))
    await asyncio.sleep(0.02)
    assert agent.stats.in_flight == 1
    assert agent.state is AgentState.BUSY
    started = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - started < 0.1
    assert agent.stats.in_flight == 0
    assert agent.stats.failures == 0  # a cancelled call is not the agent's failure
    assert agent.breaker.consecutive_failures == 0
    assert scripted(agent).calls[0].finished is False


async def test_outside_cancellation_is_not_turned_into_a_timeout() -> None:
    agent = make_agent("a", latency_s=5.0, timeout_s=0.1)
    task = asyncio.create_task(call_agent(agent, REQUEST))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.1)  # past the deadline: nothing fires late
    assert agent.stats.failures == 0
    assert agent.stats.in_flight == 0


class DeadlineRaceModel:
    """A model whose call is cancelled from outside in the same loop turn as the deadline fires.

    When the deadline tick cancels the waiting call, the future it waits on gets cancelled; a done
    callback registered before the call awaits it runs before the call resumes, and cancels the task
    once more, as a caller (a run's cancel or its own timeout) would at that very moment.
    """

    provider = "fake"
    model_name = "race"
    offline = True

    def __init__(self) -> None:
        self.outside_cancel_sent = False

    async def complete(self, request: ModelRequest) -> ModelResponse:
        task = asyncio.current_task()
        assert task is not None
        waiter = asyncio.get_running_loop().create_future()

        def outside_cancel(_: asyncio.Future[None]) -> None:
            self.outside_cancel_sent = True
            task.cancel()

        waiter.add_done_callback(outside_cancel)
        await waiter
        raise AssertionError("unreachable: the waiter is never resolved")

    def stream(self, request: ModelRequest):  # pragma: no cover - not used
        raise NotImplementedError

    async def aclose(self) -> None:
        """Nothing to release."""


async def test_outside_cancellation_at_the_deadline_still_propagates() -> None:
    model = DeadlineRaceModel()
    agent = make_agent("a", model=model, timeout_s=0.05, retry=NO_RETRY)
    task = asyncio.create_task(call_agent(agent, REQUEST))
    done, _ = await asyncio.wait([task], timeout=1.0)
    assert done, "the call did not end"
    assert model.outside_cancel_sent
    # The caller asked for cancellation: it must see CancelledError, not a swallowed cancel
    # reported as the agent's timeout.
    assert task.cancelled(), f"outside cancellation was swallowed: {task.exception()!r}"


async def test_a_cancelled_half_open_probe_lets_the_next_probe_through() -> None:
    agent = make_agent("a", latency_s=5.0, breaker_threshold=1)
    clock = FakeClock()
    agent.breaker = CircuitBreaker(1, 10.0, clock=clock)
    agent.breaker.record_failure()
    clock.now += 10.0
    assert agent.breaker.state is BreakerState.HALF_OPEN
    task = asyncio.create_task(call_agent(agent, REQUEST))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert agent.breaker.allow()  # the cancelled probe gave no verdict

