"""`@tool`: schemas from type hints and docstrings, validation, footprints, sync and async functions."""

from __future__ import annotations

import threading
from typing import Literal

import pytest
from pydantic import BaseModel

import loomiq
from loomiq.tools import (
    EXCLUSIVE,
    PURE,
    Footprint,
    FunctionTool,
    InvalidArguments,
    ToolContext,
    ToolResult,
    normalize_resource,
    tool,
)
from loomiq.tools._docstring import parse_docstring


class Point(BaseModel):
    x: int
    y: int = 0


@tool
async def get_weather(city: str, units: Literal["c", "f"] = "c", days: int = 1) -> str:
    """Current weather in a city.

    Args:
        city: the city's name,
            in English.
        units: c or f.

    Returns:
        A short report.
    """
    return f"{city}: 18{units} for {days} day(s)"


def test_decorator_is_exported_at_the_top() -> None:
    assert loomiq.tool is tool
    assert isinstance(get_weather, FunctionTool)


def test_schema_from_hints_and_docstring() -> None:
    spec = get_weather.spec()
    assert spec.name == "get_weather"
    assert spec.description == "Current weather in a city."
    assert spec.parameters == {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "city": {"type": "string", "description": "the city's name, in English."},
            "units": {"type": "string", "enum": ["c", "f"], "default": "c", "description": "c or f."},
            "days": {"type": "integer", "default": 1},
        },
        "required": ["city"],
    }


def test_nested_models_lists_and_context_parameter() -> None:
    @tool(name="plot", description="Plot points.", timeout_s=3, read_only=True)
    def plot(points: list[Point], ctx: ToolContext, label: str | None = None) -> dict[str, int]:
        return {"n": len(points), "tenant": len(ctx.tenant_id)}

    assert plot.name == "plot" and plot.timeout_s == 3 and plot.spec().read_only
    props = plot.parameters["properties"]
    assert set(props) == {"points", "label"}  # the context is not an argument
    assert props["points"]["items"] == {"$ref": "#/$defs/Point"}
    args = plot.validate({"points": [{"x": 1}, {"x": 2, "y": 3}]})
    assert args["points"] == [Point(x=1), Point(x=2, y=3)]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "argument 'city': Field required"),
        ({"city": 3}, "argument 'city': Input should be a valid string"),
        ({"city": "Oslo", "units": "k"}, "argument 'units': Input should be 'c' or 'f'"),
        ({"city": "Oslo", "days": "many"}, "argument 'days': Input should be a valid integer"),
        ({"city": "Oslo", "country": "NO"}, "argument 'country': unexpected argument"),
    ],
)
def test_invalid_arguments_name_the_field(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArguments) as info:
        get_weather.validate(arguments)
    assert str(info.value).startswith(message)


def test_lax_conversion_of_what_models_send() -> None:
    assert get_weather.validate({"city": "Oslo", "days": "3"})["days"] == 3


async def test_async_and_sync_functions_run() -> None:
    seen: list[str] = []

    @tool
    def blocking(n: int) -> list[int]:
        seen.append(threading.current_thread().name)
        return list(range(n))

    result = await blocking.run(blocking.validate({"n": 3}), ToolContext())
    assert result == ToolResult("[0, 1, 2]", [0, 1, 2])
    assert seen and seen[0] != threading.current_thread().name  # ran in a worker thread
    result = await get_weather.run(get_weather.validate({"city": "Oslo"}), ToolContext())
    assert result.content == "Oslo: 18c for 1 day(s)"
    assert blocking(2) == [0, 1]  # still callable as a function


def test_footprints_from_templates_and_functions() -> None:
    @tool(reads=["file:{src}"], writes=["file:{dst}", "kb:{collection}"])
    def copy(src: str, dst: str, collection: str | None = None) -> str:
        return ""

    fp = copy.footprint(copy.validate({"src": "./a/../b.py", "dst": "c.py"}))
    assert fp == Footprint(frozenset({"file:b.py"}), frozenset({"file:c.py"}))  # kb: left out when None

    @tool(writes=["file:{paths}"])
    def touch(paths: list[str]) -> str:
        return ""

    assert touch.footprint({"paths": ["a", "b"]}).writes == frozenset({"file:a", "file:b"})

    @tool(writes=lambda args: [f"key:{args['k']}"])
    def put(k: str) -> str:
        return ""

    assert put.footprint({"k": "x"}).writes == frozenset({"key:x"})
    assert get_weather.footprint({"city": "x"}) is PURE

    @tool(exclusive=True)
    def anything() -> str:
        return ""

    assert anything.footprint({}) is EXCLUSIVE


def test_bad_declarations_fail_at_decoration() -> None:
    with pytest.raises(TypeError, match="'nope', which is not a parameter"):

        @tool(writes=["file:{nope}"])
        def f(path: str) -> str:
            return ""

    with pytest.raises(ValueError, match="tool name 'a.b'"):
        tool(name="a.b")(lambda: "")
    with pytest.raises(ValueError, match="without '__'"):
        tool(name="time__now")(lambda: "")
    with pytest.raises(TypeError, match="named arguments only"):

        @tool
        def g(*args: int) -> str:
            return ""


def test_normalize_resource() -> None:
    assert normalize_resource("file:./src/../src/a.py") == "file:src/a.py"
    assert normalize_resource("kb:Docs") == "kb:Docs"


def test_docstring_parser_sections() -> None:
    summary, params = parse_docstring(
        """Do a thing.

        More words.

        Args:
            a (int): first.
            *rest: ignored style.

        Raises:
            ValueError: never.
        """
    )
    assert summary == "Do a thing.\n\nMore words."
    assert params == {"a": "first.", "rest": "ignored style."}
    assert parse_docstring(None) == ("", {})
