"""Collaboration strategies: single, sequential, parallel, consensus, adaptive, and auto choice."""

from ._catalog import STRATEGIES, STRATEGY_NAMES, get_strategy
from .adaptive import AdaptiveStrategy, ModelRouter, RouteDecision, Router, RuleRouter
from .auto import StrategyChoice, choose_strategy
from .base import Outcome, Strategy, StrategyError
from .consensus import ConsensusStrategy
from .runner import RunPlan, StrategyRunner
from .simple import ParallelStrategy, SequentialStrategy, SingleStrategy

__all__ = [
    "STRATEGIES",
    "STRATEGY_NAMES",
    "AdaptiveStrategy",
    "ConsensusStrategy",
    "ModelRouter",
    "Outcome",
    "ParallelStrategy",
    "RouteDecision",
    "RunPlan",
    "Router",
    "RuleRouter",
    "SequentialStrategy",
    "SingleStrategy",
    "Strategy",
    "StrategyChoice",
    "StrategyError",
    "StrategyRunner",
    "choose_strategy",
    "get_strategy",
]
