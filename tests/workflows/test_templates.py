"""The shipped templates: they are package data, they validate, they use nothing a scripted agent cannot
serve offline, and each runs to the end through the semantics with every task answered."""

from __future__ import annotations

from importlib import resources

import pytest

from loomiq.workflows import (
    ApprovalNode,
    ErrorHandlerNode,
    ParallelNode,
    RunStatus,
    StartSubworkflow,
    StartTask,
    TaskNode,
    bind_inputs,
    check_workflow_text,
    list_templates,
    load_template,
    template_names,
    template_text,
)

from .sim import Sim

NAMES = ["bug-fix", "deployment", "feature-development", "security-audit"]


def test_the_four_templates_are_package_data() -> None:
    folder = resources.files("loomiq.workflows") / "templates"
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".yaml")) == [f"{n}.yaml" for n in NAMES]
    assert list(template_names()) == NAMES
    with pytest.raises(KeyError, match="no template 'nope'"):
        template_text("nope")


@pytest.mark.parametrize("name", NAMES)
def test_template_validates_and_runs_offline(name: str) -> None:
    result = check_workflow_text(template_text(name), f"template:{name}")
    assert result.issues == (), [str(i) for i in result.issues]
    d = load_template(name)
    assert d.name == name and d.description
    for node in d.nodes:
        task = node.task if isinstance(node, TaskNode | ParallelNode | ErrorHandlerNode) else None
        if task is not None:  # only prompts and strategies: nothing that needs a network or a named agent
            assert task.tools == () and task.agents == () and task.output_schema is None
    assert "title" in d.input_specs


@pytest.mark.parametrize(("name", "inputs", "expect_started"), [
    ("feature-development", {"title": "Dark mode"}, ["plan", "implement", "review", "test", "document"]),
    ("bug-fix", {"title": "Crash on save", "severity": "critical"},
     ["reproduce", "root_cause", "fix", "regression_test", "ship_hotfix", "summary"]),
    ("bug-fix", {"title": "Typo", "severity": "low"},
     ["reproduce", "root_cause", "fix", "regression_test", "schedule_release", "summary"]),
    ("deployment", {"title": "api", "environment": "production"},
     ["checks[0]", "checks[1]", "checks[2]", "deploy", "verify"]),
    ("deployment", {"title": "api"}, ["checks[0]", "checks[1]", "checks[2]", "deploy", "verify"]),
    ("security-audit", {"title": "billing", "standards": "soc2,iso27001"},
     ["scope", *[f"audit[{i}]" for i in range(6)], "report", "remediation"]),
])
def test_template_happy_path(name: str, inputs: dict[str, str], expect_started: list[str]) -> None:
    d = load_template(name)
    sim = Sim(d)
    sim.start(**bind_inputs(d, inputs, from_strings=True))
    for _ in range(50):
        if sim.state.finished:
            break
        running = [a for a in sim.actions if isinstance(a, StartTask | StartSubworkflow)]
        for action in running:
            ns = sim.state.nodes[action.node]
            index = getattr(action, "index", None)
            live = ns.items[index].status.value == "running" if index is not None else ns.status.value == "running"
            if live:
                sim.ok(action.node, f"output of {action.node}", index=index)
        for node in d.nodes:
            if isinstance(node, ApprovalNode) and sim.status(node.id).value == "waiting_approval":
                sim.answer(node.id, "ann", roles=("admin",))
    assert sim.state.status == RunStatus.SUCCEEDED, sim.statuses()
    assert sim.started() == expect_started
    sim.assert_replays()


def test_deployment_rolls_back_when_verification_fails() -> None:
    d = load_template("deployment")
    sim = Sim(d)
    sim.start(**bind_inputs(d, {"title": "api", "environment": "staging"}))
    for i in range(3):
        sim.ok("checks", "passes", index=i)
    assert sim.status("gate").value == "skipped"
    sim.ok("deploy", "deployed v2")
    sim.fail("verify", "5xx on /health")
    rollback = sim.last.actions[-1]  # type: ignore[union-attr]
    assert isinstance(rollback, StartTask) and rollback.node == "rollback"
    assert "'verify' failed with: 5xx on /health" in rollback.task.prompt
    sim.ok("rollback", "rolled back")
    assert sim.state.status == RunStatus.FAILED


def test_listing() -> None:
    listed = {t.name: t for t in list_templates()}
    assert listed["bug-fix"].inputs == ("title", "severity", "component")
    assert listed["deployment"].inputs == ("title", "environment", "version")
