"""Automatic choice of strategy from the task's wording and length, with the reason stated."""

from __future__ import annotations

import re
from dataclasses import dataclass

_RULES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"\b(should (we|i)|decide|decision|choose|which (one|option)|recommend|go/no-go)\b", re.I),
     "consensus", "it asks for a decision, which benefits from independent analyses and a synthesis"),
    (re.compile(r"\b(compare|comparison|versus|vs\.?|pros and cons|alternatives|options for)\b", re.I),
     "parallel", "it asks for a comparison, so independent answers side by side are most useful"),
    (re.compile(r"\b(review|critique|proofread|improve|refine|polish|edit)\b", re.I),
     "sequential", "it asks for review or improvement, which a chain of refining agents does well"),
)
LONG_TASK_CHARS = 600


@dataclass(frozen=True, slots=True)
class StrategyChoice:
    """The strategy `auto` picked and why, in words a user can read."""

    strategy: str
    reason: str


def choose_strategy(prompt: str, available_agents: int) -> StrategyChoice:
    """Pick a strategy for `prompt` given how many agents can take part.

    Keywords decide first (decide -> consensus, compare -> parallel, review -> sequential), then
    length (a long or multi-part task goes to adaptive routing), else a single agent. A choice
    needing more agents than exist falls back to one that fits, and the reason says so.
    """
    for pattern, strategy, why in _RULES:
        found = pattern.search(prompt)
        if found:
            choice = StrategyChoice(strategy, f"'{found.group(0)}': {why}")
            break
    else:
        parts = len(re.findall(r"(?m)^\s*(?:\d+[.)]|[-*])\s+", prompt))
        if len(prompt) > LONG_TASK_CHARS or parts >= 3:
            size = f"{len(prompt)} characters" if len(prompt) > LONG_TASK_CHARS else f"{parts} parts"
            choice = StrategyChoice("adaptive", f"a long task ({size}): route work between agents")
        else:
            return StrategyChoice("single", "a short, direct task: the best single agent answers")
    if choice.strategy == "consensus" and available_agents < 3:
        return StrategyChoice(
            "parallel" if available_agents >= 2 else "single",
            f"{choice.reason}; but only {available_agents} agent(s) are available, too few for consensus",
        )
    if choice.strategy in ("parallel", "sequential") and available_agents < 2:
        return StrategyChoice("single", f"{choice.reason}; but only one agent is available")
    return choice
