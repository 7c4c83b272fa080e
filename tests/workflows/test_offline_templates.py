"""Each template runs to the end offline: the pure semantics drive the real strategies on loomiq's
built-in scripted agents, in process (the durable runner on the engine is the next step; this loop is
only the test's). Every prompt reaches a model with its expressions rendered."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loomiq import Orchestrator
from loomiq.workflows import (
    ApprovalAnswered,
    NodeFailed,
    NodeSucceeded,
    RequestApproval,
    RunStarted,
    RunStatus,
    StartTask,
    advance,
    bind_inputs,
    initial_state,
    load_template,
)

INPUTS = {
    "feature-development": {"title": "Export to CSV"},
    "bug-fix": {"title": "Crash when saving an empty file", "severity": "high"},
    "deployment": {"title": "billing-api", "environment": "production", "version": "2.4.1"},
    "security-audit": {"title": "billing-api", "standards": "owasp-asvs,soc2"},
}


async def run_offline(name: str, orch: Orchestrator) -> tuple[RunStatus, list[str]]:
    d = load_template(name)
    state = initial_state(d)
    prompts: list[str] = []
    clock = 0.0
    pending = [RunStarted(bind_inputs(d, INPUTS[name], from_strings=True), clock)]
    while pending and not state.finished:
        event = pending.pop(0)
        transition = advance(d, state, event)
        state = transition.state
        starts = [a for a in transition.actions if isinstance(a, StartTask)]
        results = await asyncio.gather(*(orch.run(a.task.prompt, strategy=a.task.strategy) for a in starts))
        clock += 1
        for action, result in zip(starts, results, strict=True):
            prompts.append(action.task.prompt)
            assert "${{" not in action.task.prompt
            if result.status == "completed":
                pending.append(NodeSucceeded(action.node, action.attempt, result.output, clock, action.index))
            else:
                pending.append(NodeFailed(action.node, action.attempt, result.status, clock, action.index))
        for action in transition.actions:
            if isinstance(action, RequestApproval):
                pending.append(ApprovalAnswered(action.node, action.round, "ann", ("admin",), "approve", "ok", clock))
    return state.status, prompts


@pytest.mark.parametrize("name", sorted(INPUTS))
async def test_template_runs_offline_on_the_scripted_agents(name: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no loomiq.yaml: the offline scripted agents
    orch = Orchestrator.from_config()
    try:
        assert all(agent.offline for agent in orch.agents)
        status, prompts = await run_offline(name, orch)
    finally:
        await orch.aclose()
    assert status == RunStatus.SUCCEEDED
    assert prompts and all(p.strip() for p in prompts)
    if name == "security-audit":
        assert sum(p.startswith("Audit the") for p in prompts) == 6  # 3 areas x 2 standards
    if name == "bug-fix":
        assert any("hotfix release note" in p for p in prompts)
