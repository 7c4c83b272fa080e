"""`@tool`: a Python function as a `Tool`.

The JSON Schema of the arguments comes from the type hints (through a pydantic model built once per
function, which also validates and converts each call's arguments), the description and the
parameters' descriptions from the docstring (Google style: ``Args:``). Async functions are awaited;
plain functions run in a worker thread so they never block the event loop. A parameter annotated
`ToolContext` receives the call's context and is not part of the schema.

What a call reads and writes is declared with ``reads=`` / ``writes=``: templates over the arguments
(``writes=["file:{path}"]``; an argument holding a list expands to one resource per item) or a
function of the validated arguments returning resource names. Without a declaration a call touches
nothing shared (`PURE`) and runs beside the others of its turn; ``exclusive=True`` makes it run
alone, in the model's order.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import posixpath
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import to_jsonable_python

from ._docstring import parse_docstring
from .base import EXCLUSIVE, PURE, Footprint, InvalidArguments, Tool, ToolContext, ToolResult

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What every provider accepts as a tool name (OpenAI's rule, the strictest)."""

FootprintDeclaration = Sequence[str] | Callable[[Mapping[str, Any]], Iterable[str]] | None
"""``reads=`` / ``writes=``: resource templates such as ``"file:{path}"``, or a function of the
validated arguments that returns resource names."""


def normalize_resource(resource: str) -> str:
    """One spelling per resource, so that two spellings of one file still conflict: ``file:`` paths
    are normalized (``./src/../src/a.py`` -> ``src/a.py``); other kinds are kept as given."""
    kind, sep, rest = resource.partition(":")
    if sep and kind == "file" and rest:
        path = posixpath.normpath(rest.replace("\\", "/"))
        return f"file:{path.removeprefix('./')}"
    return resource


class _Resources:
    """A compiled ``reads=`` or ``writes=`` declaration."""

    __slots__ = ("_function", "_templates")

    def __init__(self, declared: FootprintDeclaration, params: Iterable[str], tool: str, which: str) -> None:
        self._function: Callable[[Mapping[str, Any]], Iterable[str]] | None = None
        self._templates: list[tuple[str, tuple[str, ...]]] = []
        if declared is None:
            return
        if callable(declared):
            self._function = declared
            return
        if isinstance(declared, str):
            declared = [declared]
        known = set(params)
        for template in declared:
            fields = tuple(f for _, f, _, _ in string.Formatter().parse(template) if f is not None)
            unknown = [f for f in fields if f not in known]
            if unknown:
                raise TypeError(f"tool {tool!r}: {which}= template {template!r} names {unknown[0]!r}, "
                                "which is not a parameter")
            self._templates.append((template, fields))

    def __bool__(self) -> bool:
        return self._function is not None or bool(self._templates)

    def resolve(self, values: Mapping[str, Any]) -> frozenset[str]:
        if self._function is not None:
            return frozenset(normalize_resource(str(r)) for r in self._function(values))
        out: set[str] = set()
        for template, fields in self._templates:
            choices: list[list[Any]] = []
            for f in fields:
                value = values.get(f)
                if value is None:
                    break  # an optional argument left out names no resource
                choices.append(list(value) if isinstance(value, list | tuple | set | frozenset) else [value])
            else:
                for combo in itertools.product(*choices):
                    out.add(normalize_resource(template.format_map(dict(zip(fields, combo, strict=True)))))
        return frozenset(out)


