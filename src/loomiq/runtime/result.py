"""The outcome of a run and of each agent step in it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..models import Usage
from ..tools import ToolCallRecord

RunStatus = Literal["completed", "failed", "cancelled", "timed_out"]


# Results are built on every step of every run: they are slotted but not frozen, because a frozen
# dataclass's __init__ sets each field through object.__setattr__ (1.4 us for a StepResult, a tenth of
# loomiq's per-call budget). Treat them as immutable all the same.
@dataclass(slots=True)
class StepResult:
    """One agent call inside a run, after retries and failover.

    `agent` is the agent that finally answered (or the last one tried); `failed_over_from` lists the
    agents that were tried before it and why they failed. `error` is set when no agent answered (or
    the agent still asked for tools after its maximum tool rounds).
    """

    key: str
    agent: str
    role: str
    output: str = ""
    usage: Usage = Usage()
    cost_usd: float = 0.0
    duration_ms: float = 0.0
    error: str | None = None
    attempts: int = 1
    failed_over_from: tuple[tuple[str, str], ...] = ()
    model: str = ""
    offline: bool = False
    tool_calls: tuple[ToolCallRecord, ...] = ()
    """The tool calls the agent made in this step, in order (refused ones included)."""

    @property
    def ok(self) -> bool:
        """True when an agent answered."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON form used by `loomiq run --json` and the API."""
        return {
            "key": self.key,
            "agent": self.agent,
            "role": self.role,
            "model": self.model,
            "output": self.output,
            "usage": self.usage.as_dict(),
            "cost_usd": round(self.cost_usd, 10),
            "duration_ms": round(self.duration_ms, 3),
            "error": self.error,
            "attempts": self.attempts,
            "failed_over_from": [{"agent": a, "error": e} for a, e in self.failed_over_from],
            "offline": self.offline,
            "tool_calls": [c.to_dict() for c in self.tool_calls],
        }


@dataclass(slots=True, kw_only=True)
class RunResult:
    """What a run produced: the final output, every step, totals, and who answered or failed.
    Built with keyword arguments only (it has thirteen fields)."""

    task_id: str
    status: RunStatus
    strategy: str
    output: str
    steps: tuple[StepResult, ...]
    usage: Usage
    cost_usd: float
    duration_ms: float
    offline: bool
    strategy_reason: str = ""
    error: str | None = None
    outputs: tuple[str, ...] = field(default=())
    """Per-agent outputs the strategy aggregated (parallel), in step order."""
    notes: tuple[str, ...] = ()
    """Decisions the strategy made along the way (the adaptive router's choices)."""

    @property
    def answered(self) -> list[str]:
        """Agents that answered at least one step."""
        return list(dict.fromkeys(s.agent for s in self.steps if s.ok))

    @property
    def failed(self) -> dict[str, str]:
        """Agents that failed a step (including those failed over from), with the reason."""
        out: dict[str, str] = {}
        for s in self.steps:
            for agent, err in s.failed_over_from:
                out[agent] = err
            if not s.ok:
                out[s.agent] = s.error or "failed"
        return out

    @property
    def degraded(self) -> bool:
        """True when some agent failed but the run still produced an output."""
        return self.status == "completed" and bool(self.failed)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the object `loomiq run --json` prints."""
        return {
            "task_id": self.task_id,
            "status": self.status,
            "strategy": self.strategy,
            "strategy_reason": self.strategy_reason,
            "output": self.output,
            "steps": [s.to_dict() for s in self.steps],
            "usage": self.usage.as_dict(),
            "cost_usd": round(self.cost_usd, 10),
            "duration_ms": round(self.duration_ms, 3),
            "answered": self.answered,
            "failed": self.failed,
            "degraded": self.degraded,
            "error": self.error,
            "notes": list(self.notes),
            "offline": self.offline,
        }
