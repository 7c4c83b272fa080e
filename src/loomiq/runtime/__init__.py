"""The run-time core: execution contexts, typed events, results, run options, and the `Runner`
protocol the durable engine executes."""

from .chat import ChatHandle, ChatTurn, chat_turn
from .context import EventSink, ExecutionContext, TaskSpec
from .events import (
    AgentFailedOver,
    RunEvent,
    RunFinished,
    RunStarted,
    StepDelta,
    StepFinished,
    StepStarted,
    ToolFinished,
    ToolRefused,
    ToolSerialized,
    ToolStarted,
)
from .options import InvalidOptions, RunOptions
from .result import RunResult, RunStatus, StepResult
from .runner import PlannedRun, Runner, StoredPlan, new_run_id
from .tooling import RunTools, UnknownTools

__all__ = [
    "AgentFailedOver",
    "ChatHandle",
    "ChatTurn",
    "EventSink",
    "ExecutionContext",
    "InvalidOptions",
    "PlannedRun",
    "RunEvent",
    "RunFinished",
    "RunOptions",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "RunTools",
    "Runner",
    "StepDelta",
    "StepFinished",
    "StepResult",
    "StepStarted",
    "StoredPlan",
    "TaskSpec",
    "ToolFinished",
    "ToolRefused",
    "ToolSerialized",
    "ToolStarted",
    "UnknownTools",
    "chat_turn",
    "new_run_id",
]
