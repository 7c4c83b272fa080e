"""The strategies by name, and `get_strategy`."""

import inspect
from collections.abc import Mapping
from typing import Any

from .adaptive import AdaptiveStrategy
from .base import Strategy, StrategyError
from .consensus import ConsensusStrategy
from .simple import ParallelStrategy, SequentialStrategy, SingleStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (SingleStrategy, SequentialStrategy, ParallelStrategy, ConsensusStrategy, AdaptiveStrategy)
}
"""Concrete strategies by name; ``auto`` is resolved to one of these before a run starts."""

STRATEGY_NAMES = (*STRATEGIES, "auto")


def get_strategy(name: str, options: Mapping[str, Any] | None = None) -> Strategy:
    """A strategy instance by name, built with `options` (its constructor's keyword arguments, for
    example ``{"lead": "careful"}`` for consensus). Raises `StrategyError` naming the valid names, or
    the option the strategy does not take."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise StrategyError(f"unknown strategy {name!r}: choose one of {', '.join(STRATEGY_NAMES)}") from None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    taken = [name for name, p in inspect.signature(cls.__init__).parameters.items()
             if name != "self" and p.kind in keyword]
    unknown = [key for key in options or () if key not in taken]
    if unknown:
        offer = f"it takes {', '.join(taken)}" if taken else "it takes none"
        raise StrategyError(f"strategy {name!r} has no option {', '.join(map(repr, unknown))} ({offer})",
                            argument="options")
    try:
        return cls(**(options or {}))
    except (TypeError, ValueError) as exc:
        raise StrategyError(f"bad options for strategy {name!r}: {exc}", argument="options") from None
