"""Typed run events: a closed union of small frozen classes.

The CLI's progress display, the API's SSE and WebSocket streams, logs and metrics all consume these;
none of them reaches into the strategies. Encoding to JSON happens at the edge with `to_dict()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..tools import ToolCallRecord
from .result import RunResult, StepResult


@dataclass(frozen=True, slots=True)
class RunStarted:
    """A run began: which strategy (and why), and the agents it will use."""

    type: ClassVar[str] = "run_started"
    run_id: str
    strategy: str
    reason: str
    agents: tuple[str, ...]
    offline: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"type": self.type, "run_id": self.run_id, "strategy": self.strategy,
                "reason": self.reason, "agents": list(self.agents), "offline": self.offline}


@dataclass(frozen=True, slots=True)
class StepStarted:
    """An agent began a step (`role` is the part it plays: analyst, lead, refiner...)."""

    type: ClassVar[str] = "step_started"
    run_id: str
    step: str
    agent: str
    role: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"type": self.type, "run_id": self.run_id, "step": self.step, "agent": self.agent,
                "role": self.role}


@dataclass(frozen=True, slots=True)
class StepDelta:
    """A piece of text an agent streamed while working on a step."""

    type: ClassVar[str] = "text_delta"
    run_id: str
    step: str
    agent: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"type": self.type, "run_id": self.run_id, "step": self.step, "agent": self.agent,
                "text": self.text}


@dataclass(frozen=True, slots=True)
class AgentFailedOver:
    """An agent failed a step and another agent with the same capabilities takes it over."""

    type: ClassVar[str] = "agent_failed_over"
    run_id: str
    step: str
    from_agent: str
    to_agent: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"type": self.type, "run_id": self.run_id, "step": self.step,
                "from_agent": self.from_agent, "to_agent": self.to_agent, "error": self.error}


@dataclass(frozen=True, slots=True)
class StepFinished:
    """A step ended, answered or failed; `result` has its output, usage, cost and error."""

    type: ClassVar[str] = "step_finished"
    run_id: str
    result: StepResult

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"type": self.type, "run_id": self.run_id, **self.result.to_dict()}


@dataclass(frozen=True, slots=True)
class RunFinished:
    """The run ended (completed, failed, cancelled or timed out) with its full result."""

    type: ClassVar[str] = "run_finished"
    run_id: str
    result: RunResult

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"type": self.type, "run_id": self.run_id, "result": self.result.to_dict()}


@dataclass(frozen=True, slots=True)
class ToolStarted:
    """A tool call an agent asked for starts running (after the calls it waited for, if any)."""

    type: ClassVar[str] = "tool_call_started"
    run_id: str
    step: str
    agent: str
    call: str
    """The call's key (``<step>/turn/<t>/call/<i>``)."""
    name: str
    arguments: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"type": self.type, "run_id": self.run_id, "step": self.step, "agent": self.agent,
                "call": self.call, "name": self.name, "arguments": dict(self.arguments)}


@dataclass(frozen=True, slots=True)
class ToolSerialized:
    """A tool call waits for earlier calls of its turn whose footprints overlap its own (their
    indexes in `waits_for`)."""

    type: ClassVar[str] = "tool_call_serialized"
    run_id: str
    step: str
    agent: str
    call: str
    name: str
    waits_for: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"type": self.type, "run_id": self.run_id, "step": self.step, "agent": self.agent,
                "call": self.call, "name": self.name, "waits_for": list(self.waits_for)}


@dataclass(frozen=True, slots=True)
class ToolFinished:
    """A tool call ended, an error result included; `record` has its result excerpt, error and
    duration."""

    type: ClassVar[str] = "tool_call_finished"
    run_id: str
    step: str
    agent: str
    record: ToolCallRecord

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        r = self.record.to_dict()
        return {"type": self.type, "run_id": self.run_id, "step": self.step, "agent": self.agent,
                "call": r.pop("key"), **r}


@dataclass(frozen=True, slots=True)
class ToolRefused:
    """A model asked for a tool outside the allow-list; it was not run, and the refusal went back to
    the model."""

    type: ClassVar[str] = "tool_call_refused"
    run_id: str
    step: str
    agent: str
    record: ToolCallRecord

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        r = self.record.to_dict()
        return {"type": self.type, "run_id": self.run_id, "step": self.step, "agent": self.agent,
                "call": r.pop("key"), **r}


RunEvent = (RunStarted | StepStarted | StepDelta | AgentFailedOver | ToolStarted | ToolSerialized | ToolFinished
            | ToolRefused | StepFinished | RunFinished)
"""Every event a run can emit."""
