"""`RunOptions`: how to run a prompt, validated once, in the library.

Every entry point that runs a prompt (`Orchestrator.run` and `stream`, the engine's `run` and
`submit`) takes these as explicit keyword arguments and builds one `RunOptions` from them, so a bad
value is refused the same way whoever passed it (the CLI, the HTTP API or a program): with
`InvalidOptions`, whose message names the argument.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_EMPTY: Mapping[str, Any] = {}


class InvalidOptions(ValueError):
    """An argument the library refuses (a non-positive timeout, an agent id that is not a string...);
    the message names the argument and says what it takes."""


def names(argument: str, value: str | Iterable[str] | None) -> tuple[str, ...]:
    """`value` as a tuple of non-empty strings; a single string is one name (never its characters).
    Raises `InvalidOptions` naming `argument` otherwise."""
    if value is None:
        return ()
    if isinstance(value, str):
        items: tuple[object, ...] = (value,)
    elif isinstance(value, Iterable) and not isinstance(value, Mapping | bytes):
        items = tuple(value)
    else:
        raise InvalidOptions(f"{argument} must be a list of names, not {type(value).__name__}")
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise InvalidOptions(f"{argument} must hold non-empty strings, not {item!r}")
    return items  # type: ignore[return-value]  # every item was checked to be a str just above


def positive_seconds(argument: str, value: float | None) -> float | None:
    """`value` when it is None or a positive, finite number of seconds; else `InvalidOptions`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise InvalidOptions(f"{argument} must be a positive number of seconds, not {value!r}")
    return float(value)


def _mapping(argument: str, value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping):
        raise InvalidOptions(f"{argument} must be a mapping, not {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run a prompt. Normalised on construction: `agents` and `capabilities` become tuples
    (a single string is one name), `options` and `context` mappings.

    Raises `InvalidOptions` naming the argument for a value the library cannot use.

    Attributes:
        strategy: ``single``, ``sequential``, ``parallel``, ``consensus``, ``adaptive``, or ``auto``
            (chosen from the prompt and the agents available).
        agents: agent ids to use, in order; None lets the registry pick the best ones.
        capabilities: capabilities every agent of the run must have.
        options: options of the strategy (for example ``{"lead": "careful"}`` for consensus).
        context: free data the run carries (JSON-serialisable for a durable run).
        timeout_s: give up on the run after this many seconds (it ends ``timed_out``); None: no limit.
    """

    strategy: str = "auto"
    agents: Sequence[str] | None = None
    """A tuple once constructed (a list or a single string is accepted)."""
    capabilities: Sequence[str] = ()
    """A tuple once constructed (a list or a single string is accepted)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.strategy, str) or not self.strategy:
            raise InvalidOptions(f"strategy must be a strategy name, not {self.strategy!r}")
        agents = self.agents
        if agents is not None:
            # Empty means "let the registry pick", as None does.
            object.__setattr__(self, "agents", names("agents", agents) or None)
        object.__setattr__(self, "capabilities", names("capabilities", self.capabilities))
        object.__setattr__(self, "options", _mapping("options", self.options))
        object.__setattr__(self, "context", _mapping("context", self.context))
        if self.timeout_s is not None:
            object.__setattr__(self, "timeout_s", positive_seconds("timeout_s", self.timeout_s))
