"""Events of a run as JSON, for a durable journal: `event_to_json` and `event_from_json` round-trip
every `Event` exactly (tuples stay tuples), so replaying the journal gives the same states."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from .state import (
    ApprovalAnswered,
    ApprovalTimedOut,
    Event,
    NodeFailed,
    NodeSucceeded,
    RunCancelled,
    RunPaused,
    RunResumed,
    RunStarted,
)

__all__ = ["EVENT_TYPES", "event_from_json", "event_to_json"]

EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (RunStarted, NodeSucceeded, NodeFailed, ApprovalAnswered, ApprovalTimedOut, RunPaused, RunResumed,
                RunCancelled)
}
"""Event type name -> class."""


def event_to_json(event: Event) -> str:
    """The event's fields as compact JSON (its `type` is stored beside it)."""
    return json.dumps({f.name: getattr(event, f.name) for f in fields(event)}, separators=(",", ":"),
                      default=_plain)


def event_from_json(type_: str, text: str) -> Event:
    """The event of type `type_` written by `event_to_json`. Raises `KeyError` for an unknown type."""
    cls = EVENT_TYPES[type_]
    data = json.loads(text)
    if "roles" in data:
        data["roles"] = tuple(data["roles"])
    return cls(**data)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | frozenset | set):
        return list(value)
    if hasattr(value, "items"):
        return dict(value.items())
    raise TypeError(f"{type(value).__name__} is not JSON")
