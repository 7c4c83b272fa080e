"""`RunOptions`: how to run a prompt, validated once, in the library.

Every entry point that runs a prompt (`Orchestrator.run` and `stream`, the engine's `run` and
`submit`) takes these as explicit keyword arguments and builds one `RunOptions` from them, so a bad
value is refused the same way whoever passed it (the CLI, the HTTP API or a program): with
`InvalidOptions`, whose message names the argument.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})
"""What an omitted `options` or `context` is: empty, and shared, so read-only."""


class InvalidOptions(ValueError):
    """An argument the library refuses (a non-positive timeout, an agent id that is not a string...);
    the message names the argument and says what it takes."""


def names(argument: str, value: str | Iterable[str] | None) -> tuple[str, ...]:
    """`value` as a tuple of non-empty strings; a single string is one name (never its characters).
    Raises `InvalidOptions` naming `argument` otherwise."""
    # Exact types first: this runs on every in-process run, and an ABC isinstance costs ~0.5 us.
    kind = type(value)
    if kind is tuple or kind is list:
        items: tuple[object, ...] = tuple(value)  # type: ignore[arg-type]  # kind was checked just above
    elif value is None:
        return ()
    elif isinstance(value, str):
        items = (value,)
    elif isinstance(value, Iterable) and not isinstance(value, Mapping | bytes):
        items = tuple(value)
    else:
        raise InvalidOptions(f"{argument} must be a list of names, not {kind.__name__}")
    for item in items:
        if not isinstance(item, str) or not item or item.isspace():
            raise InvalidOptions(f"{argument} must hold non-empty strings, not {item!r}")
    return items  # type: ignore[return-value]  # every item was checked to be a str just above


def positive_seconds(argument: str, value: float | None) -> float | None:
    """`value` when it is None or a positive, finite number of seconds; else `InvalidOptions`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise InvalidOptions(f"{argument} must be a positive number of seconds, not {value!r}")
    return float(value)


def count(argument: str, value: int, *, minimum: int = 0, maximum: int = 2**62) -> int:
    """`value` when it is a whole number from `minimum` to `maximum`; else `InvalidOptions`
    (the default maximum keeps every count storable as a 64-bit integer)."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidOptions(f"{argument} must be a whole number from {minimum} to {maximum}, not {value!r}")
    return value


def non_negative_seconds(argument: str, value: float) -> float:
    """`value` when it is a finite number of seconds, zero or more; else `InvalidOptions`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise InvalidOptions(f"{argument} must be a number of seconds, zero or more, not {value!r}")
    return float(value)


def _mapping(argument: str, value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if type(value) is dict:
        return value
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping):
        raise InvalidOptions(f"{argument} must be a mapping, not {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True, init=False)
class RunOptions:
    """How to run a prompt, taken as keyword arguments only. Normalised on construction: `agents` and
    `capabilities` become tuples (a single string is one name), `options` and `context` mappings
    (None: empty).

    Raises `InvalidOptions` naming the argument for a value the library cannot use.

    Attributes:
        strategy: ``single``, ``sequential``, ``parallel``, ``consensus``, ``adaptive``, or ``auto``
            (chosen from the prompt and the agents available).
        agents: agent ids to use, in order; None lets the registry pick the best ones.
        capabilities: capabilities every agent of the run must have.
        options: options of the strategy (for example ``{"lead": "careful"}`` for consensus).
        context: free data the run carries (JSON-serialisable for a durable run).
        timeout_s: give up on the run after this many seconds (it ends ``timed_out``); None: no limit.
        tools: the tools the run allows, narrowing each agent's allow-list (tool or provider names);
            None: each agent's own list.
        allow_failover_outside: when `agents` names agents, failover stays among them (a step none of
            them can answer fails, saying so); True lets it use any other agent with the capabilities.
    """

    strategy: str
    agents: tuple[str, ...] | None
    capabilities: tuple[str, ...]
    options: Mapping[str, Any]
    context: Mapping[str, Any]
    timeout_s: float | None
    tools: tuple[str, ...] | None
    allow_failover_outside: bool

    # Written by hand rather than generated: it runs on every in-process run, and validating first,
    # then setting each frozen field once, costs half of a generated __init__ plus __post_init__.
    def __init__(
        self,
        *,
        strategy: str = "auto",
        agents: str | Sequence[str] | None = None,
        capabilities: str | Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        tools: str | Sequence[str] | None = None,
        allow_failover_outside: bool = False,
    ) -> None:
        if not isinstance(strategy, str) or not strategy:
            raise InvalidOptions(f"strategy must be a strategy name, not {strategy!r}")
        put = object.__setattr__
        put(self, "strategy", strategy)
        # Empty means "let the registry pick", as None does.
        put(self, "agents", None if agents is None else names("agents", agents) or None)
        put(self, "capabilities", capabilities if capabilities == () else names("capabilities", capabilities))
        put(self, "options", _EMPTY if options is None else _mapping("options", options))
        put(self, "context", _EMPTY if context is None else _mapping("context", context))
        put(self, "timeout_s", None if timeout_s is None else positive_seconds("timeout_s", timeout_s))
        put(self, "tools", None if tools is None else names("tools", tools))
        if type(allow_failover_outside) is not bool:
            raise InvalidOptions(f"allow_failover_outside must be true or false, not {allow_failover_outside!r}")
        put(self, "allow_failover_outside", allow_failover_outside)

    @property
    def failover_within(self) -> tuple[str, ...] | None:
        """The agents failover may use: the named `agents` unless `allow_failover_outside`; None: any."""
        return None if self.agents is None or self.allow_failover_outside else self.agents
