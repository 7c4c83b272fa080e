"""Checking a task's output against its node's `output_schema` (JSON schema, validated by jsonschema-rs)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema_rs

from .model import TaskOptions

__all__ = ["check_output"]


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    return jsonschema_rs.validator_for(json.loads(schema_json))


def check_output(task: TaskOptions, output: Any) -> tuple[Any, str | None]:
    """A task's output as its node exposes it: parsed and checked against `output_schema` when there is
    one. Returns (value, None), or (None, why) when it does not match."""
    if task.output_schema is None:
        return output, None
    value = output
    if isinstance(output, str):
        try:
            value = json.loads(output)
        except ValueError as exc:
            return None, f"output is not JSON (output_schema expects JSON): {exc}"
    validator = _validator(json.dumps(task.output_schema, sort_keys=True))
    errors = list(validator.iter_errors(value))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.instance_path) or "(root)"
        return None, f"output does not match output_schema at {where}: {first.message}"
    return value, None
