"""loomiq: coordinate many LLM agents, durably, behind a real service.

Start with `Orchestrator`::

    from loomiq import Orchestrator
    orch = Orchestrator.from_config()          # loomiq.yaml, or the offline scripted agents
    result = await orch.run("Should we adopt event sourcing?", strategy="consensus")
"""

from .agents import Agent, AgentConfig, AgentRegistry, AgentState, RetryPolicy
from .models import ChatModel, ModelRequest, ModelResponse, ScriptedModel, ScriptedReply, Usage
from .orchestrator import Orchestrator, RunHandle, RunPlan
from .runtime import (
    AgentFailedOver,
    ExecutionContext,
    InvalidOptions,
    RunEvent,
    RunFinished,
    RunOptions,
    RunResult,
    RunStarted,
    StepDelta,
    StepFinished,
    StepRestarted,
    StepResult,
    StepStarted,
    TaskSpec,
)
from .strategies import StrategyError
from .tools import Tool, ToolContext, ToolLoop, ToolRegistry, ToolResult, tool

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentFailedOver",
    "AgentRegistry",
    "AgentState",
    "ChatModel",
    "ExecutionContext",
    "InvalidOptions",
    "ModelRequest",
    "ModelResponse",
    "Orchestrator",
    "RetryPolicy",
    "RunEvent",
    "RunFinished",
    "RunHandle",
    "RunOptions",
    "RunPlan",
    "RunResult",
    "RunStarted",
    "ScriptedModel",
    "ScriptedReply",
    "StepDelta",
    "StepRestarted",
    "StepFinished",
    "StepResult",
    "StepStarted",
    "StrategyError",
    "TaskSpec",
    "Tool",
    "ToolContext",
    "ToolLoop",
    "ToolRegistry",
    "ToolResult",
    "Usage",
    "__version__",
    "tool",
]
