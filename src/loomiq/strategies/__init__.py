"""Collaboration strategies: single, sequential, parallel, consensus, adaptive, and auto choice."""

from typing import Any

from .adaptive import AdaptiveStrategy, ModelRouter, RouteDecision, Router, RuleRouter
from .auto import StrategyChoice, choose_strategy
from .base import Outcome, Strategy, StrategyError
from .consensus import ConsensusStrategy
from .simple import ParallelStrategy, SequentialStrategy, SingleStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (SingleStrategy, SequentialStrategy, ParallelStrategy, ConsensusStrategy, AdaptiveStrategy)
}
"""Concrete strategies by name; ``auto`` is resolved to one of these before a run starts."""

STRATEGY_NAMES = (*STRATEGIES, "auto")


def get_strategy(name: str, **options: Any) -> Strategy:
    """A strategy instance by name. Raises `StrategyError` naming the valid names."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise StrategyError(f"unknown strategy {name!r} (choose from {', '.join(STRATEGY_NAMES)})") from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise StrategyError(f"bad options for strategy {name!r}: {exc}") from None


__all__ = [
    "STRATEGIES",
    "STRATEGY_NAMES",
    "AdaptiveStrategy",
    "ConsensusStrategy",
    "ModelRouter",
    "Outcome",
    "ParallelStrategy",
    "RouteDecision",
    "Router",
    "RuleRouter",
    "SequentialStrategy",
    "SingleStrategy",
    "Strategy",
    "StrategyChoice",
    "StrategyError",
    "choose_strategy",
    "get_strategy",
]