class FunctionTool(Tool):
    """A `Tool` made from a Python function by `@tool`; calling it calls the function."""

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        reads: FootprintDeclaration = None,
        writes: FootprintDeclaration = None,
        exclusive: bool = False,
        timeout_s: float | None = 30.0,
        read_only: bool = False,
    ) -> None:
        self.function = function
        self.name = name or function.__name__
        if not TOOL_NAME.match(self.name) or "__" in self.name:
            raise ValueError(
                f"tool name {self.name!r}: use 1 to 64 letters, digits, '_' or '-', without '__' "
                "(it separates a provider's name from its tools' names)"
            )
        summary, arg_docs = parse_docstring(inspect.getdoc(function))
        self.description = description if description is not None else summary
        self.timeout_s = timeout_s
        self.read_only = read_only
        self._is_async = inspect.iscoroutinefunction(function)
        self._context_param: str | None = None
        self._model = self._arguments_model(function, arg_docs)
        self._fields = tuple(self._model.model_fields)
        self.parameters = _clean_schema(self._model.model_json_schema())
        self._reads = _Resources(reads, self._fields, self.name, "reads")
        self._writes = _Resources(writes, self._fields, self.name, "writes")
        self._exclusive = exclusive
        self.__doc__ = function.__doc__
        self.__wrapped__ = function

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function itself, as if it were not a tool."""
        return self.function(*args, **kwargs)

    def _arguments_model(self, function: Callable[..., Any], docs: Mapping[str, str]) -> type[BaseModel]:
        hints = get_type_hints(function, include_extras=True)
        fields: dict[str, Any] = {}
        for param in inspect.signature(function).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
                raise TypeError(f"tool {self.name!r}: parameter {param.name!r}: tools take named arguments only")
            hint = hints.get(param.name, Any)
            if hint is ToolContext:
                self._context_param = param.name
                continue
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (hint, Field(default, description=docs.get(param.name)))
        config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)
        return create_model(f"{self.name}_arguments", __config__=config, **fields)

    def validate(self, arguments: Mapping[str, Any]) -> Mapping[str, Any]:
        """The arguments converted to the parameters' types; `InvalidArguments` names the first
        field that does not fit."""
        try:
            model = self._model.model_validate(arguments)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in err["loc"])
            message = err["msg"] if err["type"] != "extra_forbidden" else "unexpected argument"
            raise InvalidArguments(f"argument {where!r}: {message}" if where else message) from None
        return {name: getattr(model, name) for name in self._fields}

    def footprint(self, arguments: Mapping[str, Any]) -> Footprint:
        """The declared resources for these validated arguments."""
        if self._exclusive:
            return EXCLUSIVE
        if not self._reads and not self._writes:
            return PURE
        return Footprint(self._reads.resolve(arguments), self._writes.resolve(arguments))

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Call the function with the validated arguments (in a thread when it is not async)."""
        kwargs = dict(arguments)
        if self._context_param is not None:
            kwargs[self._context_param] = ctx
        if self._is_async:
            value = await self.function(**kwargs)
        else:
            value = await asyncio.to_thread(self.function, **kwargs)
        return as_result(value)


def as_result(value: Any) -> ToolResult:
    """A function's return value as a `ToolResult`: text as is, anything else as JSON (kept in `data`)."""
    if isinstance(value, ToolResult):
        return value
    if isinstance(value, str):
        return ToolResult(value)
    data = to_jsonable_python(value, fallback=str)
    return ToolResult(json.dumps(data, ensure_ascii=False), data)


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    # Pydantic titles every property after its name: noise in every request a model gets.
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    return schema


@overload
def tool(function: Callable[..., Any], /) -> FunctionTool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    reads: FootprintDeclaration = None,
    writes: FootprintDeclaration = None,
    exclusive: bool = False,
    timeout_s: float | None = 30.0,
    read_only: bool = False,
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    reads: FootprintDeclaration = None,
    writes: FootprintDeclaration = None,
    exclusive: bool = False,
    timeout_s: float | None = 30.0,
    read_only: bool = False,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Make a function a tool agents can call: ``@tool`` or ``@tool(name=..., writes=[...])``.

    Args:
        function: the function (when used as a bare ``@tool``).
        name: the name models see (default: the function's name).
        description: what the tool does (default: the docstring's summary).
        reads: resources a call reads, e.g. ``["file:{path}"]``, or a function of the arguments.
        writes: resources a call writes, same forms.
        exclusive: the call's effects are unknown: it runs alone, in the model's order.
        timeout_s: seconds a call may take before it is cancelled (None: no limit). A plain
            function's thread cannot be interrupted: its result is abandoned instead.
        read_only: the tool changes nothing (the offline scripted agents call only such tools).
    """

    def wrap(fn: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(
            fn, name=name, description=description, reads=reads, writes=writes, exclusive=exclusive,
            timeout_s=timeout_s, read_only=read_only,
        )

    return wrap(function) if function is not None else wrap
