"""Agents, their registry, and the resilience around every agent call."""

from ._call import AgentCallFailed, call_agent
from ._resilience import BreakerState, CircuitBreaker, RetryPolicy
from ._scoring import ScoreWeights
from .agent import Agent, AgentConfig, AgentID, AgentState, AgentStats
from .registry import AgentRegistry, NoAgentAvailable, UnknownAgent, UnknownCapability

__all__ = [
    "Agent",
    "AgentCallFailed",
    "AgentConfig",
    "AgentID",
    "AgentRegistry",
    "AgentState",
    "AgentStats",
    "BreakerState",
    "CircuitBreaker",
    "NoAgentAvailable",
    "RetryPolicy",
    "ScoreWeights",
    "UnknownAgent",
    "UnknownCapability",
    "call_agent",
]
