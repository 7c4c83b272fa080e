"""How the registry ranks agents for a task: a pure function of an agent's numbers.

Score = capability fit + reliability + speed + cheapness - load, each term in [0, 1] times a weight.
Agents that lack a required capability never reach scoring (the registry filters them first).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ScoreWeights:
    """Relative importance of each term; the defaults favour agents that answer, then fast ones."""

    capability: float = 1.0
    success: float = 2.0
    latency: float = 1.0
    cost: float = 0.5
    load: float = 1.0
    latency_ref_s: float = 2.0
    """A mean latency equal to this scores 0.5 on the latency term."""
    cost_ref_usd: float = 0.01
    """A cost per call equal to this scores 0.5 on the cost term."""


DEFAULT_WEIGHTS = ScoreWeights()


def score(
    *,
    capability_fit: float,
    success_rate: float,
    mean_latency_s: float,
    cost_per_call_usd: float,
    load: float,
    weights: ScoreWeights = DEFAULT_WEIGHTS,
) -> float:
    """The ranking score of one agent; higher is better.

    Args:
        capability_fit: share of the task's *preferred* capabilities the agent has (1.0 if none).
        success_rate: successful calls / finished calls.
        mean_latency_s: mean duration of successful calls (0 before the first call).
        cost_per_call_usd: mean cost of a call so far (0 before the first call).
        load: in-flight calls / max concurrency.
    """
    latency_term = 1.0 / (1.0 + mean_latency_s / weights.latency_ref_s)
    cost_term = 1.0 / (1.0 + cost_per_call_usd / weights.cost_ref_usd)
    return (
        weights.capability * capability_fit
        + weights.success * success_rate
        + weights.latency * latency_term
        + weights.cost * cost_term
        - weights.load * min(load, 1.0)
    )
