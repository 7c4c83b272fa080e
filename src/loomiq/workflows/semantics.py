"""A workflow run as a pure state machine.

`advance(definition, state, event)` applies one event and returns the new state and the actions a
runner must perform; nothing waits, reads a clock or touches storage. The durable runner journals the
events and performs the actions; replaying a run is `replay(definition, events)`, which gives the same
states and actions again. The rules (docs/workflows.md, "Semantics"), in short:

- A pending node is decided once every node it needs has settled (succeeded, failed, skipped or
  cancelled): with ``on: success`` (the default) it runs only if all of them succeeded; with
  ``on: failure`` only if at least one failed; with ``on: always`` whatever happened. Otherwise it is
  skipped, with the reason. Then ``if``, when given, must be true, or the node is skipped.
- A decision evaluates its cases in order when it runs; the first true one is its value, and the
  nodes routed by the other cases are skipped at once.
- A node's own ``retry`` restarts it after each failed attempt while attempts remain; then it fails,
  and its error handler (if any) takes over.
- The run ends when every node has settled: ``failed`` if some node failed and no route handler
  recovered it (or a ``fail`` handler stopped the run), ``cancelled`` if cancelled, else
  ``succeeded`` with its ``outputs``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from . import _approvals
from ._run import Run, check_output
from .model import NodeId, WorkflowDefinition
from .state import Action, Event, NodeState, NodeStatus, RunState, Transition

__all__ = ["advance", "check_output", "initial_state", "judge_answer", "pending_approvals", "replay"]


def initial_state(definition: WorkflowDefinition) -> RunState:
    """The state of a run that has not started: every node pending."""
    return RunState(nodes={node.id: NodeState() for node in definition.nodes})


def advance(definition: WorkflowDefinition, state: RunState, event: Event) -> Transition:
    """Apply `event` to `state`: the new state, the actions to perform, and a note when the event
    changed nothing (a stale or duplicate result, an answer that does not count).

    `definition` must be valid (see `validate`). Deterministic: the same state and event always give
    the same transition.
    """
    run = Run(definition, state)
    note = run.apply(event)
    if note is None:
        run.settle()
    return Transition(run.freeze(), tuple(run.actions), note)


def replay(definition: WorkflowDefinition, events: Iterable[Event],
           state: RunState | None = None) -> tuple[RunState, tuple[Action, ...]]:
    """Fold `events` from `state` (default: not started): the final state and every action on the way."""
    current = state if state is not None else initial_state(definition)
    actions: list[Action] = []
    for event in events:
        transition = advance(definition, current, event)
        current = transition.state
        actions.extend(transition.actions)
    return current, tuple(actions)


def judge_answer(state: RunState, node: str, subject: str, roles: Sequence[str],
                 decision: Literal["approve", "reject"], round: int | None = None) -> _approvals.Verdict:
    """How an answer to the approval of `node` would be taken, before it is journalled: ``accepted``
    (it counts), ``duplicate`` (the same answer by the same approver again: replay it), ``conflict``
    (it contradicts that approver's answer or the decision: 409), ``forbidden`` (not an approver: 403),
    ``not_pending`` (nothing is waiting for an answer there, or `round` is not the current round)."""
    ns = state.nodes.get(NodeId(node))
    if ns is None or ns.approval is None or (round is not None and round != ns.approval.round):
        return "not_pending"
    verdict = _approvals.judge(ns.approval, subject, roles, decision)
    if verdict == "accepted" and ns.status != NodeStatus.WAITING_APPROVAL:
        return "not_pending"
    return verdict


def pending_approvals(state: RunState) -> list[tuple[NodeId, int]]:
    """The approvals waiting for answers: (node, round) in node order."""
    return [(node_id, ns.approval.round) for node_id, ns in state.nodes.items()
            if ns.status == NodeStatus.WAITING_APPROVAL and ns.approval is not None]
