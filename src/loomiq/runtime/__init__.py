"""The run-time core: execution contexts, typed events and results."""

from .context import EventSink, ExecutionContext, TaskSpec
from .events import (
    AgentFailedOver,
    RunEvent,
    RunFinished,
    RunStarted,
    StepDelta,
    StepFinished,
    StepStarted,
)
from .result import RunResult, RunStatus, StepResult

__all__ = [
    "AgentFailedOver",
    "EventSink",
    "ExecutionContext",
    "RunEvent",
    "RunFinished",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "StepDelta",
    "StepFinished",
    "StepResult",
    "StepStarted",
    "TaskSpec",
]
