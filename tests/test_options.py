"""Run options are validated in the library, whoever calls it (issue 10 item 16), and the entry points
have explicit signatures (no ``**kwargs``)."""

from __future__ import annotations

import inspect
import math

import pytest

from loomiq import InvalidOptions, Orchestrator, RunOptions
from loomiq.engine import InvalidTask, SubmitOptions, TaskEngine, TaskRetry
from tests.factories import make_agent

TASK = "Should we move the nightly batch jobs to a queue?"


@pytest.mark.parametrize("timeout_s", [0, -1, -0.5, math.nan, math.inf, True, "10"])
def test_a_timeout_must_be_a_positive_number_of_seconds(timeout_s: object) -> None:
    with pytest.raises(InvalidOptions, match="timeout_s must be a positive number of seconds"):
        RunOptions(timeout_s=timeout_s)  # type: ignore[arg-type]


def test_one_string_is_one_name_never_its_characters() -> None:
    options = RunOptions(agents="local", capabilities="coding")
    assert options.agents == ("local",)
    assert options.capabilities == ("coding",)
    assert RunOptions(agents=["a", "b"]).agents == ("a", "b")
    assert RunOptions(agents=[]).agents is None  # empty: let the registry pick


@pytest.mark.parametrize(("field", "value", "message"), [
    ("agents", [1], "agents must hold non-empty strings"),
    ("agents", ["a", " "], "agents must hold non-empty strings"),
    ("agents", 3, "agents must be a list of names"),
    ("capabilities", {"x": 1}, "capabilities must be a list of names"),
    ("strategy", "", "strategy must be a strategy name"),
    ("options", ["lead"], "options must be a mapping"),
    ("context", "text", "context must be a mapping"),
])
def test_bad_values_are_refused_naming_the_argument(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidOptions, match=message):
        RunOptions(**{field: value})  # type: ignore[arg-type]


async def test_the_orchestrator_refuses_a_zero_timeout_instead_of_running_unbounded() -> None:
    orch = Orchestrator([make_agent("local", replies=["ok"])])
    for bad in (0, -1):
        with pytest.raises(InvalidOptions, match="timeout_s"):
            await orch.run(TASK, strategy="single", timeout_s=bad)
        with pytest.raises(InvalidOptions, match="timeout_s"):
            orch.stream(TASK, strategy="single", timeout_s=bad)


async def test_agents_as_one_string_runs_that_agent() -> None:
    orch = Orchestrator([make_agent("local", replies=["from local"]), make_agent("l", replies=["from l"])])
    result = await orch.run(TASK, strategy="single", agents="local")
    assert result.status == "completed"
    assert [s.agent for s in result.steps] == ["local"]


def test_submit_options_name_what_they_refuse() -> None:
    assert SubmitOptions(after="t-1").after == ("t-1",)
    with pytest.raises(InvalidTask, match="unknown priority 'urgent'"):
        SubmitOptions(priority="urgent")  # type: ignore[arg-type]
    with pytest.raises(InvalidTask, match="timeout_s must be a positive number"):
        SubmitOptions(timeout_s=0)
    with pytest.raises(InvalidTask, match="bad retry policy"):
        SubmitOptions(retry=TaskRetry(max_attempts=0))
    with pytest.raises(InvalidTask, match="idempotency_key must be a non-empty string"):
        SubmitOptions(idempotency_key=" ")
    with pytest.raises(InvalidTask, match="tenant_id is empty"):
        SubmitOptions(tenant_id="")
    assert issubclass(InvalidTask, InvalidOptions) and issubclass(InvalidTask, ValueError)


def test_options_are_frozen() -> None:
    options = RunOptions(strategy="single")
    with pytest.raises(AttributeError):
        options.strategy = "parallel"  # type: ignore[misc]


@pytest.mark.parametrize("method", [
    Orchestrator.run, Orchestrator.stream, Orchestrator.submit, Orchestrator.plan, Orchestrator.list_tasks,
    Orchestrator.open_engine, TaskEngine.run, TaskEngine.submit, TaskEngine.list_tasks, TaskEngine.open,
])
def test_entry_points_have_explicit_signatures(method: object) -> None:
    parameters = inspect.signature(method).parameters.values()  # type: ignore[arg-type]
    assert not [p.name for p in parameters if p.kind is inspect.Parameter.VAR_KEYWORD]
    assert not [p.name for p in parameters if p.kind is inspect.Parameter.VAR_POSITIONAL]
    named = [p for p in parameters if p.name not in ("self", "cls", "prompt", "runner", "url")]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in named), [p.name for p in named]


async def test_every_count_and_duration_of_the_engine_is_bounded(tmp_path: object) -> None:
    from loomiq.engine import Worker

    orch = Orchestrator([make_agent("local", replies=["ok"])])
    await orch.open_engine(f"sqlite:///{tmp_path}/tasks.db")
    try:
        task = (await orch.submit(TASK, strategy="single")).task
        for limit in (0, -1, 2**63, 1.5, True):
            with pytest.raises(InvalidOptions, match="limit must be a whole number from 1"):
                await orch.list_tasks(limit=limit)  # type: ignore[arg-type]
        for offset in (-1, 2**63, "0"):
            with pytest.raises(InvalidOptions, match="offset must be a whole number from 0"):
                await orch.list_tasks(offset=offset)  # type: ignore[arg-type]
        assert [t.id for t in await orch.list_tasks(limit=1, offset=0)] == [task.id]
        for timeout_s in (0, -1, math.nan):
            with pytest.raises(InvalidOptions, match="timeout_s must be a positive number of seconds"):
                await orch.wait(task.id, timeout_s=timeout_s)
        for kwargs, message in (({"concurrency": 0}, "concurrency must be a whole number from 1"),
                                ({"concurrency": 2**40}, "concurrency must be a whole number from 1"),
                                ({"drain_s": -1}, "drain_s must be a number of seconds, zero or more"),
                                ({"drain_s": math.inf}, "drain_s must be a number of seconds"),
                                ({"heartbeat_s": 0}, "heartbeat_s must be a positive number of seconds")):
            with pytest.raises(InvalidOptions, match=message):
                Worker(orch.engine, **kwargs)  # type: ignore[arg-type]
    finally:
        await orch.aclose()
