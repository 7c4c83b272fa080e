"""A run's inputs: checked against the definition's declarations, defaults filled in.

Types: ``string``, ``integer`` (a whole number; a boolean is not one), ``number`` (integer or float),
``boolean``, ``list`` (its elements of type `items` when given), ``object``. From the command line
(``--input k=v``, ``from_strings=True``) text is converted first: ``integer`` and ``number`` parse,
``boolean`` is ``true``/``false``, ``list`` is JSON (``["a","b"]``) or comma-separated words,
``object`` is JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import ValidationIssue, WorkflowError
from .model import InputSpec, InputType, WorkflowDefinition

__all__ = ["bind_inputs", "input_value_problem"]


def _fits(kind: InputType, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list | tuple)
    return isinstance(value, Mapping)


def input_value_problem(spec: InputSpec, value: Any, *, check_enum: bool = True) -> str | None:
    """Why `value` does not fit the input `spec` (None when it does)."""
    if not _fits(spec.type, value):
        return f"must be {'an' if spec.type[0] in 'aeiou' else 'a'} {spec.type}, not {_kind(value)}"
    if spec.type == "list" and spec.items is not None:
        for i, item in enumerate(value):
            if not _fits(spec.items, item):
                return f"element {i} must be {'an' if spec.items[0] in 'aeiou' else 'a'} {spec.items}, " \
                       f"not {_kind(item)}"
    if check_enum and spec.enum is not None and value not in spec.enum:
        return f"must be one of {', '.join(json.dumps(v) for v in spec.enum)}, not {json.dumps(value)}"
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _from_text(spec: InputSpec, text: str) -> Any:
    kind = spec.type
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            number = float(text)
            return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
        if kind == "boolean":
            lowered = text.strip().lower()
            if lowered in ("true", "false"):
                return lowered == "true"
            raise ValueError(text)
        if kind == "object":
            return json.loads(text)
        if kind == "list":
            if text.lstrip().startswith("["):
                return json.loads(text)
            items: list[Any] = [part.strip() for part in text.split(",") if part.strip()]
            if spec.items is not None and spec.items != "string":
                items = [_from_text(InputSpec(name=spec.name, type=spec.items), part) for part in items]
            return items
    except ValueError:
        raise ValueError(f"cannot read {text!r} as {'an' if kind[0] in 'aeiou' else 'a'} {kind}") from None
    return text


def bind_inputs(definition: WorkflowDefinition, given: Mapping[str, Any], *,
                from_strings: bool = False) -> dict[str, Any]:
    """The inputs of a run: `given` checked against the declarations, defaults added for the rest.

    Raises `WorkflowError` naming every unknown, missing or ill-typed input.
    """
    issues: list[ValidationIssue] = []
    out: dict[str, Any] = {}
    specs = definition.input_specs
    for name in given:
        if name not in specs:
            known = ", ".join(specs) or "none"
            issues.append(ValidationIssue(f"inputs.{name}: unknown input (inputs: {known})", ("inputs", name)))
    for spec in definition.inputs:
        path = ("inputs", spec.name)
        if spec.name not in given:
            if spec.required:
                issues.append(ValidationIssue(f"inputs.{spec.name}: missing (a {spec.type} is required)", path))
            else:
                out[spec.name] = spec.default
            continue
        value = given[spec.name]
        if from_strings and isinstance(value, str):
            try:
                value = _from_text(spec, value)
            except ValueError as exc:
                issues.append(ValidationIssue(f"inputs.{spec.name}: {exc}", path))
                continue
        problem = input_value_problem(spec, value)
        if problem:
            issues.append(ValidationIssue(f"inputs.{spec.name}: {problem}", path))
            continue
        out[spec.name] = list(value) if isinstance(value, tuple) else value
    if issues:
        raise WorkflowError(issues)
    return out
