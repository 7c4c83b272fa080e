"""Parallel tool calls with conflict detection: the pure scheduler, the 8-call timing test of issue 11,
and a property test (1,000 randomized turns) that the files and reads equal a sequential run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loomiq.models import Message, ModelRequest, ScriptedReply
from loomiq.tools import EXCLUSIVE, PURE, Footprint, ToolContext, ToolLoop, critical_path, schedule, tool

from .support import MemoryFiles, complete, scripted


def fp(reads: str = "", writes: str = "") -> Footprint:
    return Footprint(frozenset(reads.split()), frozenset(writes.split()))


def test_overlaps_wait_in_model_order() -> None:
    calls = [fp(writes="a"), fp(reads="a"), fp(reads="a"), fp(writes="a"), fp(writes="b"), PURE, fp(reads="b")]
    assert schedule(calls) == ((), (0,), (0,), (0, 1, 2), (), (), (4,))


def test_exclusive_runs_alone() -> None:
    calls = [PURE, fp(writes="a"), EXCLUSIVE, PURE, fp(reads="z")]
    assert schedule(calls) == ((), (), (0, 1), (2,), (2,))


def test_reads_never_wait_for_reads() -> None:
    assert schedule([fp(reads="a b"), fp(reads="a"), fp(reads="b")]) == ((), (), ())


def test_critical_path() -> None:
    waits = schedule([fp(writes="a"), fp(reads="a"), fp(writes="a"), PURE])
    assert critical_path(waits, [1, 1, 1, 1]) == 3
    assert critical_path((), []) == 0


async def test_eight_calls_two_writers_one_reader_five_disjoint_take_three_slots() -> None:
    order: list[str] = []

    @tool(writes=["file:{path}"])
    async def write(path: str, text: str) -> str:
        order.append(f"start write {path} {text}")
        await asyncio.sleep(0.1)
        order.append(f"end write {path} {text}")
        return "ok"

    @tool(reads=["file:{path}"])
    async def read(path: str) -> str:
        order.append(f"start read {path}")
        await asyncio.sleep(0.1)
        return "text"

    turn = ScriptedReply.calling(
        ("write", {"path": "src/a.py", "text": "1"}),
        ("write", {"path": "src/b.py", "text": "x"}),
        ("read", {"path": "src/a.py"}),
        ("read", {"path": "src/c.py"}),
        ("write", {"path": "src/a.py", "text": "2"}),
        ("write", {"path": "src/d.py", "text": "x"}),
        ("write", {"path": "src/e.py", "text": "x"}),
        ("read", {"path": "README.md"}),
    )
    model = scripted(turn, "done")
    started = time.perf_counter()
    result = await ToolLoop([write, read]).run(
        lambda r: complete(model, r), ModelRequest((Message("user", "go"),))
    )
    wall = time.perf_counter() - started
    assert 0.29 <= wall < 0.6, f"wall {wall:.3f}s: expected about 0.3 s (3 slots of 100 ms), not 0.8 s"
    assert [r.waited_for for r in result.tool_calls] == [(), (), (0,), (), (0, 2), (), (), ()]
    # The overlapping calls ran in the model's order.
    assert order.index("end write src/a.py 1") < order.index("start read src/a.py")
    assert order.index("start read src/a.py") < order.index("start write src/a.py 2")


PATHS = ("a", "b", "c")
PATH = st.sampled_from(PATHS)
TEXT = st.text("xyz", max_size=2)
CALL = st.one_of(
    st.tuples(st.just("write"), st.fixed_dictionaries({"path": PATH, "text": TEXT})),
    st.tuples(st.just("append"), st.fixed_dictionaries({"path": PATH, "text": TEXT})),
    st.tuples(st.just("read"), st.fixed_dictionaries({"path": PATH})),
    st.tuples(st.just("copy"), st.fixed_dictionaries({"src": PATH, "dst": PATH})),
)


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as r:
        yield r


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    calls=st.lists(CALL, min_size=1, max_size=10),
    pauses=st.lists(st.integers(0, 3), min_size=1, max_size=10),
    start=st.dictionaries(st.sampled_from(PATHS), st.text("ab", max_size=2)),
)
def test_concurrent_round_equals_a_sequential_run(
    runner: asyncio.Runner, calls: list[tuple[str, dict[str, str]]], pauses: list[int], start: dict[str, str]
) -> None:
    async def run(pauses: list[int], concurrent: bool) -> tuple[dict[str, str], list[str]]:
        """The files at the end, and what each call returned, in the model's order."""
        model_files = MemoryFiles(dict(start))
        tools = model_files.tools(pauses)
        if concurrent:
            model = scripted(ScriptedReply.calling(*calls), "done")
            result = await ToolLoop(tools).run(lambda r: complete(model, r), ModelRequest((Message("user", "go"),)))
            return model_files.files, [r.content for r in result.tool_calls]
        by_name = {t.name: t for t in tools}
        outputs = []
        for name, args in calls:  # one by one, in the model's order
            t = by_name[name]
            outputs.append((await t.run(t.validate(args), ToolContext())).content)
        return model_files.files, outputs

    assert runner.run(run(pauses, concurrent=True)) == runner.run(run([0], concurrent=False))
