"""Property tests of the run semantics over random DAGs (hypothesis).

A random definition (tasks, approvals, decisions routing to later nodes, parallel fan-outs, an error
handler, random `needs`, `on`, `if` and retries) is driven by random events (each running task
succeeds with 'yes' or 'no' or fails, each approval is approved, rejected or times out, the run may be
cancelled) until it finishes. Checked at every step and at the end:

- every node (and parallel item) starts at most once per attempt, and attempt 1 at most once;
- a node starts only when all of its `needs` have settled, and a settled node never changes again;
- the run finishes exactly once and nothing is asked after it;
- each node's final status is what docs/workflows.md specifies from its needs' final statuses, its
  `on`, its `if` and the decisions routing it (the reference below is written from the spec, not from
  the implementation);
- replaying the recorded events gives the same state and actions.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from loomiq.workflows import (
    ApprovalAnswered,
    ApprovalTimedOut,
    DecisionNode,
    ErrorHandlerNode,
    FinishRun,
    NodeFailed,
    NodeStatus,
    NodeSucceeded,
    RunCancelled,
    RunStarted,
    RunStatus,
    StartTask,
    WorkflowDefinition,
    advance,
    initial_state,
    replay,
    validate,
)
from loomiq.workflows._edge import definition_from_data
from loomiq.workflows.state import SETTLED

S = NodeStatus


@st.composite
def workflows(draw: st.DrawFn) -> dict[str, Any]:
    """A random valid workflow as data."""
    count = draw(st.integers(min_value=2, max_value=10))
    nodes: dict[str, dict[str, Any]] = {}
    kinds: dict[str, str] = {}
    decisions: dict[str, dict[str, list[str]]] = {}  # decision -> case value -> targets
    for i in range(count):
        name = f"n{i}"
        earlier = list(nodes)
        needs = draw(st.lists(st.sampled_from(earlier), max_size=3, unique=True)) if earlier else []
        kind = draw(st.sampled_from(["task", "task", "task", "approval", "decision", "parallel"]))
        node: dict[str, Any] = {"kind": kind}
        tasks_needed = [n for n in needs if kinds[n] == "task"]
        if kind == "task":
            node["prompt"] = f"do {name}"
            if draw(st.booleans()):
                node["retry"] = {"max_attempts": 2, "backoff": 1}
        elif kind == "approval":
            node.update(message="ok?", approvers={"roles": ["ops"]}, timeout="1h",
                        on_timeout=draw(st.sampled_from(["reject", "fail"])))
        elif kind == "decision":
            cond = f"${{{{ nodes.{tasks_needed[0]}.output == 'yes' }}}}" if tasks_needed else "true"
            node["cases"] = [{"when": cond, "value": "yes", "then": []}]
            node["default"] = {"value": "no", "then": []}
            decisions[name] = {"yes": node["cases"][0]["then"], "no": node["default"]["then"]}
        else:
            node.update(for_each=list(range(draw(st.integers(1, 3)))), task={"prompt": "item ${{ item }}"},
                        join=draw(st.sampled_from(["all", "any"])))
        # Some nodes join a branch of an earlier decision (and so must need it).
        routing = [d for d in decisions if d != name]
        if routing and draw(st.integers(0, 3)) == 0:
            d = draw(st.sampled_from(routing))
            if d not in needs:
                needs.append(d)
            decisions[d][draw(st.sampled_from(["yes", "no"]))].append(name)
        if needs:
            node["needs"] = needs
            node["on"] = draw(st.sampled_from(["success", "success", "failure", "always"]))
            if tasks_needed and draw(st.booleans()):
                node["if"] = f"${{{{ nodes.{draw(st.sampled_from(tasks_needed))}.output == 'yes' }}}}"
        nodes[name] = node
        kinds[name] = kind
    task_nodes = [n for n, k in kinds.items() if k == "task"]
    if task_nodes and draw(st.booleans()):
        nodes["handler"] = {"kind": "error_handler", "handles": [draw(st.sampled_from(task_nodes))],
                            "action": draw(st.sampled_from(["route", "compensate"])),
                            "prompt": "recover ${{ error.node }}"}
    return {"name": "random", "nodes": nodes}


def _reference(d: WorkflowDefinition, state: Any, node_id: str) -> str | None:
    """The status the spec says a node ends with, given the final state of the nodes before it:
    'skipped', or 'ran' (it started: it ended succeeded or failed). None: no opinion (handlers)."""
    node = d.node(node_id)
    if isinstance(node, ErrorHandlerNode):
        return None
    nodes = state.nodes
    for other in d.nodes:
        if isinstance(other, DecisionNode) and node_id in other.targets and nodes[other.id].status == S.SUCCEEDED:
            chosen = [c for c in (*other.cases, other.default) if c is not None and c.value == nodes[other.id].decision]
            if not chosen or node_id not in chosen[0].then:
                return "skipped"
    needs = [nodes[n].status for n in node.needs]
    if node.on == "success" and any(s != S.SUCCEEDED for s in needs):
        return "skipped"
    if node.on == "failure" and S.FAILED not in needs:
        return "skipped"
    if node.if_ is not None:
        # Generated conditions are all `nodes.<task>.output == 'yes'`.
        target = node.if_.source.split(".")[1]
        if nodes[target].output != "yes":
            return "skipped"
    return "ran"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=workflows(), choices=st.data())
def test_random_runs_follow_the_spec(data: dict[str, Any], choices: st.DataObject) -> None:
    # Random needs can ask for two branches of one decision: validation calls that node unreachable, and
    # the semantics must still skip it; so build without refusing, and allow only that issue.
    d, shape = definition_from_data(data)
    assert d is not None and shape == []
    assert all("unreachable" in i.message for i in validate(d)), validate(d)
    state = initial_state(d)
    events: list[Any] = []
    actions: list[Any] = []
    starts: set[tuple[str, int | None, int]] = set()
    now = 0.0

    def feed(ev: Any) -> None:
        nonlocal state
        before = state
        t = advance(d, state, ev)
        events.append(ev)
        if before.finished:
            assert t.actions == ()
        for action in t.actions:
            if isinstance(action, StartTask):
                key = (action.node, action.index, action.attempt)
                assert key not in starts, f"{key} started twice"
                starts.add(key)
                if action.attempt == 1 and action.index is None and action.node != "handler":
                    for need in d.node(action.node).needs:
                        assert t.state.nodes[need].status in SETTLED, (action.node, need)
        for node_id, ns in before.nodes.items():
            if ns.status in SETTLED:
                assert t.state.nodes[node_id].status == ns.status, f"settled {node_id} changed"
        assert sum(isinstance(a, FinishRun) for a in t.actions) <= 1
        actions.extend(t.actions)
        state = t.state

    cancel_at = choices.draw(st.one_of(st.none(), st.integers(0, 40)), label="cancel at step")
    feed(RunStarted({}, now))
    for step in range(300):
        if state.finished:
            break
        now += 1
        options: list[Any] = []
        for node_id, ns in state.nodes.items():
            if ns.status == S.RUNNING:
                running = [(i.index, i.attempts) for i in ns.items if i.status == S.RUNNING] or [(None, ns.attempts)]
                for index, attempt in running:
                    options += [NodeSucceeded(node_id, attempt, "yes", now, index),
                                NodeSucceeded(node_id, attempt, "no", now, index),
                                NodeFailed(node_id, attempt, "boom", now, index)]
            elif ns.status == S.WAITING_APPROVAL and ns.approval is not None:
                r = ns.approval.round
                options += [ApprovalAnswered(node_id, r, "ann", ("ops",), "approve", "", now),
                            ApprovalAnswered(node_id, r, "bob", ("ops",), "reject", "", now),
                            ApprovalTimedOut(node_id, r, max(now, ns.approval.deadline or now))]
        options.append(RunCancelled("random", now))
        assert len(options) > 1, "the run is stuck"
        cancel = step == cancel_at
        chosen = options[-1] if cancel else choices.draw(st.sampled_from(options[:-1]))
        now = max(now, chosen.at)
        feed(chosen)
    assert state.finished
    event(f"run {state.status.value}")
    assert sum(isinstance(a, FinishRun) for a in actions) == 1
    assert all(ns.status in SETTLED for ns in state.nodes.values())
    if state.status != RunStatus.CANCELLED:
        for node in d.nodes:
            expected = _reference(d, state, node.id)
            actual = state.nodes[node.id].status
            if expected == "skipped":
                assert actual == S.SKIPPED, (node.id, actual, state.nodes[node.id].reason)
            elif expected == "ran":
                assert actual in (S.SUCCEEDED, S.FAILED), (node.id, actual, state.nodes[node.id].reason)
        for (node_id, index, attempt) in starts:
            assert attempt == 1 or (node_id, index, attempt - 1) in starts
    replayed, replayed_actions = replay(d, events)
    assert replayed == state and list(replayed_actions) == actions
