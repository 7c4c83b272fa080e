"""The prompts each strategy sends. Pure functions, so tests can check them without a model."""

from __future__ import annotations

from collections.abc import Sequence


def refine_prompt(task: str, previous: str | None, previous_agent: str | None = None) -> str:
    """Sequential: the task plus the previous agent's output, to be improved."""
    if previous is None:
        return task
    who = f" ({previous_agent})" if previous_agent else ""
    return (
        f"{task}\n\nPrevious agent's output{who}:\n{previous}\n\n"
        "Improve this answer: keep what is right, fix what is wrong, and give the full improved answer."
    )


def analyst_prompt(task: str) -> str:
    """Consensus: what each analyst is asked, independently of the others."""
    return f"{task}\n\nAnalyse this independently. Give your answer and the reasons for it."


def synthesis_prompt(task: str, analyses: Sequence[tuple[str, str]]) -> str:
    """Consensus: the lead sees every analysis, by agent, and synthesises one answer."""
    joined = "\n\n".join(f"Analysis from {agent}:\n{text}" for agent, text in analyses)
    return (
        f"{task}\n\n{len(analyses)} analysts answered independently.\n\n{joined}\n\n"
        "Synthesise one answer: state where they agree, resolve where they disagree, and decide."
    )


def parallel_output(outputs: Sequence[tuple[str, str]]) -> str:
    """Parallel, concatenating aggregation: each agent's answer under its name."""
    return "\n\n".join(f"## {agent}\n{text}" for agent, text in outputs)


def router_prompt(task: str, history: Sequence[tuple[str, str]], agents: Sequence[tuple[str, str]]) -> str:
    """Adaptive: ask a router model which agents should act next, as JSON."""
    done = "\n\n".join(f"[{agent}]\n{text}" for agent, text in history) or "(nothing yet)"
    roster = "\n".join(f"- {agent}: {caps}" for agent, caps in agents)
    return (
        f"Task:\n{task}\n\nWork so far:\n{done}\n\nAgents available:\n{roster}\n\n"
        'Reply with JSON only: {"next": ["agent-id", ...], "done": false, "reason": "..."}; '
        'use {"next": [], "done": true, "reason": "..."} when the work so far answers the task.'
    )


def adaptive_prompt(task: str, history: Sequence[tuple[str, str]]) -> str:
    """Adaptive: an agent chosen by the router sees the task and the work so far."""
    if not history:
        return task
    agent, last = history[-1]
    return refine_prompt(task, last, agent)
