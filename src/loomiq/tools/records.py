"""What the tool loop reports: one `ToolCallRecord` per tool call, and the events an observer sees
while a turn's calls run (`ToolCallStarted`, `ToolCallSerialized`, `ToolCallFinished`,
`ToolCallRefused`). All small frozen dataclasses; the run's closed event union wraps them later.

Keys are deterministic, from the call's position: model turn ``t`` is ``turn/t`` and the ``i``-th
tool call it asked for is ``turn/t/call/i`` (after the loop's key prefix, e.g. the strategy step's
key), so a durable run can journal and replay them by key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

EXCERPT_CHARS = 200
"""How much of a result `ToolCallRecord.excerpt` keeps."""

ErrorKind = Literal[
    "refused", "malformed_arguments", "invalid_arguments", "tool_error", "unavailable", "timeout", "exception"
]
"""Why a call failed: asked for a tool outside the allow-list (``refused``, never run), arguments
that are not JSON (``malformed_arguments``) or do not match the schema (``invalid_arguments``), the
tool reported an error (``tool_error``) or cannot run here (``unavailable``), it ran past its
timeout and was cancelled (``timeout``), or it raised something else (``exception``)."""

ToolCallStatus = Literal["finished", "refused"]


def turn_key(prefix: str, turn: int) -> str:
    """The journal key of model turn `turn`."""
    return f"{prefix}turn/{turn}"


def call_key(prefix: str, turn: int, index: int) -> str:
    """The journal key of the `index`-th tool call of model turn `turn`."""
    return f"{prefix}turn/{turn}/call/{index}"


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """One tool call, as it ended.

    Attributes:
        key: its deterministic key (`call_key`).
        turn: the model turn that asked for it (0 is the first).
        index: its position among that turn's calls, in the model's order.
        call_id: the provider's id of the call.
        name: the tool asked for.
        arguments: the arguments as the model sent them (empty when they were not JSON).
        status: ``finished`` (it ran, or its arguments were rejected) or ``refused`` (not allowed:
            never run).
        content: the full text the model read back.
        error: what went wrong, or None.
        error_kind: why it failed (`ErrorKind`), or None.
        duration_ms: how long the tool ran (waiting for other calls not included).
        waited_for: indexes of the earlier calls of the turn it had to wait for (footprint overlap).
        data: the tool's structured result (JSON-able), when it gave one.
    """

    key: str
    turn: int
    index: int
    call_id: str
    name: str
    arguments: Mapping[str, Any]
    status: ToolCallStatus
    content: str
    error: str | None = None
    error_kind: ErrorKind | None = None
    duration_ms: float = 0.0
    waited_for: tuple[int, ...] = ()
    data: Any = None

    @property
    def excerpt(self) -> str:
        """The start of the result, for displays and `steps[].tool_calls`."""
        text = self.content
        return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"

    @property
    def serialized(self) -> bool:
        """Whether the call waited for another call of its turn."""
        return bool(self.waited_for)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: name, arguments, result excerpt, error, duration_ms, waited_for, status."""
        return {
            "key": self.key,
            "name": self.name,
            "arguments": dict(self.arguments),
            "result": self.excerpt,
            "error": self.error,
            "error_kind": self.error_kind,
            "duration_ms": round(self.duration_ms, 3),
            "waited_for": list(self.waited_for),
            "status": self.status,
        }

    def to_json(self) -> dict[str, Any]:
        """Everything, for a journal row (`from_json` reverses it)."""
        return {
            "key": self.key, "turn": self.turn, "index": self.index, "call_id": self.call_id,
            "name": self.name, "arguments": dict(self.arguments), "status": self.status,
            "content": self.content, "error": self.error, "error_kind": self.error_kind,
            "duration_ms": self.duration_ms, "waited_for": list(self.waited_for), "data": self.data,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToolCallRecord:
        """The record `to_json` wrote."""
        return cls(**{**data, "waited_for": tuple(data.get("waited_for", ()))})


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    """A tool call starts running (after the calls it waited for, if any)."""

    key: str
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    kind: Literal["tool_call_started"] = "tool_call_started"


@dataclass(frozen=True, slots=True)
class ToolCallSerialized:
    """A tool call must wait for earlier calls of its turn, whose footprints overlap its own."""

    key: str
    name: str
    waits_for: tuple[int, ...]
    kind: Literal["tool_call_serialized"] = "tool_call_serialized"


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    """A tool call ended (an error result included); `record` says how."""

    record: ToolCallRecord
    kind: Literal["tool_call_finished"] = "tool_call_finished"


@dataclass(frozen=True, slots=True)
class ToolCallRefused:
    """A model asked for a tool outside the allow-list; it was not run."""

    record: ToolCallRecord
    kind: Literal["tool_call_refused"] = "tool_call_refused"


ToolCallEvent = ToolCallStarted | ToolCallSerialized | ToolCallFinished | ToolCallRefused
"""What the tool loop's observer receives."""
